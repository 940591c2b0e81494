"""Who a user is on resources where each user is their own account: their remote name.

A user's name is accepted once Rosetta's key for them logs in as that account on an enabled
such resource (the account's owner put the key in its authorized_keys), or when an operator
gives it. Two Rosetta users never hold one account, unless an operator lets them share it;
Resource.account_for refuses such a collision wherever it came from. The API, the Resources
page and the `rosetta users set-remote-name` command all come here.
"""

from __future__ import annotations

import asyncio
import re

import asyncssh
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from rosetta.computing import kinds
from rosetta.computing.models import Credentials, Resource, SSHIdentity, holders
from rosetta.core import notify
from rosetta.core.errors import Conflict
from rosetta.core.sealing import unseal

NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,63}")
PROOF_TIMEOUT = 15.0  # seconds per resource tried


async def claim(user, name: str) -> SSHIdentity:
    """Make ``name`` (empty: the user's Rosetta name) the user's remote name, once their key
    logs in as it; refused while another user holds it. Async: the web process's synchronous
    views share one thread, which must not wait for a remote host."""
    identity, name, resources = await sync_to_async(_before_proof)(user, name)
    if resources:
        await _prove(resources, name, identity)
        identity = await sync_to_async(_save)(identity, name, shared=False)
    return identity


def _before_proof(user, name: str) -> tuple[SSHIdentity, str, list[Resource]]:
    """The user's identity, the name, and where to prove it (none: it was proven already)."""
    identity = SSHIdentity.of(user)
    identity.user = user  # read in async code later (remote_name): never fetched there
    name = _valid(name) or user.get_username()
    if name == identity.remote_username and identity.remote_name_checked and not identity.remote_name_shared:
        return identity, name, []
    if holders(name).exclude(pk=user.pk).exists():
        raise Conflict(
            f"Another Rosetta user's account is called {name} already: Rosetta logs in to one account for one "
            "user only. If you share that account, ask an operator."
        )
    return identity, name, _proving_grounds()


def assign(user, name: str, shared: bool = False) -> SSHIdentity:
    """What an operator does (no proof): ``name`` (empty: the user's Rosetta name) becomes the
    user's remote name; with ``shared``, the other users who hold it keep it too."""
    identity = SSHIdentity.of(user)
    name = _valid(name) or user.get_username()
    with transaction.atomic():
        others = list(holders(name).exclude(pk=user.pk))
        if others and not shared:
            said = ", ".join(sorted(other.get_username() for other in others))
            raise Conflict(
                f"{said} already hold {name}: give them another name first, or let them share it (--shared)."
            )
        for other in others:  # sharing is said of every holder, so none of them is refused
            SSHIdentity.objects.filter(pk=SSHIdentity.of(other).pk).update(
                remote_username=name, remote_name_checked=True, remote_name_shared=True
            )
        return _save(identity, name, shared=shared)


def _valid(name: str) -> str:
    name = name.strip()
    if name and not NAME.fullmatch(name):
        raise ValidationError(
            "An account's name is up to 64 lower-case letters, digits, '_', '.' or '-', starting with a letter or '_'."
        )
    return name


def _save(identity: SSHIdentity, name: str, shared: bool) -> SSHIdentity:
    identity.remote_username, identity.remote_name_checked, identity.remote_name_shared = name, True, shared
    try:
        with transaction.atomic():
            identity.save(update_fields=["remote_username", "remote_name_checked", "remote_name_shared"])
            # The account their tasks are reached and run as may have changed, or be refused no more.
            notify.after_commit(notify.CONTROLLER)
            notify.after_commit(notify.GATEWAY)
    except IntegrityError:  # another user proved the same name at the same moment
        raise Conflict(f"Another Rosetta user's account is called {name} already.") from None
    return identity


def _proving_grounds() -> list[Resource]:
    resources = list(
        Resource.objects.filter(enabled=True, credentials=Credentials.USER)
        .exclude(transport__in=kinds.local_transports())
        .exclude(host_keys="")
        .order_by("name")
    )
    if not resources:
        raise ValidationError(
            "No enabled resource runs tasks as users' own accounts, so Rosetta cannot check that your key logs "
            "in as that account: ask an operator to set your account's name (rosetta users set-remote-name)."
        )
    return resources


async def _prove(resources: list[Resource], name: str, identity: SSHIdentity) -> None:
    """Log in as ``name`` with the user's key on one of ``resources`` (their pinned host keys
    checked); ValidationError saying what to do when none lets it in."""
    key = asyncssh.import_private_key(unseal(identity.private_key))
    denied, problems = [], []
    for resource in resources:
        pinned = [asyncssh.import_public_key(line) for line in resource.host_keys.splitlines()]
        try:
            async with asyncio.timeout(PROOF_TIMEOUT):
                connection = await asyncssh.connect(
                    resource.host,
                    resource.port,
                    username=name,
                    client_keys=[key],
                    known_hosts=(pinned, [], []),
                    config=None,
                    agent_path=None,
                )
                connection.close()
                await connection.wait_closed()
            return
        except asyncssh.PermissionDenied:
            denied.append(resource.name)
        except asyncssh.HostKeyNotVerifiable:
            problems.append(f"{resource.name} did not present its pinned host key")
        except (OSError, TimeoutError, asyncssh.Error) as error:
            problems.append(f"{resource.name} did not answer ({error or 'no answer'})")
    if denied:
        raise ValidationError(
            f"Your key does not log in as {name} on {', '.join(denied)}. Add this line to ~/.ssh/authorized_keys "
            f"of the account {name} there first, then give the name again: {identity.public_key}"
        )
    raise ValidationError(f"Rosetta cannot check that name now: {'; '.join(problems)}. Try again later.")
