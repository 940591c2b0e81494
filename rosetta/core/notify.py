"""Best-effort wake-up signals between Rosetta's processes.

The database is the source of truth and every listener also polls it, so a lost signal
only costs latency. A signal is one datagram on a unix socket in the run directory:
the writer (web/API or controller) says "something changed", the listener (controller or
gateway) re-reads the database at once instead of at its next poll.
"""

import asyncio
import contextlib
import socket
from pathlib import Path

from rosetta.core.paths import run_dir

CONTROLLER = "controller"
GATEWAY = "gateway"


def socket_path(listener: str) -> Path:
    return run_dir() / f"{listener}.sock"


def notify(listener: str) -> None:
    """Wake ``listener`` if it runs; never raises (nobody listening is fine)."""
    with contextlib.suppress(OSError):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"!", str(socket_path(listener)))


class Listener:
    """Receives wake-up datagrams and sets an asyncio.Event for each."""

    def __init__(self, listener: str) -> None:
        self.path = socket_path(listener)
        self.woken = asyncio.Event()
        self._sock: socket.socket | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._drain)

    def _drain(self) -> None:
        assert self._sock is not None
        with contextlib.suppress(BlockingIOError):
            while self._sock.recv(64):
                pass
        self.woken.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake-up or ``timeout`` seconds; True if woken."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.woken.wait(), timeout)
        woken = self.woken.is_set()
        self.woken.clear()
        return woken

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
