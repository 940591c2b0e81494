"""Catalogue pages: browse and search it, add your own software (an image, or a Containerfile
built here with its log live), and change, hide or retire entries (owners; staff for every
entry). rosetta.catalog.services does the work and checks who may do what."""

from __future__ import annotations

from itertools import groupby

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from rosetta.catalog import services
from rosetta.catalog.containerfile import MAX_CONTAINERFILE
from rosetta.catalog.models import Protocol, Status, Visibility
from rosetta.computing.models import Resource
from rosetta.core.errors import Conflict, NotFound
from rosetta.web.forms import parse_environment

NAME_RULES = "Lower-case letters, digits, '-' and '_'. Yours: another user's software of the same name is another."


class DeclaredFields(forms.Form):
    """What an entry says about itself, whoever made it."""

    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    interface_protocol = forms.ChoiceField(choices=Protocol.choices, initial=Protocol.HTTP, label="Interface")
    interface_port = forms.IntegerField(min_value=1, max_value=65535, initial=8080, label="Port")
    honours_base_port = forms.BooleanField(
        required=False, label="Listens on BASE_PORT when it is set", help_text="Needed to run on Slurm clusters."
    )
    own_authorization = forms.BooleanField(
        required=False,
        label="Does its own HTTP login",
        help_text="The browser's Authorization header (e.g. HTTP Basic) reaches it; the task's secret is not sent.",
    )
    environment = forms.CharField(
        required=False,
        label="Environment variables",
        help_text="One NAME=value per line; tasks may add their own.",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "placeholder": "GREETING=hello"}),
    )
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.PRIVATE, label="Who sees it")
    group = forms.ChoiceField(choices=(), required=False, help_text="When a group sees it: which one.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        groups = _groups_for(user)
        self.fields["group"].choices = [("", "—"), *((name, name) for name in groups)]
        if not user.is_staff:
            self.fields["visibility"].choices = [c for c in Visibility.choices if c[0] != Visibility.EVERYONE]

    def clean_environment(self) -> dict[str, str]:
        return parse_environment(self.cleaned_data["environment"])

    def declared(self) -> dict:
        data = self.cleaned_data
        fields = ["description", "interface_protocol", "interface_port", "honours_base_port", "own_authorization"]
        fields.append("environment")
        return {
            **{name: data[name] for name in fields},
            "visibility": data["visibility"],
            "group": data.get("group") or None,
        }


class NewEntryFields(DeclaredFields):
    name = forms.SlugField(max_length=64, help_text=NAME_RULES)
    version = forms.RegexField(
        regex=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=32, initial="1", help_text="e.g. 1.0 or py3.11."
    )
    field_order = ["name", "version"]


class ImageForm(NewEntryFields):
    image = forms.CharField(max_length=255, help_text="e.g. localhost/lab/tool:1.0 (from an allowed registry).")
    field_order = ["name", "version", "image"]


class BuildForm(NewEntryFields):
    containerfile = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "placeholder": "FROM localhost/rosetta/base"}),
        help_text="Paste it here, or upload it below. It is the whole build context: COPY has nothing else to copy.",
    )
    upload = forms.FileField(required=False, label="…or upload a Containerfile")
    field_order = ["name", "version", "containerfile", "upload"]

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("upload")
        if upload is not None:
            if upload.size > MAX_CONTAINERFILE:
                self.add_error("upload", f"A Containerfile may be at most {MAX_CONTAINERFILE // 1024} KiB.")
                return cleaned
            try:
                cleaned["containerfile"] = upload.read().decode()
            except UnicodeDecodeError:
                self.add_error("upload", "That file is not text (UTF-8).")
        if not cleaned.get("containerfile", "").strip() and not self.has_error("upload"):
            self.add_error("containerfile", "Paste a Containerfile or upload one.")
        return cleaned


class EditForm(DeclaredFields):
    pass


def _groups_for(user) -> list[str]:
    from django.contrib.auth.models import Group

    groups = Group.objects.all() if user.is_staff else user.groups.all()
    return list(groups.order_by("name").values_list("name", flat=True))


# -- browsing -----------------------------------------------------------------------------------


@login_required
@require_GET
def catalog(request):
    managing = request.user.is_staff and request.GET.get("all") == "1"
    filters = services.Filters(
        text=request.GET.get("q", "")[:200],
        interface=request.GET.get("interface", "") if request.GET.get("interface") in Protocol.values else "",
        resource=request.GET.get("resource", "")[:64],
        owner="mine" if request.GET.get("mine") == "1" else "",
        include_hidden=managing,
        include_retired=request.GET.get("retired") == "1",
    )
    entries = services.search(request.user, filters, managing=managing)
    resources = list(Resource.objects.filter(enabled=True))
    groups = []
    for (owner, name), versions in groupby(entries, key=lambda entry: (entry.owner, entry.name)):
        versions = list(versions)
        for entry in versions:
            entry.where = services.where_it_runs(entry, resources)
            entry.may_start = entry.status != Status.RETIRED
        groups.append({"name": name, "owner": owner, "latest": versions[0], "versions": versions})
    return render(
        request,
        "web/catalog.html",
        {
            "groups": groups,
            "filters": filters,
            "managing": managing,
            "resources": resources,
            "interfaces": Protocol.choices,
            "filtered": any(request.GET.get(key) for key in ("q", "interface", "resource", "mine", "retired")),
        },
    )


def _entry_or_404(request, software_id: int):
    try:
        return services.get_entry(request.user, software_id, managing=True)
    except NotFound:
        raise Http404("No such software.") from None


@login_required
@require_http_methods(["GET", "POST"])
def software_detail(request, software_id: int):
    entry = _entry_or_404(request, software_id)
    may_change = services.may_change(request.user, entry)
    form = None
    if may_change:
        initial = {
            "description": entry.description,
            "interface_protocol": entry.interface_protocol,
            "interface_port": entry.interface_port,
            "honours_base_port": entry.honours_base_port,
            "own_authorization": entry.own_authorization,
            "environment": "\n".join(f"{k}={v}" for k, v in entry.environment.items()),
            "visibility": entry.visibility,
            "group": entry.group.name if entry.group else "",
        }
        form = EditForm(request.POST or None, user=request.user, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                services.edit_software(request.user, entry, form.declared())
            except (ValidationError, services.Forbidden) as error:
                form.add_error(None, " ".join(getattr(error, "messages", [str(error)])))
            else:
                messages.success(request, f"{entry.reference} was saved.")
                return redirect("software", software_id=entry.pk)
    elif request.method == "POST":
        raise Http404("No such page.")
    resources = list(Resource.objects.filter(enabled=True))
    context = {
        "entry": entry,
        "form": form,
        "may_change": may_change,
        "where": services.where_it_runs(entry, resources),
        # Others' use of a shared entry is theirs: staff see every task, users their own.
        "task_count": (entry.tasks if request.user.is_staff else entry.tasks.filter(owner=request.user)).count(),
        "build": getattr(entry, "build", None),
        "statuses": Status,
    }
    return render(request, "web/software_detail.html", context)


@login_required
@require_POST
def software_status(request, software_id: int):
    entry = _entry_or_404(request, software_id)
    status = request.POST.get("status", "")
    if status not in Status.values:
        raise Http404("No such status.")
    try:
        services.edit_software(request.user, entry, {"status": status})
    except services.Forbidden:
        raise Http404("No such page.") from None
    said = {Status.LISTED: "is listed again", Status.HIDDEN: "is hidden", Status.RETIRED: "is retired"}[status]
    messages.success(request, f"{entry.reference} {said}.")
    return redirect("software", software_id=entry.pk)


# -- adding -------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def software_new(request):
    kind = request.POST.get("kind") if request.method == "POST" else None
    image_form = ImageForm(request.POST if kind == "image" else None, user=request.user, prefix="image")
    build_form = BuildForm(
        request.POST if kind == "build" else None,
        request.FILES if kind == "build" else None,
        user=request.user,
        prefix="build",
    )
    if kind == "image" and image_form.is_valid():
        entry = _add(request, image_form)
        if entry is not None:
            messages.success(request, f"{entry.reference} was added to your catalogue.")
            return redirect("software", software_id=entry.pk)
    if kind == "build" and build_form.is_valid():
        build = _build(request, build_form)
        if build is not None:
            return redirect("software-build", build_id=build.pk)
    status = 400 if kind else 200
    recent = services.builds_of(request.user).filter(owner=request.user).defer("log", "containerfile")[:5]
    context = {"image_form": image_form, "build_form": build_form, "kind": kind or "build", "recent": recent}
    return render(request, "web/software_new.html", context, status=status)


def _add(request, form: ImageForm):
    data = form.cleaned_data
    try:
        return services.add_software(
            request.user, name=data["name"], version=data["version"], image=data["image"], **form.declared()
        )
    except Conflict as error:
        form.add_error("version", str(error))
    except (ValidationError, services.Forbidden) as error:
        _errors_onto(form, error)
    return None


def _build(request, form: BuildForm):
    data = form.cleaned_data
    try:
        return services.request_build(
            request.user,
            name=data["name"],
            version=data["version"],
            containerfile=data["containerfile"],
            **form.declared(),
        )
    except Conflict as error:
        form.add_error(None, str(error))
    except (ValidationError, services.Forbidden) as error:
        _errors_onto(form, error, default="containerfile")
    return None


def _errors_onto(form, error, default=None) -> None:
    if isinstance(error, ValidationError) and hasattr(error, "error_dict"):
        for field, problems in error.message_dict.items():
            form.add_error(field if field in form.fields else None, problems)
    else:
        form.add_error(default, " ".join(getattr(error, "messages", [str(error)])))


@login_required
@require_GET
def software_build(request, build_id: int):
    try:
        build = services.get_build(request.user, build_id)
    except NotFound:
        raise Http404("No such build.") from None
    return render(
        request, "web/software_build.html", {"build": build, "queue_position": services.queue_position(build)}
    )
