"""Best-effort wake-up signals between Rosetta's processes.

The database is the source of truth and every listener also polls it, so a lost signal
only costs latency. A signal is one datagram on a unix socket in the run directory:
the writer (web/API or controller) says "something changed" — optionally about what, a
topic such as a resource id — and the listener (controller or gateway) re-reads the
database at once instead of at its next poll.
"""

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path

from rosetta.core.paths import run_dir

CONTROLLER = "controller"
GATEWAY = "gateway"
ANY = "*"  # the topic of a signal that names nothing in particular
ACCESS = "access"  # access taken away (log out, deactivation, revoked token): the gateway waits to know it
MAX_TOPIC = 64


def socket_path(listener: str) -> Path:
    return run_dir() / f"{listener}.sock"


def notify(listener: str, topic: str = ANY) -> None:
    """Wake ``listener`` if it runs; never raises (nobody listening is fine)."""
    with contextlib.suppress(OSError):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(topic.encode()[:MAX_TOPIC], str(socket_path(listener)))


def after_commit(listener: str, topic: str = ANY) -> None:
    """Wake ``listener`` once the current transaction commits (at once outside one), so it
    never re-reads the database before the change is there, nor for a change rolled back."""
    from django.db import transaction

    transaction.on_commit(lambda: notify(listener, topic))


class Listener:
    """Receives wake-up datagrams and collects their topics."""

    def __init__(self, listener: str, on_wake: Callable[[set[str]], None] | None = None) -> None:
        self.path = socket_path(listener)
        self.on_wake = on_wake  # called at once with the topics of each batch of signals
        self.woken = asyncio.Event()
        self.topics: set[str] = set()
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
        received = set()
        with contextlib.suppress(BlockingIOError):
            while True:
                received.add(self._sock.recv(MAX_TOPIC).decode(errors="replace") or ANY)
        self.topics |= received
        if self.on_wake is not None:
            self.on_wake(received)
        self.woken.set()

    async def wait(self, timeout: float) -> set[str]:
        """Wait for wake-ups or ``timeout`` seconds; the topics received (empty: none)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.woken.wait(), timeout)
        topics, self.topics = self.topics, set()
        self.woken.clear()
        return topics

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
