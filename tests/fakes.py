"""An in-memory computing backend for controller tests (tests only: end-to-end tests use real
podman). It keeps its "work" in a dict and lets a test hold a start or a poll at a gate, fail
the next starts, or stop answering, so races and faults are reproduced exactly, in
milliseconds. Interfaces are real loopback sockets: the controller probes them for real.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from rosetta.computing.contract import Address, ContainerSpec, Observation, Seen, TaskRef
from rosetta.computing.errors import ComputingError
from rosetta.computing.schedulers.base import Backend
from rosetta.computing.transports.base import CommandResult, Transport


class FakeTransport(Transport):
    direct = True
    work_dir = "/nonexistent/rosetta-work"

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, argv, *, timeout=60.0, stdin=None) -> CommandResult:
        raise NotImplementedError

    async def stream(self, argv) -> AsyncIterator[bytes]:
        raise NotImplementedError
        yield b""

    async def read_file(self, path: str) -> bytes | None:
        return None

    async def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        pass

    async def remove_file(self, path: str) -> None:
        pass

    async def reach(self, host: str, port: int) -> Address:
        return host, port


@dataclass
class Work:
    spec: ContainerSpec
    state: Seen
    endpoint: tuple[str, int] | None
    exit_code: int | None = None
    output: bytes = b""
    memory_kills: int = 0
    reason: str = ""
    ends: int = 0  # times `end` was called for it


@dataclass
class Gate:
    """Holds callers until opened; tells the test when someone is waiting."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)

    async def pass_through(self) -> None:
        self.waiting.set()
        await self.opened.wait()


class FakeBackend(Backend):
    def __init__(
        self,
        name: str = "fake",
        *,
        interface: tuple[str, int] | None = None,
        queue: bool = False,
        poll_interval: float = 0.05,
        max_starts: int = 4,
    ) -> None:
        self.poll_interval = poll_interval
        self.poll_timeout = 2.0
        self.max_starts = max_starts
        super().__init__(FakeTransport(name), engine=_FakeEngine())
        self.interface = interface  # where started work "listens"
        self.queue = queue  # start puts the work in a queue, as a batch scheduler does
        self.work: dict[str, Work] = {}
        self.polls = 0
        self.starts: list[str] = []
        self.ended: list[str] = []
        self.start_gate: Gate | None = None
        self.poll_gate: Gate | None = None
        self.start_errors: list[ComputingError] = []  # raised by the next starts, in order
        self.poll_error: ComputingError | None = None
        self.hang = False  # polls never answer

    @property
    def description(self) -> str:
        return f"fake {self.transport.name}"

    async def start(self, spec: ContainerSpec) -> Observation:
        self.starts.append(spec.task_id)
        if self.start_gate is not None:
            await self.start_gate.pass_through()
        if self.start_errors:
            raise self.start_errors.pop(0)
        state = Seen.QUEUED if self.queue else Seen.RUNNING
        self.work[spec.task_id] = Work(
            spec, state, None if self.queue else self.interface, output=f"output of {spec.task_id}\n".encode()
        )
        return self._observe(spec.task_id)

    async def poll(self, instance: str, tasks: Iterable[TaskRef]) -> dict[str, Observation]:
        self.polls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.poll_gate is not None:
            await self.poll_gate.pass_through()
        if self.poll_error is not None:
            raise self.poll_error
        return {task_id: self._observe(task_id) for task_id in self.work}

    def _observe(self, task_id: str) -> Observation:
        work = self.work[task_id]
        return Observation(
            task_id,
            work.state,
            endpoint=work.endpoint,
            exit_code=work.exit_code,
            reason=work.reason,
            memory_kills=work.memory_kills,
            killed_process="python3" if work.memory_kills else "",
            backend_state={"work": task_id},
        )

    async def end(self, task: TaskRef, grace_seconds: int, log_lines: int, keep=None) -> bytes:
        work = self.work.get(task.task_id)
        if work is None:
            return b""
        if log_lines and keep is not None:
            await keep(work.output)
        del self.work[task.task_id]
        work.ends += 1
        self.ended.append(task.task_id)
        return work.output if log_lines else b""

    async def logs(self, task: TaskRef, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]:
        work = self.work.get(task.task_id)
        yield work.output if work else b""

    # -- what a test does to the work, as the outside world would --------------------------------

    def place(self, task_id: str) -> None:
        """The batch scheduler starts queued work."""
        self.work[task_id].state = Seen.RUNNING
        self.work[task_id].endpoint = self.interface

    def finish(self, task_id: str, exit_code: int, memory_kills: int = 0) -> None:
        work = self.work[task_id]
        work.state, work.exit_code, work.memory_kills = Seen.ENDED, exit_code, memory_kills


class _FakeEngine:
    name = "fake"


class Interface:
    """A real HTTP interface on loopback that answers every request (or, silent, never does)."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.server: asyncio.Server | None = None
        self.connections: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[:2]

    async def __aexit__(self, *exc) -> None:
        for writer in self.connections:
            writer.close()
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(writer)
        if self.silent:
            return  # accepts, never answers: like a program that has not started listening yet
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()
