"""Runs commands on this machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from rosetta.computing.errors import ComputingError
from rosetta.computing.transports.base import CommandResult, Transport


class LocalTransport(Transport):
    async def run(self, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            raise ComputingError(f"Cannot run {argv[0]}: {error.strerror}") from error
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError as error:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise ComputingError(f"{argv[0]} did not answer within {timeout:g} s") from error
        return CommandResult(tuple(argv), process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    async def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as error:
            raise ComputingError(f"Cannot run {argv[0]}: {error.strerror}") from error
        try:
            assert process.stdout is not None
            while chunk := await process.stdout.read(65536):
                yield chunk
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()

    def reach(self, host: str, port: int) -> tuple[str, int]:
        return host, port
