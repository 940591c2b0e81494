"""Composes a resource's transport, scheduler and engine into one backend.

Each piece is built from the resource by a small factory; adding a transport, scheduler or
engine means adding a factory here, not a class per combination. Backends are shared by
everything that reaches the same machinery the same way (two local resources with different
limits are polled once) — where each user is their own account on a resource, per Rosetta user
and key, never by the account's name alone (Resource.transport_key) — and closed when nothing
uses them any more.

Factories read the database (a user's own key): call them from synchronous code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings

from rosetta.computing import firewall
from rosetta.computing.engines.apptainer import ApptainerEngine
from rosetta.computing.engines.base import Engine
from rosetta.computing.engines.docker import DockerEngine
from rosetta.computing.engines.podman import PodmanEngine, local_containers_conf
from rosetta.computing.errors import Unreachable
from rosetta.computing.models import Resource
from rosetta.computing.schedulers.base import Scheduler
from rosetta.computing.schedulers.direct import DirectScheduler
from rosetta.computing.schedulers.slurm import SlurmScheduler
from rosetta.computing.transports.base import Transport
from rosetta.computing.transports.local import LocalTransport
from rosetta.computing.transports.ssh import SSHTransport


def _local(resource: Resource, user) -> Transport:
    return LocalTransport()


def _ssh(resource: Resource, user) -> Transport:
    username, private_key = resource.account_for(user)
    return SSHTransport(
        resource.host, resource.port, username, private_key, resource.host_keys.splitlines(), resource.work_dir
    )


def _podman(resource: Resource) -> PodmanEngine:
    if resource.transport != "local":
        return PodmanEngine()  # rootless, as the account: published on the host's loopback
    # This machine's podman needs settings of its own (see local_containers_conf). Run by root,
    # it gives every task a network and a user namespace of its own (see rosetta.computing.firewall).
    rootful = os.geteuid() == 0
    return PodmanEngine(
        containers_conf=str(local_containers_conf()),
        closed_containers_conf=str(local_containers_conf(closed=True)),
        task_networks=rootful,
        user_namespaces=rootful,
    )


def _direct(transport: Transport, engine: Engine, resource: Resource) -> Scheduler:
    boundary = None
    if engine.task_networks:
        public_port = urlsplit(settings.PUBLIC_URL).port or (443 if settings.PUBLIC_URL.startswith("https") else 80)

        async def boundary(transport: Transport) -> None:
            await firewall.apply(transport, os.geteuid(), public_port)

    return DirectScheduler(transport, engine, boundary)


TRANSPORTS: dict[str, Callable[[Resource, object], Transport]] = {"local": _local, "ssh": _ssh}
ENGINES: dict[str, Callable[[Resource], Engine]] = {
    "podman": _podman,
    "docker": lambda resource: DockerEngine(),
    "apptainer": lambda resource: ApptainerEngine(),
}


def _slurm(transport: Transport, engine: Engine, resource: Resource) -> Scheduler:
    return SlurmScheduler(transport, engine, resource.partition, resource.time_limit_minutes)


SCHEDULERS: dict[str, Callable[[Transport, Engine, Resource], Scheduler]] = {"none": _direct, "slurm": _slurm}

_transports: dict[tuple, Transport] = {}
_backends: dict[tuple, Scheduler] = {}
_making = threading.RLock()  # callers come from several threads (Django's): one object per key


def transport_for(resource: Resource, user=None) -> Transport:
    """The one transport per machine and account (where each user is their own account there:
    per user and key)."""
    key = resource.transport_key(user)
    with _making:
        if key not in _transports:
            _transports[key] = TRANSPORTS[resource.transport](resource, user)
        return _transports[key]


def backend_for(resource: Resource, user=None) -> Scheduler:
    """The one backend for everything that reaches the same place the same way. A local
    resource of another machine has none here (Unreachable): its engine is that machine's."""
    if resource.transport == "local" and resource.node != settings.NODE:
        raise Unreachable(
            f"{resource.name} is machine {resource.node or '(none)'}'s own resource; this is {settings.NODE}, "
            "whose controller never acts on it."
        )
    key = resource.backend_key(user)
    with _making:
        if key not in _backends:
            if resource.scheduler not in SCHEDULERS or resource.engine not in ENGINES:
                raise NotImplementedError(f"{resource.get_scheduler_display()} with {resource.get_engine_display()}")
            engine = ENGINES[resource.engine](resource)
            _backends[key] = SCHEDULERS[resource.scheduler](transport_for(resource, user), engine, resource)
        return _backends[key]


async def forget(in_use: set[Scheduler]) -> None:
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
