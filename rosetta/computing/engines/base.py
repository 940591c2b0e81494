"""How a container runs: an engine turns a task's container spec into argv lists and
reads the engine's answers back. It executes nothing itself — the scheduler does, through
the transport — which keeps every engine a set of pure, unit-testable functions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

TASK_LABEL = "rosetta.task"
INSTANCE_LABEL = "rosetta.instance"


@dataclass(frozen=True)
class ContainerSpec:
    task_id: str
    instance: str               # which Rosetta installation owns the container
    image: str
    port: int                   # the interface's port inside the container
    cpus: float
    memory_mb: int
    env: dict[str, str] = field(default_factory=dict)
    pull: str = "missing"       # missing | never | always


@dataclass(frozen=True)
class ContainerStatus:
    task_id: str
    state: str                  # running, exited, created, stopped, paused, ...
    exit_code: int | None
    host_port: int | None       # the published interface port on the resource's loopback
    image_id: str = ""

    @property
    def is_running(self) -> bool:
        return self.state == "running"

    @property
    def has_ended(self) -> bool:
        return self.state in ("exited", "stopped", "dead")


class Engine(ABC):
    name: str

    @staticmethod
    def container_name(task_id: str) -> str:
        return f"rosetta-{task_id}"

    @abstractmethod
    def run_argv(self, spec: ContainerSpec) -> list[str]:
        """Start the container detached, its interface published on the resource's loopback."""

    @abstractmethod
    def list_argv(self, instance: str) -> list[str]:
        """List this instance's task containers, running or not."""

    @abstractmethod
    def parse_list(self, output: str) -> list[ContainerStatus]:
        ...

    @abstractmethod
    def remove_argv(self, task_id: str, grace_seconds: int) -> list[str]:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove; succeeds if already gone."""

    @abstractmethod
    def logs_argv(self, task_id: str, *, follow: bool, tail: int | None = None) -> list[str]:
        ...
