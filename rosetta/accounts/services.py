"""What users and operators can do with accounts, API tokens and SSH keys.

The gateway keeps the token digests in its route table, so every change here wakes it once
the change has committed.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from rosetta.accounts.models import ApiToken, SSHKey
from rosetta.accounts.signals import user_deactivated
from rosetta.accounts.ssh_keys import MAX_NAME, parse_public_key
from rosetta.accounts.tokens import ADMIN, SCOPES, USER_SCOPES, scopes_text
from rosetta.core import notify
from rosetta.core.errors import Conflict


def create_token(
    user,
    name: str,
    expires_in_days: int | None = None,
    scopes: Iterable[str] | None = None,
    allowed: frozenset[str] = frozenset(SCOPES),
) -> tuple[ApiToken, str]:
    """A new token and its secret, which is shown once and never stored. Names are unique per
    user, so that a list of tokens can be read; ``expires_in_days``: None, until revoked.
    ``scopes``: what it may do (default: all a user does, not staff powers); never more than
    ``allowed`` (what the token asking for it may do), and ``admin`` for staff only."""
    scopes = tuple(USER_SCOPES if scopes is None else scopes)
    try:
        text = scopes_text(scopes)
    except ValueError as error:
        raise ValidationError(str(error)) from None
    if not text:
        raise ValidationError("A token needs at least one scope.")
    if ADMIN in scopes and not user.is_staff:
        raise ValidationError("Only staff tokens may have the admin scope.")
    beyond = [scope for scope in text.split() if scope not in allowed]
    if beyond:
        raise PermissionDenied(
            f"This token may not make a token that can do more than itself: it lacks {', '.join(beyond)}."
        )
    expires = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    with transaction.atomic():
        if ApiToken.objects.filter(user=user, name=name).exists():
            raise Conflict(f"You already have a token called {name!r}; revoke it or choose another name.")
        token, secret = ApiToken.objects.create_for(user, name, expires=expires, scopes=scopes)
        notify.after_commit(notify.GATEWAY)
    return token, secret


def revoke_token(token: ApiToken) -> None:
    with transaction.atomic():
        token.delete()
        notify.after_commit(notify.GATEWAY, notify.ACCESS)  # refused from the next request on


def create_user(
    name: str, *, email: str = "", password: str | None = None, admin: bool = False, token: bool = True
) -> tuple[object, str]:
    """A new account with a first API token (unless ``token`` is false); the token's secret,
    shown once ("" without one)."""
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(
                name, email=email, password=password, is_staff=admin, is_superuser=admin
            )
            scopes = SCOPES if admin else USER_SCOPES  # an operator's own first token does what they do
            secret = create_token(user, "created by operator", scopes=scopes)[1] if token else ""
    except IntegrityError:
        raise Conflict(f"A user called {name!r} exists already.") from None
    return user, secret


# Letters and digits without those read one for another (0 O o, 1 l I): a person types it.
PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0Oo1lI")
PASSWORD_LENGTH = 18  # 56 characters: over 104 bits


def new_password() -> str:
    """A password made for someone, to be handed over once."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


MAX_SSH_KEYS = 20  # per user: each goes into every SSH task's environment


def add_ssh_key(user, text: str, name: str = "") -> SSHKey:
    """Register the public key in ``text`` for ``user``: ValidationError for something that is
    not an acceptable key, Conflict for a key this user registered already. Whether others
    registered it is neither checked nor told: a public key is public, and it opens the door
    only to the account whose name the login gives (rosetta.gateway.ssh_door). The door checks
    the database at every connection: no signal needed."""
    parsed = parse_public_key(text)
    name = _printable(name)[:MAX_NAME] or _printable(parsed.comment) or f"{parsed.kind} key"
    mine = SSHKey.objects.filter(user=user, fingerprint=parsed.fingerprint).first()
    if mine is not None:
        raise Conflict(f"You have registered this key already, as {mine.name!r} ({parsed.fingerprint}).")
    if SSHKey.objects.filter(user=user).count() >= MAX_SSH_KEYS:
        raise ValidationError(f"You have {MAX_SSH_KEYS} SSH keys already; remove one you no longer use first.")
    try:
        with transaction.atomic():
            return SSHKey.objects.create(
                user=user,
                name=name,
                public_key=parsed.public_key,
                kind=parsed.kind,
                bits=parsed.bits,
                fingerprint=parsed.fingerprint,
            )
    except IntegrityError:  # the same key, added twice at once
        raise Conflict(f"You have registered this key already ({parsed.fingerprint}).") from None


def _printable(text: str) -> str:
    """A key's name as pages, tables and logs show it: one line, no control characters."""
    return " ".join("".join(char if char.isprintable() else " " for char in text or "").split())


def remove_ssh_key(key: SSHKey) -> None:
    """From the next connection on, the SSH front door refuses it (it reads the database at each),
    and within seconds it ends the connections open with it (it looks at them again)."""
    key.delete()


def set_active(user, active: bool) -> int:
    """Deactivate or reactivate a user (see deactivate and reactivate); how many tasks are being
    stopped."""
    if active:
        reactivate(user)
        return 0
    return deactivate(user)


def deactivate(user) -> int:
    """No login, tokens and task access refused at once, open SSH door connections ended within
    seconds, every active task of theirs stopped, with that reason on each; how many tasks are
    being stopped. Their tokens are kept meanwhile only so that whoever holds one is told the
    account is deactivated: reactivating revokes them."""
    with transaction.atomic():
        user.is_active = False
        user.save(update_fields=["is_active"])  # rosetta.accounts.signals tells the gateway
        return sum(stopping for _, stopping in user_deactivated.send(sender=deactivate, user=user))


def reactivate(user) -> int:
    """Let a deactivated user log in again, with none of their old API tokens: a token that was
    refused for deactivation never opens anything again, and the user makes new ones. Their SSH
    public keys stay: a public key is no secret, and the person who registered it holds its
    private half. How many tokens were revoked (none for a user who was active)."""
    with transaction.atomic():
        if get_user_model().objects.filter(pk=user.pk, is_active=True).exists():
            return 0  # active already: their tokens are theirs
        revoked, _ = ApiToken.objects.filter(user=user).delete()
        user.is_active = True
        # In the same transaction: the gateway's next table (rosetta.accounts.signals wakes it)
        # never has the user active with the old tokens.
        user.save(update_fields=["is_active"])
    return revoked


def reset_password(user, password: str | None = None) -> str:
    """Set a new password (a random one when none is given) and end the user's sessions and
    task access; the password, to hand to the user once."""
    from django.contrib.auth.password_validation import validate_password

    from rosetta.accounts.signals import end_task_access

    password = password or new_password()
    validate_password(password, user)
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        end_task_access(user.pk)
    return password
