"""How commands and files reach a computing resource.

A transport runs argv lists; it never receives a shell string. The SSH transport quotes an
argv once, with shlex, at its boundary. Besides commands it reads and writes files (job
scripts, connection files) and tells the side that connects — the gateway, the probe — where
on this machine to connect to reach an address as the resource sees it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from rosetta.computing.contract import Address


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error_text(self) -> str:
        """What the command said about its failure, for a human: its error line if it
        printed one (podman prints retries and warnings first), else the end of its output."""
        text = self.stderr.strip() or self.stdout.strip()
        errors = [line for line in text.splitlines() if line.startswith("Error")]
        return (errors[-1] if errors else text or f"exit status {self.returncode}")[-2000:]


@dataclass(frozen=True)
class MemoryKills:
    """Processes killed by a container's memory limit, as this machine's kernel reported them."""

    count: int
    last_process: str


def command_name(argv: Sequence[str]) -> str:
    """``podman ps`` for ``env CONTAINERS_CONF=... podman ps --all``: what a person calls it."""
    words = [word for word in argv if not (word == "env" or ("=" in word and not word.startswith("-")))]
    program = words[0].rsplit("/", 1)[-1] if words else "?"
    sub = next((word for word in words[1:2] if word.isalpha()), "")  # a subcommand, not an argument
    return f"{program} {sub}".strip()


class Transport(ABC):
    direct = False  # True when ``reach`` returns its arguments: connect to them as they are
    work_dir: str  # where the platform keeps its files on the resource (private to its account)

    @abstractmethod
    async def run(self, argv: Sequence[str], *, timeout: float = 60.0, stdin: bytes | None = None) -> CommandResult:
        """Run ``argv`` to completion. Not answering within ``timeout`` raises Unreachable."""

    @abstractmethod
    def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        """Run ``argv`` and yield its output (stdout and stderr merged) as it comes."""

    @abstractmethod
    async def read_file(self, path: str) -> bytes | None:
        """The file's content, or None if it does not exist."""

    async def read_file_tail(self, path: str, size: int) -> bytes | None:
        """The file's last ``size`` bytes (all of it when shorter), or None if it does not exist."""
        data = await self.read_file(path)
        return None if data is None else data[-size:]

    @abstractmethod
    async def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write atomically: readers see the old content or the new, never a part."""

    @abstractmethod
    async def remove_file(self, path: str) -> None:
        """Remove a file; a missing one is fine."""

    @abstractmethod
    async def reach(self, host: str, port: int) -> Address:
        """Where on this machine to connect to reach ``host:port`` as the resource sees it."""

    async def memory_kills(self) -> dict[str, MemoryKills] | None:
        """Memory-limit kills by container id since the machine booted, or None when this
        transport cannot tell."""
        return None

    async def close(self) -> None:  # noqa: B027 -- nothing to close unless a transport holds connections
        """End connections; the transport may be used again later (it reconnects)."""
