"""Users who come from the identity provider (OpenID Connect): what their claims say about them,
and the platform user they are — found by (issuer, subject), created on first use, their groups
and staff rights taken from the provider at each login.

The claims given here have been validated already (rosetta.accounts.provider, with Authlib)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from rosetta.accounts.models import ExternalIdentity
from rosetta.accounts.tokens import ADMIN, READ, SCOPES

GROUP_NAME_MAX = 150  # django.contrib.auth.models.Group.name


class Refused(Exception):
    """The provider's user cannot sign in here (said to them as it is)."""


@dataclass(frozen=True)
class Person:
    """Who the provider says the user is, in the platform's terms."""

    issuer: str
    subject: str
    username: str
    email: str
    groups: tuple[str, ...]
    staff: bool | None  # None: no staff group configured, staff is decided on the platform


def person_from_claims(claims: dict, issuer: str, username_claim: str, groups_claim: str, staff_group: str) -> Person:
    """The user described by validated claims; Refused when they do not name the user usably."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Refused("The identity provider did not say who you are (no subject in its answer).")
    username = claims.get(username_claim)
    if not isinstance(username, str) or not username.strip():
        raise Refused(f"The identity provider did not give a user name (its {username_claim!r} claim is missing).")
    username = username.strip()
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise Refused(
            f"The identity provider's user name {username!r} cannot be used here "
            "(letters, digits and @ . + - _ only, at most 150 characters)."
        ) from None
    if len(username) > 150:
        raise Refused(f"The identity provider's user name {username[:40]!r}… is longer than 150 characters.")
    groups = groups_from_claim(claims.get(groups_claim))
    return Person(
        issuer=issuer, subject=subject, username=username, email=str(claims.get("email") or ""), groups=groups,
        staff=(staff_group in groups) if staff_group else None,
    )  # fmt: skip


def groups_from_claim(value) -> tuple[str, ...]:
    """A groups claim as providers write it — a list, or one space- or comma-separated string — as
    sorted, distinct group names (path-like names such as Keycloak's /astro/staff kept whole)."""
    if value is None:
        return ()
    names = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(names, list | tuple):
        return ()
    return tuple(sorted({str(name).strip() for name in names if str(name).strip()} - {""}))


def scopes_from_claim(scope, user_is_staff: bool) -> frozenset[str]:
    """What a provider's access token may do here: the platform's scope names its ``scope`` claim
    holds (other scopes, like ``openid``, mean nothing here); none of them: read only. ``admin``
    only for staff who asked for it."""
    asked = set(scope.split()) if isinstance(scope, str) else {str(s) for s in scope or ()}
    held = asked & set(SCOPES)
    if ADMIN in held and not user_is_staff:
        held.discard(ADMIN)
    return frozenset(held or {READ})


def signed_in_user(person: Person):
    """The platform user for this provider's user, created on first use, with groups and staff
    rights as the provider says now. Safe when two first logins of one person race."""
    User = get_user_model()
    for attempt in range(2):
        try:
            with transaction.atomic():
                link = _link_of(person)
                if link is None and User.objects.filter(username=person.username).exists():
                    link = _link_of(person)  # made meanwhile by this person's other first login?
                if link is not None:
                    user = link.user
                else:
                    if User.objects.filter(username=person.username).exists():
                        raise Refused(
                            f"An account named {person.username!r} already exists on this platform and is not "
                            "linked to your login at the identity provider. Ask the platform's operators to link "
                            f"them (rosetta users link {person.username} --subject {person.subject})."
                        )
                    user = User(username=person.username, email=person.email)
                    user.set_unusable_password()
                    user.save()
                    ExternalIdentity.objects.create(user=user, issuer=person.issuer, subject=person.subject)
                if not user.is_active:
                    raise Refused("This account is deactivated: ask the platform's staff to reactivate it.")
                _sync(user, person)
                return user
        except IntegrityError:
            if attempt:  # the other first login made the user and its link: it is found now
                raise
    raise AssertionError("unreachable")


def _link_of(person: Person) -> ExternalIdentity | None:
    return ExternalIdentity.objects.select_related("user").filter(issuer=person.issuer, subject=person.subject).first()


def _sync(user, person: Person) -> None:
    """Groups exactly as the provider lists them (the catalogue shows software by group); staff
    from the staff group, taken away when the user leaves it."""
    groups = [_group(name) for name in person.groups if len(name) <= GROUP_NAME_MAX]
    user.groups.set(groups)
    changed = []
    if person.email and user.email != person.email:
        user.email = person.email
        changed.append("email")
    if person.staff is not None and user.is_staff != person.staff:
        user.is_staff = person.staff
        changed.append("is_staff")
        if not person.staff and user.is_superuser:
            user.is_superuser = False
            changed.append("is_superuser")
    if changed:
        user.save(update_fields=changed)


def _group(name: str) -> Group:
    group, _ = Group.objects.get_or_create(name=name)  # get_or_create: safe when two logins make it at once
    return group


def link(user, subject: str, issuer: str | None = None) -> ExternalIdentity:
    """Let the provider's user ``subject`` sign in as the existing ``user`` (an operator's decision)."""
    issuer = issuer or settings.OIDC_ISSUER
    if not issuer:
        raise ValueError("No identity provider is configured (ROSETTA_OIDC_ISSUER): there is nothing to link to.")
    taken = ExternalIdentity.objects.filter(issuer=issuer, subject=subject).exclude(user=user).first()
    if taken is not None:
        raise ValueError(f"That login at the identity provider is linked to {taken.user.username!r} already.")
    identity, _ = ExternalIdentity.objects.update_or_create(
        user=user, issuer=issuer, defaults={"subject": subject}
    )  # fmt: skip
    return identity
