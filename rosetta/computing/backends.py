"""Composes a resource's transport, scheduler and engine into one working scheduler."""

from __future__ import annotations

import resource as rlimit
import shutil
from functools import lru_cache
from pathlib import Path

from rosetta.computing.engines.podman import PodmanEngine
from rosetta.computing.models import Resource
from rosetta.computing.schedulers.base import Scheduler
from rosetta.computing.schedulers.direct import DirectScheduler
from rosetta.computing.transports.local import LocalTransport
from rosetta.core.paths import home

TRANSPORTS = {"local": LocalTransport}
SCHEDULERS = {"none": DirectScheduler}


def scheduler_for(resource: Resource) -> Scheduler:
    return _compose(resource.transport, resource.scheduler, resource.engine)


@lru_cache(maxsize=64)
def _compose(transport: str, scheduler: str, engine: str) -> Scheduler:
    transport_impl = TRANSPORTS[transport]()
    engine_impl = {"podman": lambda: PodmanEngine(containers_conf=str(local_containers_conf()))}[engine]()
    return SCHEDULERS[scheduler](transport_impl, engine_impl)


def local_containers_conf() -> Path:
    """Podman settings this machine needs, written fresh on every start.

    runc instead of crun (crun refuses hybrid cgroup hosts), and ulimits no higher than our
    own hard limit (podman's default raises RLIMIT_NOFILE, which fails where root may not).
    """
    hard = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)[1]
    nofile = "" if hard == rlimit.RLIM_INFINITY else f'"nofile={hard}:{hard}", '
    lines = ["[containers]", f'default_ulimits = [{nofile}"nproc=32768:32768"]']
    if shutil.which("runc"):
        lines += ["[engine]", 'runtime = "runc"']
    path = home() / "podman" / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
