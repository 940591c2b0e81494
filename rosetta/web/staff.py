"""Pages for staff to run the place without a shell: users (list, create, deactivate,
reactivate, reset a password), quotas, and usage. Every task across users is on the task list, which staff see whole."""

import csv
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from rosetta.accounts import services as account_services
from rosetta.core.errors import Conflict
from rosetta.tasks import quotas, usage
from rosetta.tasks.models import Quota
from rosetta.tasks.phases import FINAL_PHASE_NAMES
from rosetta.web.forms import NewUserForm, QuotaForm
from rosetta.web.resources import _staff_only

NEW_USER = "new-user"  # session key: a new user's first secrets, until the page that shows them once


@login_required
@require_GET
def user_list(request):
    _staff_only(request)
    return _render_users(request, NewUserForm())


def _render_users(request, form: NewUserForm, status: int = 200):
    users = (
        get_user_model()
        .objects.annotate(active_tasks=Count("tasks", filter=~Q(tasks__phase__in=FINAL_PHASE_NAMES)))
        .order_by("username")
    )
    context = {
        "users": users,
        "new_password": request.session.pop("new-password", None),
        "new_user": request.session.pop(NEW_USER, None),
        "form": form,
    }
    response = render(request, "web/users.html", context, status=status)
    response["Cache-Control"] = "no-store"  # it may show a password or a token, once
    return response


def _other_user(request, user_id: int):
    _staff_only(request)
    return get_object_or_404(get_user_model(), pk=user_id)


@login_required
@require_POST
def user_toggle(request, user_id: int):
    user = _other_user(request, user_id)
    if user == request.user:
        messages.error(request, "You cannot deactivate yourself.")
        return redirect("users")
    stopped = account_services.set_active(user, not user.is_active)
    if user.is_active:
        messages.success(request, f"{user.get_username()} was reactivated.")
    else:
        tasks = f"{stopped} active task{'s are' if stopped != 1 else ' is'} being stopped" if stopped else "no task ran"
        messages.success(
            request, f"{user.get_username()} was deactivated: their logins, tokens and task access end now; {tasks}."
        )
    return redirect("users")


@login_required
@require_POST
def user_create(request):
    _staff_only(request)
    form = NewUserForm(request.POST)
    if not form.is_valid():
        return _render_users(request, form, status=400)
    password = account_services.new_password() if form.cleaned_data["password"] else None
    try:
        user, token = account_services.create_user(
            form.cleaned_data["username"], password=password, admin=form.cleaned_data["staff"]
        )
    except Conflict as error:
        form.add_error("username", str(error))
        return _render_users(request, form, status=400)
    # Shown by the page this redirects to, once: a reload makes nothing again.
    request.session[NEW_USER] = {"username": user.get_username(), "password": password, "token": token}
    return redirect("users")


@login_required
@require_POST
def user_reset_password(request, user_id: int):
    user = _other_user(request, user_id)
    try:
        password = account_services.reset_password(user)
    except ValidationError as error:  # the generated password always passes; kept for other rules
        messages.error(request, " ".join(error.messages))
        return redirect("users")
    # Shown by the page this redirects to, once.
    request.session["new-password"] = {"username": user.get_username(), "password": password}
    return redirect("users")


@login_required
@require_GET
def quota_list(request):
    _staff_only(request)
    return _render_quotas(request, QuotaForm())


def _render_quotas(request, form: QuotaForm, status: int = 200):
    rows = [(quota, quotas.said(quota, quotas.usage_of(quota)))
            for quota in Quota.objects.select_related("user", "group", "resource").order_by("pk")]  # fmt: skip
    return render(request, "web/quotas.html", {"quotas": rows, "form": form, "section": "quotas"}, status=status)


@login_required
@require_POST
def quota_set(request):
    _staff_only(request)
    form = QuotaForm(request.POST)
    if not form.is_valid():
        return _render_quotas(request, form, status=400)
    data = form.cleaned_data
    quota = quotas.set_quota(**data["holder"], resource=data["resource"], tasks=data["max_tasks"],
                             cpus=data["max_cpus"], memory_mb=data["memory"])  # fmt: skip
    messages.success(request, f"The {quota} is set: {quotas.said(quota, quotas.usage_of(quota))}.")
    return redirect("quotas")


@login_required
@require_POST
def quota_remove(request, quota_id: int):
    _staff_only(request)
    quota = get_object_or_404(Quota.objects.select_related("user", "group", "resource"), pk=quota_id)
    quota.delete()
    messages.success(request, f"The {quota} was removed.")
    return redirect("quotas")


USAGE_PERIODS = (7, 30, 90, 365)


@login_required
@require_GET
def usage_report(request):
    """CPU-hours and memory-hours by user, group or resource over a period (`rosetta usage`)."""
    _staff_only(request)
    by = request.GET.get("by", "user") if request.GET.get("by") in usage.BY else "user"
    days = int(request.GET["days"]) if request.GET.get("days") in {str(d) for d in USAGE_PERIODS} else 30
    used = usage.usage(timezone.now() - timedelta(days=days), by)
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="rosetta-usage-{by}-{days}d.csv"'
        writer = csv.writer(response)
        writer.writerow([by, "tasks", "hours", "cpu_hours", "memory_gib_hours"])
        for key, use in used.items():
            writer.writerow([key, use.tasks, f"{use.hours:.2f}", f"{use.cpu_hours:.2f}", f"{use.memory_gib_hours:.2f}"])
        return response
    context = {"used": used, "by": by, "days": days, "periods": USAGE_PERIODS, "kinds": usage.BY, "section": "usage"}
    return render(request, "web/usage.html", context)
