"""Composes a resource's transport, scheduler and engine into one backend.

Each piece is built from the resource by its kind's factory (rosetta.computing.kinds); adding a
transport, scheduler or engine means adding a kind, not a class per combination. Backends are shared by
everything that reaches the same machinery the same way (two local resources with different
limits are polled once) — where each user is their own account on a resource, per Rosetta user
and key, never by the account's name alone (Resource.transport_key) — and closed when nothing
uses them any more.

Factories read the database (a user's own key): call them from synchronous code.
"""

from __future__ import annotations

import threading

from django.conf import settings

from rosetta.computing import kinds
from rosetta.computing.errors import Unreachable
from rosetta.computing.models import Resource
from rosetta.computing.schedulers.base import Backend
from rosetta.computing.transports.base import Transport

_transports: dict[tuple, Transport] = {}
_backends: dict[tuple, Backend] = {}
_making = threading.RLock()  # callers come from several threads (Django's): one object per key


def transport_for(resource: Resource, user=None) -> Transport:
    """The one transport per machine and account (where each user is their own account there:
    per user and key)."""
    key = resource.transport_key(user)
    with _making:
        if key not in _transports:
            _transports[key] = kinds.get("transport", resource.transport).factory(resource, user)
        return _transports[key]


def backend_for(resource: Resource, user=None) -> Backend:
    """The one backend for everything that reaches the same place the same way. A local
    resource of another machine has none here (Unreachable): its engine is that machine's."""
    if resource.is_local and resource.node != settings.NODE:
        raise Unreachable(
            f"{resource.name} is machine {resource.node or '(none)'}'s own resource; this is {settings.NODE}, "
            "whose controller never acts on it."
        )
    key = resource.backend_key(user)
    with _making:
        if key not in _backends:
            scheduler, engine = kinds.get("scheduler", resource.scheduler), kinds.get("engine", resource.engine)
            _backends[key] = scheduler.factory(transport_for(resource, user), engine.factory(resource), resource)
        return _backends[key]


async def forget(in_use: set[Backend]) -> None:
    """Close the backends (and transports) that nothing uses any more."""
    with _making:
        unused = [_backends.pop(key) for key, backend in list(_backends.items()) if backend not in in_use]
    for backend in unused:
        await backend.close()
    with _making:
        transports_in_use = {id(backend.transport) for backend in _backends.values()}
        gone = [
            _transports.pop(key)
            for key, transport in list(_transports.items())
            if id(transport) not in transports_in_use
        ]
    for transport in gone:
        await transport.close()
