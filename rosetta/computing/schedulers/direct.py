"""No batch scheduler: the container runs right away on the resource itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace

from rosetta.computing.contract import ContainerSpec, Observation, Seen, TaskRef
from rosetta.computing.engines.base import Engine, home_files_argv
from rosetta.computing.errors import ComputingError, CutShort, Unreachable
from rosetta.computing.schedulers.base import Keep, Scheduler
from rosetta.computing.transports.base import Transport

LAUNCH_TIMEOUT = 300.0  # a first pull of a large image takes a while
# Right after a stop, podman's own clean-up may still hold the container's mounts.
REMOVE_ATTEMPTS = 20
REMOVE_RETRY_DELAY = 0.15


class DirectScheduler(Scheduler):
    def __init__(
        self, transport: Transport, engine: Engine, boundary: Callable[[Transport], Awaitable[None]] | None = None
    ) -> None:
        super().__init__(transport, engine)
        self.boundary = boundary  # fences tasks in on this resource (rosetta.computing.firewall)

    async def prepare(self) -> None:
        if self.boundary is not None:
            await self.boundary(self.transport)

    async def start(self, spec: ContainerSpec) -> Observation:
        engine = self.engine
        await self.make_mount_sources(spec)
        if engine.task_networks:
            created = await self.transport.run(engine.network_create_argv(spec), timeout=60)
            if not created.ok and not engine.network_exists(created):
                raise Unreachable("podman could not create the task's network.", created.error_text())
        env_file = f"{self.transport.work_dir}/{spec.task_id}.env"
        await self.transport.write_file(env_file, engine.env_file(spec))
        try:
            result = await self.transport.run(engine.run_argv(spec, env_file), timeout=LAUNCH_TIMEOUT)
        finally:
            await self.transport.remove_file(env_file)
        if not result.ok:
            error = engine.refusal(result, spec)
            if not error.transient or isinstance(error, CutShort):
                # Never leave a half-created container behind (created, but the runtime failed):
                # a start tried again would find its name taken.
                await self._remove(spec.task_id)
            raise error
        observed = await self._inspect(spec.task_id, spec.port)
        return observed.get(spec.task_id) or Observation(
            spec.task_id, Seen.ENDED, reason="It ended as soon as it started."
        )

    async def poll(self, instance: str, tasks: Iterable[TaskRef]) -> dict[str, Observation]:
        observations = await self._list(self.engine.list_argv(instance), self.engine.parse_list)
        # Addresses on task networks are not in the listing: look up the running containers
        # whose address the controller does not know yet (it was restarted mid-start).
        for ref in tasks:
            seen = observations.get(ref.task_id)
            if ref.endpoint is None and ref.port and seen and seen.endpoint is None and seen.state is Seen.RUNNING:
                observations |= await self._inspect(ref.task_id, ref.port)
        return observations

    async def leftovers(self, instance: str) -> list[str]:
        if not self.engine.task_networks:
            return []
        listed = await self.transport.run(self.engine.network_list_argv(instance), timeout=self.poll_timeout)
        if not listed.ok:
            raise Unreachable(f"{self.engine.name} could not list the task networks.", listed.error_text())
        return self.engine.parse_network_list(listed.stdout)

    async def _inspect(self, task_id: str, port: int) -> dict[str, Observation]:
        return await self._list(
            self.engine.inspect_argv(task_id), lambda output: self.engine.parse_inspect(output, port)
        )

    async def _list(self, argv: list[str], parse) -> dict[str, Observation]:
        result = await self.transport.run(argv, timeout=self.poll_timeout)
        if not result.ok:
            if self.engine.absent(result):
                return {}
            raise Unreachable(f"{self.engine.name} could not list the containers.", result.error_text())
        observations = {observation.task_id: observation for observation in parse(result.stdout)}
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

    async def end(self, task: TaskRef, grace_seconds: int, log_lines: int, keep: Keep | None = None) -> bytes:
        stopped = await self.transport.run(
            self.engine.stop_argv(task.task_id, grace_seconds), timeout=grace_seconds + 60
        )
        output = b""
        if log_lines and self.engine.stopped_one(stopped):
            with contextlib.suppress(ComputingError):
                output = b"".join([chunk async for chunk in self.logs(task, follow=False, tail=log_lines)])
            if keep is not None:
                await keep(output)
        await self._remove(task.task_id)
        return output

    async def _remove(self, task_id: str) -> None:
        for _ in range(REMOVE_ATTEMPTS):
            removed = await self.transport.run(self.engine.remove_argv(task_id), timeout=60)
            if self.engine.removed(removed) or not self.engine.removal_pending(removed):
                break
            await asyncio.sleep(REMOVE_RETRY_DELAY)
        if not self.engine.removed(removed):
            raise Unreachable(f"{self.engine.name} could not remove the container.", removed.error_text())
        if self.engine.task_networks:
            network = await self.transport.run(self.engine.network_remove_argv(task_id), timeout=60)
            if not self.engine.network_gone(network):
                raise Unreachable(f"{self.engine.name} could not remove the task's network.", network.error_text())

    async def home_files(self, task: TaskRef, home: str, limit: int) -> list[str] | None:
        result = await self.transport.run(self.engine.exec_argv(task.task_id, home_files_argv(home, limit)), timeout=30)
        if not result.ok:
            raise Unreachable(f"{self.engine.name} could not look into the container.", result.error_text())
        return [line.removeprefix("./") for line in result.stdout.splitlines() if line.strip()][:limit]

    async def logs(self, task: TaskRef, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]:
        async for chunk in self.transport.stream(self.engine.logs_argv(task.task_id, follow=follow, tail=tail)):
            yield chunk
