"""No batch scheduler: the container runs right away on the resource itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from urllib.parse import urlsplit

from django.conf import settings

from rosetta.computing import firewall
from rosetta.computing.contract import ContainerSpec, Observation, Seen, TaskRef
from rosetta.computing.engines.base import Engine, home_files_argv
from rosetta.computing.errors import ComputingError, CutShort, Unreachable
from rosetta.computing.kinds import Kind
from rosetta.computing.schedulers.base import Backend, Keep
from rosetta.computing.schedulers.networks import NetworkCollector
from rosetta.computing.schedulers.watch import ContainerWatch
from rosetta.computing.transports.base import Transport

LAUNCH_TIMEOUT = 300.0  # a first pull of a large image takes a while
# Right after a stop, podman's own clean-up may still hold the container's mounts.
REMOVE_ATTEMPTS = 20
REMOVE_RETRY_DELAY = 0.15
# The end of a container's output file read for the output kept when it ends (the controller
# keeps 5,000 lines, at most 256 KiB of them).
KEPT_OUTPUT_READ = 4 * 1024 * 1024


class DirectBackend(Backend):
    def __init__(
        self, transport: Transport, engine: Engine, boundary: Callable[[Transport], Awaitable[None]] | None = None
    ) -> None:
        super().__init__(transport, engine)
        self.boundary = boundary  # fences tasks in on this resource (rosetta.computing.firewall)
        self.networks = NetworkCollector(transport, engine) if engine.task_networks else None
        # Events are followed on this machine only: over SSH the stream would hold one of the
        # connection's few channels for good.
        self.watch = ContainerWatch(transport, engine) if engine.follows_events and transport.direct else None
        # Where a container's output file is, for any container id ("{}" stands for it), once
        # an inspection showed one; None until then, or where the output is no plain file here.
        self.output_file_pattern: str | None = None

    def on_change(self, listener: Callable[[], None]) -> None:
        if self.watch is not None:
            self.watch.on_change = listener

    async def prepare(self) -> None:
        if self.boundary is not None:
            await self.boundary(self.transport)

    async def start(self, spec: ContainerSpec) -> Observation:
        if self.networks is not None:
            await self.networks.claim(spec.task_id)
        if self.watch is None:
            return await self._start(spec)
        self.watch.starting(spec.task_id)
        try:
            seen = await self._start(spec)
        except BaseException:
            self.watch.unsure()
            raise
        self.watch.started(spec.task_id, seen if seen.backend_state else None)
        return seen

    async def _start(self, spec: ContainerSpec) -> Observation:
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
        observations = await self._containers(instance)
        # Addresses on task networks are not in the listing: look up the running containers
        # whose address the controller does not know yet (it was restarted mid-start).
        for ref in tasks:
            seen = observations.get(ref.task_id)
            if ref.endpoint is None and ref.port and seen and seen.endpoint is None and seen.state is Seen.RUNNING:
                observations |= await self._inspect(ref.task_id, ref.port)
        return await self._with_memory_kills(observations)

    async def _containers(self, instance: str) -> dict[str, Observation]:
        """Every container of ``instance``: listed, or as the watch knows them (see watch.py)."""
        if self.watch is None:
            return await self._list(self.engine.list_argv(instance), self.engine.parse_list)
        self.watch.follow(instance)
        if (known := self.watch.view()) is not None:
            return known
        listing = self.watch.listing()
        try:
            listed = await self._list(self.engine.list_argv(instance), self.engine.parse_list)
        except BaseException:
            self.watch.listing_failed()
            raise
        return self.watch.listed_as(listing, listed)

    async def leftovers(self, instance: str) -> list[str]:
        if not self.engine.task_networks:
            return []
        listed = await self.transport.run(self.engine.network_list_argv(instance), timeout=self.poll_timeout)
        if not listed.ok:
            raise Unreachable(f"{self.engine.name} could not list the task networks.", listed.error_text())
        owed = self.networks.owed() if self.networks is not None else set()
        return [task_id for task_id in self.engine.parse_network_list(listed.stdout) if task_id not in owed]

    async def _inspect(self, task_id: str, port: int) -> dict[str, Observation]:
        def parse(output: str) -> list[Observation]:
            self._learn_output_files(output)
            return self.engine.parse_inspect(output, port)

        return await self._with_memory_kills(await self._list(self.engine.inspect_argv(task_id), parse))

    async def _list(self, argv: list[str], parse) -> dict[str, Observation]:
        result = await self.transport.run(argv, timeout=self.poll_timeout)
        if not result.ok:
            if self.engine.absent(result):
                return {}
            raise Unreachable(f"{self.engine.name} could not list the containers.", result.error_text())
        return {observation.task_id: observation for observation in parse(result.stdout)}

    async def _with_memory_kills(self, observations: dict[str, Observation]) -> dict[str, Observation]:
        kills = await self.transport.memory_kills()
        if not kills:
            return observations
        for task_id, observation in observations.items():
            killed = kills.get(observation.backend_state.get("container", ""))
            if killed:
                observations[task_id] = replace(
                    observation, memory_kills=killed.count, killed_process=killed.last_process
                )
        return observations

    async def end(self, task: TaskRef, grace_seconds: int, log_lines: int, keep: Keep | None = None) -> bytes:
        if self.watch is None:
            return await self._end(task, grace_seconds, log_lines, keep)
        self.watch.ending(task.task_id)
        try:
            output = await self._end(task, grace_seconds, log_lines, keep)
        except BaseException:
            self.watch.unsure()
            raise
        self.watch.ended(task.task_id)
        return output

    async def _end(self, task: TaskRef, grace_seconds: int, log_lines: int, keep: Keep | None) -> bytes:
        stopped = await self.transport.run(
            self.engine.stop_argv(task.task_id, grace_seconds), timeout=grace_seconds + 60
        )
        output = b""
        if log_lines and self.engine.stopped_one(stopped):
            with contextlib.suppress(ComputingError):
                output = await self._kept_output(task, log_lines)
            if keep is not None:
                await keep(output)
        await self._remove(task.task_id)
        return output

    async def _kept_output(self, task: TaskRef, lines: int) -> bytes:
        """The last ``lines`` lines of the stopped container's output: from its output file
        where there is one here (no engine command to wait for), else as the engine prints it."""
        path = await self._output_file(task)
        if path is not None:
            data = await self.transport.read_file_tail(path, KEPT_OUTPUT_READ + 1)
            if data is not None:
                whole = len(data) <= KEPT_OUTPUT_READ
                return self.engine.log_lines(data[-KEPT_OUTPUT_READ:], lines, whole)
        return b"".join([chunk async for chunk in self.logs(task, follow=False, tail=lines)])

    async def _output_file(self, task: TaskRef) -> str | None:
        container = task.backend_state.get("container", "")
        if not (self.engine.output_files and self.transport.direct and container):
            return None
        if self.output_file_pattern is None:  # learnt from this container (a restarted controller)
            result = await self.transport.run(self.engine.inspect_argv(task.task_id), timeout=self.poll_timeout)
            if result.ok:
                self._learn_output_files(result.stdout)
        return self.output_file_pattern.replace("{}", container) if self.output_file_pattern else None

    def _learn_output_files(self, inspect_output: str) -> None:
        """Where containers' output files are: the same place for each but for its id."""
        if self.output_file_pattern is not None or not self.engine.output_files:
            return
        for container, path in self.engine.log_files(inspect_output).items():
            if path.count(container) == 1 and "{}" not in path:
                self.output_file_pattern = path.replace(container, "{}")
                return

    async def _remove(self, task_id: str) -> None:
        for _ in range(REMOVE_ATTEMPTS):
            removed = await self.transport.run(self.engine.remove_argv(task_id), timeout=60)
            if self.engine.removed(removed) or not self.engine.removal_pending(removed):
                break
            await asyncio.sleep(REMOVE_RETRY_DELAY)
        if not self.engine.removed(removed):
            raise Unreachable(f"{self.engine.name} could not remove the container.", removed.error_text())
        if self.networks is not None:
            self.networks.collect(task_id)  # in a batch, off the stop's path (networks.py)

    async def close(self) -> None:
        if self.networks is not None:
            await self.networks.close()
        if self.watch is not None:
            await self.watch.close()
        await super().close()

    async def home_files(self, task: TaskRef, home: str, limit: int) -> list[str] | None:
        result = await self.transport.run(self.engine.exec_argv(task.task_id, home_files_argv(home, limit)), timeout=30)
        if not result.ok:
            raise Unreachable(f"{self.engine.name} could not look into the container.", result.error_text())
        return [line.removeprefix("./") for line in result.stdout.splitlines() if line.strip()][:limit]

    async def logs(self, task: TaskRef, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]:
        async for chunk in self.transport.stream(self.engine.logs_argv(task.task_id, follow=follow, tail=tail)):
            yield chunk


def _direct(transport: Transport, engine: Engine, resource) -> DirectBackend:
    boundary = None
    if engine.task_networks:
        public_port = urlsplit(settings.PUBLIC_URL).port or (443 if settings.PUBLIC_URL.startswith("https") else 80)

        async def boundary(transport: Transport) -> None:
            await firewall.apply(transport, os.geteuid(), public_port)

    return DirectBackend(transport, engine, boundary)


KIND = Kind("scheduler", "none", "None (run directly)", _direct)
