"""Composes a resource's transport, scheduler and engine into one backend.

Each piece is built from the resource by a small factory; adding SSH or Slurm means adding
a factory here, not a class per combination. Backends are shared by every resource that
reaches the same machinery the same way (two local resources with different limits are
polled once), and closed when no resource uses them any more.
"""

from __future__ import annotations

from collections.abc import Callable

from rosetta.computing.engines.base import Engine
from rosetta.computing.engines.podman import PodmanEngine, local_containers_conf
from rosetta.computing.models import Resource
from rosetta.computing.schedulers.base import Scheduler
from rosetta.computing.schedulers.direct import DirectScheduler
from rosetta.computing.transports.base import Transport
from rosetta.computing.transports.local import LocalTransport

TRANSPORTS: dict[str, Callable[[Resource], Transport]] = {
    "local": lambda resource: LocalTransport(),
}
ENGINES: dict[str, Callable[[Resource], Engine]] = {
    # This machine's podman needs settings of its own (see local_containers_conf).
    "podman": lambda resource: PodmanEngine(
        containers_conf=str(local_containers_conf()) if resource.transport == "local" else None
    ),
}
SCHEDULERS: dict[str, Callable[[Transport, Engine], Scheduler]] = {
    "none": DirectScheduler,
}

_transports: dict[tuple, Transport] = {}
_backends: dict[tuple, Scheduler] = {}


def transport_for(resource: Resource) -> Transport:
    key = resource.transport_key()
    if key not in _transports:
        _transports[key] = TRANSPORTS[resource.transport](resource)
    return _transports[key]


def backend_for(resource: Resource) -> Scheduler:
    """The one backend for everything that reaches the same place the same way."""
    key = resource.backend_key()
    if key not in _backends:
        engine = ENGINES[resource.engine](resource)
        _backends[key] = SCHEDULERS[resource.scheduler](transport_for(resource), engine)
    return _backends[key]


async def forget(in_use: set[Scheduler]) -> None:
    """Close the backends (and transports) that no resource uses any more."""
    for key in [key for key, backend in _backends.items() if backend not in in_use]:
        await _backends.pop(key).close()
    transports_in_use = {id(backend.transport) for backend in _backends.values()}
    for key in [key for key, transport in _transports.items() if id(transport) not in transports_in_use]:
        await _transports.pop(key).close()
