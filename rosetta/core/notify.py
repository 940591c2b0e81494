"""Best-effort wake-up signals between Rosetta's processes.

The database is the source of truth and every listener also polls it, so a lost signal
only costs latency. The writer (web/API or controller) says "something changed" — optionally
about what, a topic such as a resource id — and the listener (controller or gateway) re-reads
the database at once instead of at its next poll.

On SQLite (one machine) a signal is one datagram on a unix socket in the run directory. On
PostgreSQL, where the platform's processes may run on several machines, it is a NOTIFY on the
listener's channel, which reaches every machine's listener: sent inside the writer's
transaction, PostgreSQL delivers it when that commits and never for a rollback. Listeners take
datagrams either way (a gateway relays to its workers that way).
"""

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from rosetta.core.paths import run_dir

log = logging.getLogger(__name__)

CONTROLLER = "controller"
GATEWAY = "gateway"
ANY = "*"  # the topic of a signal that names nothing in particular
ACCESS = "access"  # access taken away (log out, deactivation, revoked token): the gateway waits to know it
MAX_TOPIC = 64
RECONNECT_DELAYS = (0.2, 0.5, 1, 2, 5)  # seconds before listening again on a lost database connection


def socket_path(listener: str) -> Path:
    return run_dir() / f"{listener}.sock"


def channel(listener: str) -> str:
    return f"rosetta_{listener}"


def shared_database() -> bool:
    """Whether the processes to wake may be on other machines (the database is PostgreSQL)."""
    try:
        from django.conf import settings

        return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    except Exception:  # no Django settings here (a bare gateway in tests): this machine only
        return False


def notify(listener: str, topic: str = ANY) -> None:
    """Wake ``listener`` (on every machine, on PostgreSQL) if it runs; never raises."""
    if shared_database():
        _notify_database(listener, topic)
    else:
        wake_local(listener, topic)


def wake_local(listener: str, topic: str = ANY) -> None:
    """Wake ``listener`` on this machine by its socket; never raises (nobody listening is fine)."""
    with contextlib.suppress(OSError):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(topic.encode()[:MAX_TOPIC], str(socket_path(listener)))


def after_commit(listener: str, topic: str = ANY) -> None:
    """Wake ``listener`` once the current transaction commits (at once outside one), so it
    never re-reads the database before the change is there, nor for a change rolled back."""
    if shared_database():
        _notify_database(listener, topic)  # PostgreSQL holds it back until the commit
        return
    from django.db import transaction

    transaction.on_commit(lambda: wake_local(listener, topic))


def _notify_database(listener: str, topic: str) -> None:
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [channel(listener), topic[:MAX_TOPIC]])
    except DatabaseError:
        log.warning("cannot signal %s through the database; it sees the change at its next poll", listener)


class Listener:
    """Receives wake-ups and collects their topics: datagrams on its socket, and on PostgreSQL
    (``shared``, the default there) the notifications of its channel from every machine."""

    def __init__(
        self, listener: str, on_wake: Callable[[set[str]], None] | None = None, shared: bool | None = None
    ) -> None:
        self.name = listener
        self.path = socket_path(listener)
        self.on_wake = on_wake  # called at once with the topics of each batch of signals
        self.shared = shared_database() if shared is None else shared
        self.woken = asyncio.Event()
        self.topics: set[str] = set()
        self._sock: socket.socket | None = None
        self._listening: asyncio.Task | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._drain)
        if self.shared:
            self._listening = asyncio.get_running_loop().create_task(self._listen_to_database())

    def _drain(self) -> None:
        assert self._sock is not None
        received = set()
        with contextlib.suppress(BlockingIOError):
            while True:
                received.add(self._sock.recv(MAX_TOPIC).decode(errors="replace") or ANY)
        self._received(received)

    def _received(self, topics: set[str]) -> None:
        self.topics |= topics
        if self.on_wake is not None:
            self.on_wake(topics)
        self.woken.set()

    async def _listen_to_database(self) -> None:
        """LISTEN on a connection of its own, made again whenever it drops; after each (re)connect
        the listener is woken for everything (signals sent meanwhile were lost)."""
        import psycopg

        from rosetta.core.database import connect_kwargs

        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    **connect_kwargs(), autocommit=True, application_name=f"rosetta-{self.name}", connect_timeout=5
                ) as connection:
                    await connection.execute(f'LISTEN "{channel(self.name)}"')
                    if failures:
                        self._received({ANY, ACCESS})
                    failures = 0
                    async for message in connection.notifies():
                        self._received({message.payload or ANY})
            except (psycopg.Error, OSError) as error:
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                log.warning("%s: not listening to the database (%s); again in %g s", self.name, error, delay)
                await asyncio.sleep(delay)

    async def wait(self, timeout: float) -> set[str]:
        """Wait for wake-ups or ``timeout`` seconds; the topics received (empty: none)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.woken.wait(), timeout)
        topics, self.topics = self.topics, set()
        self.woken.clear()
        return topics

    def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            self._listening = None
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
