"""Pages for staff to run the place without a shell: users (list, deactivate, reactivate,
reset a password). Every task across users is on the task list, which staff see whole."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from rosetta.accounts import services as account_services
from rosetta.tasks.phases import FINAL_PHASE_NAMES
from rosetta.web.resources import _staff_only


@login_required
@require_GET
def user_list(request):
    _staff_only(request)
    users = (
        get_user_model()
        .objects.annotate(active_tasks=Count("tasks", filter=~Q(tasks__phase__in=FINAL_PHASE_NAMES)))
        .order_by("username")
    )
    response = render(
        request, "web/users.html", {"users": users, "new_password": request.session.pop("new-password", None)}
    )
    response["Cache-Control"] = "no-store"  # it may show a password, once
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
    account_services.set_active(user, not user.is_active)
    state = "reactivated" if user.is_active else "deactivated: their logins, tokens and task access end now"
    messages.success(request, f"{user.get_username()} was {state}.")
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
