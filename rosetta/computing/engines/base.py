"""How a container runs: an engine turns a task's container spec into argv lists and reads
the engine's answers back as neutral observations. It executes nothing itself — the scheduler
does, through the transport — which keeps every engine a set of pure, unit-testable functions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from rosetta.computing.contract import ContainerSpec, Observation
from rosetta.computing.errors import ComputingError
from rosetta.computing.transports.base import CommandResult

TASK_LABEL = "rosetta.task"
INSTANCE_LABEL = "rosetta.instance"


class Engine(ABC):
    name: str

    @staticmethod
    def container_name(task_id: str) -> str:
        return f"rosetta-{task_id}"

    @abstractmethod
    def run_argv(self, spec: ContainerSpec) -> list[str]:
        """Start the container detached, its interface published on the resource's loopback."""

    @abstractmethod
    def inspect_argv(self, task_id: str) -> list[str]:
        """Describe the one task container (cheaper than listing all of them)."""

    @abstractmethod
    def list_argv(self, instance: str) -> list[str]:
        """List this instance's task containers, running or not."""

    @abstractmethod
    def parse_list(self, output: str) -> list[Observation]:
        """Observations from the output of ``list_argv`` or ``inspect_argv``."""

    @abstractmethod
    def stop_argv(self, task_id: str, grace_seconds: int) -> list[str]:
        """SIGTERM, then SIGKILL after the grace period; the container stays, for its logs."""

    @abstractmethod
    def stopped_one(self, result: CommandResult) -> bool:
        """Whether ``stop_argv`` found a container (else there are no logs to keep)."""

    @abstractmethod
    def remove_argv(self, task_id: str) -> list[str]:
        """Remove the container, running or not; succeeds if it is already gone."""

    @abstractmethod
    def logs_argv(self, task_id: str, *, follow: bool, tail: int | None = None) -> list[str]: ...

    @abstractmethod
    def version_argv(self) -> list[str]: ...

    @abstractmethod
    def refusal(self, result: CommandResult, spec: ContainerSpec) -> ComputingError:
        """Why ``run_argv`` failed, classified: a transient error or a refusal, in plain words."""
