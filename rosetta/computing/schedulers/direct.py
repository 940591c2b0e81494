"""No batch scheduler: the container runs right away on the resource itself."""

from __future__ import annotations

from collections.abc import AsyncIterator

from rosetta.computing.engines.base import ContainerSpec, ContainerStatus
from rosetta.computing.errors import ComputingError
from rosetta.computing.schedulers.base import Scheduler


class DirectScheduler(Scheduler):
    async def start(self, spec: ContainerSpec) -> None:
        result = await self.transport.run(self.engine.run_argv(spec), timeout=300)
        if not result.ok:
            # Never leave a half-created container behind (e.g. created but the runtime failed).
            await self.transport.run(self.engine.remove_argv(spec.task_id, 0))
            raise ComputingError(result.error_text())

    async def poll(self, instance: str) -> dict[str, ContainerStatus]:
        result = await self.transport.run(self.engine.list_argv(instance), timeout=30)
        if not result.ok:
            raise ComputingError(result.error_text())
        return {status.task_id: status for status in self.engine.parse_list(result.stdout)}

    async def stop(self, task_id: str, grace_seconds: int = 10) -> None:
        result = await self.transport.run(self.engine.remove_argv(task_id, grace_seconds), timeout=grace_seconds + 60)
        if not result.ok:
            raise ComputingError(result.error_text())

    async def logs(self, task_id: str, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]:
        async for chunk in self.transport.stream(self.engine.logs_argv(task_id, follow=follow, tail=tail)):
            yield chunk
