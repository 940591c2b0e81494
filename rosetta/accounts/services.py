"""What users and operators can do with accounts and API tokens.

The gateway keeps the token digests in its route table, so every change here wakes it once
the change has committed.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from rosetta.accounts.models import ApiToken
from rosetta.core import notify
from rosetta.core.errors import Conflict


def create_token(user, name: str, expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """A new token and its secret, which is shown once and never stored. Names are unique per
    user, so that a list of tokens can be read; ``expires_in_days``: None, until revoked."""
    expires = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    with transaction.atomic():
        if ApiToken.objects.filter(user=user, name=name).exists():
            raise Conflict(f"You already have a token called {name!r}; revoke it or choose another name.")
        token, secret = ApiToken.objects.create_for(user, name, expires=expires)
        notify.after_commit(notify.GATEWAY)
    return token, secret


def revoke_token(token: ApiToken) -> None:
    with transaction.atomic():
        token.delete()
        notify.after_commit(notify.GATEWAY, notify.ACCESS)  # refused from the next request on


def create_user(name: str, *, email: str = "", password: str | None = None, admin: bool = False) -> tuple[object, str]:
    """A new account with a first API token; the token's secret, shown once."""
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(
                name, email=email, password=password, is_staff=admin, is_superuser=admin
            )
            _, secret = create_token(user, "created by operator")
    except IntegrityError:
        raise Conflict(f"A user called {name!r} exists already.") from None
    return user, secret


def set_active(user, active: bool) -> None:
    """Deactivate (no login, tokens and task access refused at once) or reactivate a user. Their
    tasks keep running: staff stop them where they must."""
    user.is_active = active
    user.save(update_fields=["is_active"])  # rosetta.accounts.signals tells the gateway


def reset_password(user, password: str | None = None) -> str:
    """Set a new password (a random one when none is given) and end the user's sessions and
    task access; the password, to hand to the user once."""
    from django.contrib.auth.password_validation import validate_password

    from rosetta.accounts.signals import end_task_access

    password = password or secrets.token_urlsafe(12)
    validate_password(password, user)
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        end_task_access(user.pk)
    return password
