"""Pages for computing resources: everyone sees where tasks may run; staff add, change, check
and retire them (rosetta.computing.services does the work)."""

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from rosetta.computing import kinds, remote_names, services
from rosetta.computing.models import Resource, SSHIdentity
from rosetta.core.errors import Conflict
from rosetta.web.forms import ResourceForm


def _staff_only(request) -> None:
    if not request.user.is_staff:
        raise Http404("No such page.")


@login_required
@require_GET
def resource_list(request):
    resources = Resource.objects.all() if request.user.is_staff else Resource.objects.filter(enabled=True)
    identity = (
        SSHIdentity.of(request.user)
        if resources.filter(credentials="user").exclude(transport__in=kinds.local_transports()).exists()
        else None
    )
    return render(request, "web/resources.html", {"resources": resources, "identity": identity})


@login_required
@require_http_methods(["GET", "POST"])
def resource_new(request):
    _staff_only(request)
    form = ResourceForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and _save(form, Resource()):
        messages.success(request, f"{form.instance.name} was added. Check it and pin its host key, then enable it.")
        return redirect("resource", name=form.instance.name)
    return render(request, "web/resource_form.html", {"form": form, "resource": None})


@login_required
@require_http_methods(["GET", "POST"])
def resource_detail(request, name: str):
    _staff_only(request)
    resource = get_object_or_404(Resource, name=name)
    form = ResourceForm(request.POST or None, instance=resource)
    if request.method == "POST" and form.is_valid() and _save(form, resource):
        messages.success(request, f"{resource.name} was saved.")
        return redirect("resource", name=resource.name)
    return render(request, "web/resource_form.html", {"form": form, "resource": resource})


def _save(form: ResourceForm, resource: Resource) -> bool:
    """Save through the service (which refuses what breaks running tasks); errors go on the form."""
    fields = {name: form.cleaned_data[name] for name in services.EDITABLE if name in form.cleaned_data}
    fields.update({f"{role}_options": form.options(role) for role in kinds.ROLES})
    if resource.pk is None:
        resource.name = form.cleaned_data["name"]
    try:
        services.save_resource(resource, private_key=form.cleaned_data["private_key"] or None, **fields)
    except (ValidationError, Conflict) as error:
        form.add_error(None, getattr(error, "messages", [str(error)]))
        return False
    return True


@login_required
@require_POST
def resource_check(request, name: str):
    _staff_only(request)
    resource = get_object_or_404(Resource, name=name)
    report = async_to_sync(services.check_resource)(resource, pin=request.POST.get("pin") == "1")
    summary = ", ".join(filter(None, [report.host_key and f"host key {report.host_key}",
                                      report.pinned and "pinned", report.engine]))  # fmt: skip
    if report.problems:
        messages.error(request, f"{resource.name}: {' '.join(report.problems)}" + (f" ({summary})" if summary else ""))
    else:
        messages.success(request, f"{resource.name} answers: {summary}.")
    return redirect("resource", name=name)


@login_required
@require_POST
def resource_toggle(request, name: str):
    _staff_only(request)
    resource = get_object_or_404(Resource, name=name)
    try:
        services.save_resource(resource, enabled=not resource.enabled)
    except (ValidationError, Conflict) as error:
        messages.error(request, " ".join(getattr(error, "messages", [str(error)])))
    return redirect("resource", name=name)


@login_required
@require_POST
async def remote_username(request):
    """Async, as the API's: the check logs in to a remote host (see remote_names.claim)."""
    try:
        identity = await remote_names.claim(await request.auser(), request.POST.get("remote_username", ""))
    except (ValidationError, Conflict) as error:
        messages.error(request, " ".join(getattr(error, "messages", [str(error)])))
    else:
        messages.success(request, f"Your key logs in as {identity.remote_name}: Rosetta will use that account.")
    return redirect("resources")
