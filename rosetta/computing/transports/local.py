"""Runs commands on this machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from rosetta.computing.errors import ComputingError
from rosetta.computing.transports.base import CommandResult, Transport


async def _spawn(argv: Sequence[str], stderr: int) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )
    except OSError as error:
        raise ComputingError(f"Cannot run {argv[0]}: {error.strerror}") from error


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()


class LocalTransport(Transport):
    async def run(self, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
        process = await _spawn(argv, stderr=asyncio.subprocess.PIPE)
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError as error:
            await _end(process)
            raise ComputingError(f"{argv[0]} did not answer within {timeout:g} s") from error
        return CommandResult(tuple(argv), process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    async def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        process = await _spawn(argv, stderr=asyncio.subprocess.STDOUT)
        try:
            assert process.stdout is not None
            while chunk := await process.stdout.read(65536):
                yield chunk
        finally:
            await _end(process)

    def reach(self, host: str, port: int) -> tuple[str, int]:
        return host, port
