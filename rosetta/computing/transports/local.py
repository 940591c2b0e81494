"""Runs commands and reaches files and ports on this machine."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from rosetta.computing.contract import Address
from rosetta.computing.errors import Unreachable
from rosetta.computing.kinds import Kind
from rosetta.computing.transports.base import CommandResult, MemoryKills, Transport, command_name
from rosetta.computing.transports.kernel_log import KernelMemoryKills
from rosetta.core import processes
from rosetta.core.paths import home, private_dir, run_dir

# What is left of a stream's program once its output ended: it is exiting, give it a moment.
STREAM_EXIT_GRACE = 1.0


async def _spawn(argv: Sequence[str], stderr: int, stdin: int) -> asyncio.subprocess.Process:
    # In a folder of the platform's own: what the engine's helpers leave in their working folder
    # (conmon writes a file called `oom` there when a container runs out of memory) stays there.
    where = private_dir(run_dir() / "engine")
    try:
        return await processes.spawn(argv, stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=where)
    except OSError as error:
        raise Unreachable(f"Cannot run {command_name(argv)} on this machine: {error.strerror}.") from error


class LocalTransport(Transport):
    direct = True

    def __init__(self) -> None:
        self._kernel_log = KernelMemoryKills()
        self.work_dir = str(home() / "work")

    async def run(self, argv: Sequence[str], *, timeout: float = 60.0, stdin: bytes | None = None) -> CommandResult:
        stdin_pipe = asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL
        process = await _spawn(argv, asyncio.subprocess.PIPE, stdin_pipe)
        try:
            # Cancelled, the command still runs to its end: killing `podman rm` half-way would
            # leave a container that can be neither used nor removed.
            stdout, stderr = await asyncio.wait_for(asyncio.shield(process.communicate(stdin)), timeout)
        except TimeoutError as error:
            await processes.end(process)
            raise Unreachable(f"{command_name(argv)} did not answer within {timeout:g} s on this machine.") from error
        return CommandResult(
            tuple(argv), process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
        )

    async def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        process = await _spawn(argv, asyncio.subprocess.STDOUT, asyncio.subprocess.DEVNULL)
        try:
            assert process.stdout is not None
            while chunk := await process.stdout.read(65536):
                yield chunk
        finally:
            await processes.end(process, grace=STREAM_EXIT_GRACE)

    async def read_file(self, path: str) -> bytes | None:
        try:
            return await asyncio.to_thread(Path(path).read_bytes)
        except FileNotFoundError:
            return None

    async def read_file_tail(self, path: str, size: int) -> bytes | None:
        try:
            return await asyncio.to_thread(_read_tail, Path(path), size)
        except FileNotFoundError:
            return None

    async def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        await asyncio.to_thread(_write_atomically, Path(path), data, mode)

    async def remove_file(self, path: str) -> None:
        await asyncio.to_thread(Path(path).unlink, missing_ok=True)

    async def reach(self, host: str, port: int) -> Address:
        return host, port

    async def memory_kills(self) -> dict[str, MemoryKills] | None:
        return self._kernel_log.read()


def _read_tail(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - size))
        return handle.read(size)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _local(resource, user) -> LocalTransport:
    return LocalTransport()


KIND = Kind("transport", "local", "This machine", _local, local=True)
