"""Composes a resource's transport, scheduler and engine into one working scheduler.

Each piece is built from the resource by a small factory; adding SSH or Slurm means adding
a factory here, not a class per combination.
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
        containers_conf=str(local_containers_conf()) if resource.transport == "local" else None),
}
SCHEDULERS: dict[str, Callable[[Transport, Engine], Scheduler]] = {
    "none": DirectScheduler,
}

_schedulers: dict[tuple, Scheduler] = {}


def scheduler_for(resource: Resource) -> Scheduler:
    """The one scheduler for everything that reaches the same place the same way, so that
    resources sharing a machine (say, two local resources with different limits) are polled once."""
    key = resource.backend_key()
    if key not in _schedulers:
        transport = TRANSPORTS[resource.transport](resource)
        engine = ENGINES[resource.engine](resource)
        _schedulers[key] = SCHEDULERS[resource.scheduler](transport, engine)
    return _schedulers[key]
