"""A backend: the live object behind a resource that starts, polls and ends tasks' work there —
the start/poll/end contract every scheduler kind implements (``DirectBackend``: no scheduler, the
engine runs the container at once; ``BatchBackend``: through a batch system, e.g. Slurm).

Modelled on JupyterHub's Spawner. ``start`` launches and returns what the resource reports
right after (queued for a batch scheduler, running for a direct start), not waiting for the
interface. ``poll`` reports every task of this Rosetta instance in one call. ``end`` stops
the work, returns the end of its output and removes it; it is idempotent.

A backend holds the transport (how commands and files reach the resource) and the engine (which
argv to send); its class comes from the resource's scheduler kind (rosetta.computing.kinds).
"""

from __future__ import annotations

import asyncio
import posixpath
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from rosetta.computing.contract import ContainerSpec, Observation, TaskRef
from rosetta.computing.engines.base import Engine
from rosetta.computing.errors import Refused
from rosetta.computing.transports.base import Transport

Keep = Callable[[bytes], Awaitable[None]]  # what ``end`` hands a work's output to before removing it


class Backend(ABC):
    poll_interval: float = 1.0  # seconds between polls when nothing else asks for one
    poll_timeout: float = 30.0  # a poll not answered by then counts as the resource unreachable
    max_starts: int = 4  # launches in flight at once on this backend
    max_ends: int = 8  # stops and removals in flight at once
    endpoint_comes_later: bool = False  # a started task's poll may lack its endpoint for a while

    def __init__(self, transport: Transport, engine: Engine) -> None:
        self.transport = transport
        self.engine = engine
        self.start_slots = asyncio.Semaphore(self.max_starts)
        self.end_slots = asyncio.Semaphore(self.max_ends)

    async def prepare(self) -> None:  # noqa: B027 -- most resources need nothing
        """Make the resource ready before any task starts (e.g. isolation); safe to repeat.
        Raises ComputingError when it cannot: then no task may start there."""

    async def make_mount_sources(self, spec: ContainerSpec) -> None:
        """Create the folders of the task's writable storages where they are missing (a user's
        folder of a storage no one has opened yet): the engine binds existing folders only. A
        storage's folder that is, holds or lies inside the platform's own folder there (task
        directories with their environment files and job scripts) is refused before anything
        is made or mounted."""
        if not spec.mounts:
            return
        if not posixpath.isabs(self.transport.work_dir):  # under the account's home: known once connected
            await self.transport.run(["true"], timeout=60)
        for mount in spec.mounts:
            if paths_meet(mount.source, self.transport.work_dir):
                raise Refused(
                    f"A storage's folder ({mount.source}) meets the platform's own folder there "
                    f"({self.transport.work_dir}): tasks cannot mount it. An operator changes the storage's base path."
                )
        sources = [mount.source for mount in spec.mounts if not mount.read_only]
        if sources and not self.transport.direct:
            result = await self.transport.run(["mkdir", "-p", "--", *sources], timeout=60)
            if not result.ok:
                raise Refused(f"A storage's folder cannot be created there: {result.error_text()}", result.stderr)

    def on_change(self, listener: Callable[[], None]) -> None:  # noqa: B027 -- most resources do not tell
        """Call ``listener`` when the resource tells of a change to a task's work that the
        scheduler did not make (a container that ended): a poll is worth making at once."""

    async def leftovers(self, instance: str) -> list[str]:
        """Tasks of ``instance`` that left something on the resource besides their work (a task
        network whose launch was cut short); ``end`` removes it. Most resources leave nothing."""
        return []

    async def home_files(self, task: TaskRef, home: str, limit: int) -> list[str] | None:
        """Up to ``limit`` files a person keeps in the running task's ``home`` (relative paths;
        hidden ones and other mounts left out), or None where the platform cannot look into a
        running container (a batch job on a compute node). Raises ComputingError when it could
        not look."""
        return None

    async def late_endpoint(self, task: TaskRef) -> Observation | None:
        """A started task seen running with where its interface listens, once the resource says
        so, between polls. Most backends know at launch (their poll reports it); a batch job's
        launcher writes it down later (``endpoint_comes_later``)."""
        return None

    @property
    def description(self) -> str:
        """How people call this backend in messages: the engine and where it runs."""
        return self.engine.name

    @abstractmethod
    async def start(self, spec: ContainerSpec) -> Observation:
        """Launch; raise Unreachable (try again) or Refused (give up) with the resource's words."""

    @abstractmethod
    async def poll(self, instance: str, tasks: Iterable[TaskRef]) -> dict[str, Observation]:
        """Every task of ``instance`` on this backend, by task id (``tasks`` are those the
        controller knows, for backends that cannot list by label)."""

    @abstractmethod
    async def end(self, task: TaskRef, grace_seconds: int, log_lines: int, keep: Keep | None = None) -> bytes:
        """Stop (SIGTERM, SIGKILL after the grace period), keep the last ``log_lines`` lines of
        output, remove every trace; return those lines. Work already gone is fine. ``keep`` is
        awaited with the lines, when there were any to read, before anything that would lose
        them is removed: a caller killed half-way has them already (an error it raises removes
        nothing). What no one can use once the work is gone (a task network) may be removed a
        moment later, off this path; ``leftovers`` finds it again if that never happens."""

    @abstractmethod
    def logs(self, task: TaskRef, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]: ...

    async def close(self) -> None:
        await self.transport.close()


def paths_meet(one: str, other: str) -> bool:
    """Whether one of two absolute paths is the other or lies inside it (by their text)."""
    one, other = posixpath.normpath(one), posixpath.normpath(other)
    return one == other or one.startswith(other.rstrip("/") + "/") or other.startswith(one.rstrip("/") + "/")
