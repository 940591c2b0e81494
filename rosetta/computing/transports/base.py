"""How commands reach a computing resource.

A transport runs argv lists; it never receives a shell string. The SSH transport (to come)
quotes an argv once, with shlex, at its boundary.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass


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


class Transport(ABC):
    @abstractmethod
    async def run(self, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
        """Run ``argv`` to completion. A timeout kills it and raises ComputingError."""

    @abstractmethod
    def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        """Run ``argv`` and yield its output (stdout and stderr merged) as it comes."""

    @abstractmethod
    def reach(self, host: str, port: int) -> tuple[str, int]:
        """Where the platform connects to reach ``host:port`` as seen on the resource."""
