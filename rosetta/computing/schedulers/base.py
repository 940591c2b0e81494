"""Who places a task's container on the resource: the start/poll/stop contract.

Modelled on JupyterHub's Spawner: ``start`` launches and returns once the engine accepted
the container (not once the interface answers); ``poll`` reports every container of this
Rosetta instance in one call; ``stop`` is idempotent. A Slurm scheduler will wrap the same
engine argv in a batch job and read the endpoint from the job's work directory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from rosetta.computing.engines.base import ContainerSpec, ContainerStatus, Engine
from rosetta.computing.transports.base import Transport


class Scheduler(ABC):
    def __init__(self, transport: Transport, engine: Engine) -> None:
        self.transport = transport
        self.engine = engine

    @abstractmethod
    async def start(self, spec: ContainerSpec) -> None:
        """Launch the container; raise ComputingError with the engine's own words on failure."""

    @abstractmethod
    async def poll(self, instance: str) -> dict[str, ContainerStatus]:
        """The state of every task container of ``instance``, by task id."""

    @abstractmethod
    async def stop(self, task_id: str, grace_seconds: int = 10) -> None:
        """Stop and remove the task's container; a container already gone is fine."""

    @abstractmethod
    def logs(self, task_id: str, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]:
        ...
