"""What a computing backend and the controller say to each other, in neutral words.

A backend (transport × scheduler × engine) reports an ``Observation`` per task: where the
task's work is in its life on the resource — not podman's state strings, not Slurm's — with
the endpoint as the resource sees it, an exit code and the resource's own reason. What
identifies the work on the resource (a container id, a Slurm job id) travels as the
observation's ``backend_state``; the controller stores it on the task (``Task.backend_state``), so
a restarted controller finds the work again from the database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

Address = tuple[str, int] | str  # a TCP address, or a unix socket path
TASK_HOME = "/home/rosetta"  # the image convention's home (images/README.md)


class Seen(enum.StrEnum):
    QUEUED = "queued"  # waiting for a place to run (a batch queue)
    STARTING = "starting"  # placed; the container is being created or its image pulled
    RUNNING = "running"  # the container runs; its interface may or may not answer yet
    ENDED = "ended"  # it ran and stopped: see exit_code and reason
    UNKNOWN = "unknown"  # the resource cannot tell right now (paused, mid-transition)


@dataclass(frozen=True)
class Observation:
    task_id: str
    state: Seen
    endpoint: tuple[str, int] | None = None  # where the interface listens, as the resource sees it
    exit_code: int | None = None
    reason: str = ""  # in plain words: a pending reason, why the work ended
    detail: str = ""  # the resource's own words about it, for an operator
    memory_kills: int = 0  # processes the task's memory limit has killed so far
    killed_process: str = ""  # the name of the last of them
    backend_state: dict = field(default_factory=dict)  # identifies the work on the resource
    image_id: str = ""


@dataclass(frozen=True)
class TaskRef:
    """A task as a backend needs to know it: its id and what the backend said identifies it."""

    task_id: str
    backend_state: dict = field(default_factory=dict)
    endpoint: tuple[str, int] | None = None  # where its interface listens, once the controller knows
    port: int | None = None  # the interface's port inside the container


@dataclass(frozen=True)
class Mount:
    """A folder of the resource bound into the container (a storage)."""

    source: str  # absolute, on the resource
    target: str  # absolute, inside the container
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    task_id: str
    instance: str  # which Rosetta installation owns the container
    image: str
    port: int  # the interface's port inside the container
    cpus: float
    memory_mb: int
    env: dict[str, str] = field(default_factory=dict)
    pull: str = "missing"  # missing | never | always
    insecure_pull: bool = False  # from the platform's registry: plain HTTP, the content checked by its digest
    # Writable under an otherwise read-only root: the storage mounted there, else private scratch (tmpfs).
    home: str = TASK_HOME
    outbound: bool = True  # may open connections to other machines
    base_port: bool = False  # the interface listens on the port given in BASE_PORT
    # The scheduler's options for this task (a batch scheduler's partition, time limit, account...):
    # the resource's, with what the task asked (validated by the kind's request schema) over them.
    scheduler_options: dict = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()  # storages, bound in at their mount points
    # With mounts on this machine: the first host id of the owner's user namespace (the same for
    # all their tasks, so that their storages' files stay theirs from task to task).
    id_base: int | None = None
    # The task's secret (rosetta.tasks.secret), given as ROSETTA_TASK_SECRET; never in a repr or log.
    secret: str = field(default="", repr=False)

    @property
    def home_mount(self) -> Mount | None:
        """The storage mounted at the home, if any: then the home persists and no scratch is added."""
        return next((mount for mount in self.mounts if mount.target == self.home), None)
