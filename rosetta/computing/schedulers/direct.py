"""No batch scheduler: the container runs right away on the resource itself."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace

from rosetta.computing.contract import ContainerSpec, Observation, Seen, TaskRef
from rosetta.computing.errors import ComputingError, Unreachable
from rosetta.computing.schedulers.base import Scheduler

LAUNCH_TIMEOUT = 300.0  # a first pull of a large image takes a while


class DirectScheduler(Scheduler):
    async def start(self, spec: ContainerSpec) -> Observation:
        result = await self.transport.run(self.engine.run_argv(spec), timeout=LAUNCH_TIMEOUT)
        if not result.ok:
            error = self.engine.refusal(result, spec)
            if not error.transient:
                # Never leave a half-created container behind (created, but the runtime failed).
                await self.transport.run(self.engine.remove_argv(spec.task_id), timeout=60)
            raise error
        observed = await self._list(self.engine.inspect_argv(spec.task_id))
        return observed.get(spec.task_id) or Observation(
            spec.task_id, Seen.ENDED, reason="It ended as soon as it started."
        )

    async def poll(self, instance: str, tasks: Iterable[TaskRef]) -> dict[str, Observation]:
        return await self._list(self.engine.list_argv(instance))

    async def _list(self, argv: list[str]) -> dict[str, Observation]:
        result = await self.transport.run(argv, timeout=self.poll_timeout)
        if not result.ok:
            raise Unreachable(f"{self.engine.name} could not list the containers.", result.error_text())
        observations = {observation.task_id: observation for observation in self.engine.parse_list(result.stdout)}
        kills = await self.transport.memory_kills()
        if not kills:
            return observations
        for task_id, observation in observations.items():
            killed = kills.get(observation.handle.get("container", ""))
            if killed:
                observations[task_id] = replace(
                    observation, memory_kills=killed.count, killed_process=killed.last_process
                )
        return observations

    async def end(self, task: TaskRef, grace_seconds: int, log_lines: int) -> bytes:
        stopped = await self.transport.run(
            self.engine.stop_argv(task.task_id, grace_seconds), timeout=grace_seconds + 60
        )
        output = b""
        if log_lines and self.engine.stopped_one(stopped):
            with contextlib.suppress(ComputingError):
                output = b"".join([chunk async for chunk in self.logs(task, follow=False, tail=log_lines)])
        removed = await self.transport.run(self.engine.remove_argv(task.task_id), timeout=60)
        if not removed.ok:
            raise Unreachable(f"{self.engine.name} could not remove the container.", removed.error_text())
        return output

    async def logs(self, task: TaskRef, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]:
        async for chunk in self.transport.stream(self.engine.logs_argv(task.task_id, follow=follow, tail=tail)):
            yield chunk
