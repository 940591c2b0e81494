"""Composes a resource's transport, scheduler and engine into one working scheduler."""

from __future__ import annotations

from functools import lru_cache

from rosetta.computing.engines.podman import PodmanEngine, local_containers_conf
from rosetta.computing.models import Resource
from rosetta.computing.schedulers.base import Scheduler
from rosetta.computing.schedulers.direct import DirectScheduler
from rosetta.computing.transports.local import LocalTransport

TRANSPORTS = {"local": LocalTransport}
SCHEDULERS = {"none": DirectScheduler}


def scheduler_for(resource: Resource) -> Scheduler:
    return _compose(resource.transport, resource.scheduler, resource.engine)


@lru_cache(maxsize=64)
def _compose(transport: str, scheduler: str, engine: str) -> Scheduler:
    transport_impl = TRANSPORTS[transport]()
    engine_impl = {"podman": lambda: PodmanEngine(containers_conf=str(local_containers_conf()))}[engine]()
    return SCHEDULERS[scheduler](transport_impl, engine_impl)
