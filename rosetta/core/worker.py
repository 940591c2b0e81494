"""The loop of a queue worker (the builder, the registry's pusher): one pass at a time, at every
wake-up (rosetta.core.notify) and otherwise every ``poll`` seconds.

A pass is level-triggered: it reads what is to do from the database and does it, so a lost
wake-up only costs latency, and a pass that fails is logged and tried again at the next one.
SIGTERM ends the loop as SystemExit, through the caller's ``with`` blocks (what it started stops).
"""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import socket
import time
from collections.abc import Callable, Iterable

from django.db import close_old_connections

from rosetta.core.notify import MAX_TOPIC, RECONNECT_DELAYS, channel, shared_database, socket_path

BURST = 0.02  # seconds to let a burst of wake-ups (several entries added at once) arrive, served by one pass


def run_worker(
    name: str, listener: str, one_pass: Callable[[], Iterable[str]], poll: float, log: logging.Logger
) -> None:
    """Run ``one_pass`` now, then at every wake-up of ``listener`` and every ``poll`` seconds,
    logging the lines it returns (what it did) as ``name``; returns only by SIGTERM or an interrupt."""
    signal.signal(signal.SIGTERM, _exit)
    connect = (lambda: _database_connection(listener)) if shared_database() else None
    with Wakeups(listener, connect, log) as wakeups:
        log.info("The %s is running.", name)
        while True:
            run_pass(name, one_pass, log)
            wakeups.wait(poll)


def run_pass(name: str, one_pass: Callable[[], Iterable[str]], log: logging.Logger) -> None:
    """One pass, its lines logged; a pass that fails is logged, not raised (the next one tries again)."""
    close_old_connections()  # a connection the database dropped since the last pass is made again
    try:
        for line in one_pass():
            log.info("%s", line)
    except Exception:
        log.exception("The %s failed a pass; it tries again.", name)


class Wakeups:
    """What wakes a worker: datagrams on its socket (this machine) and, with ``connect`` (on
    PostgreSQL), the notifications of its channel from every machine, on a connection of its own
    made again whenever it drops (and then a wake-up at once: signals sent meanwhile were lost)."""

    def __init__(self, listener: str, connect: Callable | None = None, log: logging.Logger | None = None) -> None:
        self.listener = listener
        self.connect = connect  # a new autocommit psycopg connection, or None: datagrams only
        self.log = log or logging.getLogger(__name__)
        self.sock: socket.socket | None = None
        self.database = None
        self.failures = 0
        self.retry_at = 0.0

    def __enter__(self) -> Wakeups:
        path = socket_path(self.listener)
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        if self.connect is not None:
            self._listen()
        return self

    def __exit__(self, *exc) -> None:
        self._close_database()
        if self.sock is not None:
            self.sock.close()

    def wait(self, timeout: float) -> None:
        """Until a wake-up or ``timeout``; then take every wake-up already there (one pass serves them all)."""
        assert self.sock is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._listening_again():
                return  # what was signalled while it was not listening is lost: a pass now
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.connect is not None and self.database is None:
                left = min(left, max(0.0, self.retry_at - time.monotonic()))  # then listen again
            watched = [self.sock] + ([self.database.fileno()] if self.database is not None else [])
            readable, _, _ = select.select(watched, [], [], left)
            if readable:
                time.sleep(BURST)
                self._drain_datagrams()
                self._drain_notifications()
                return

    def _listening_again(self) -> bool:
        """Whether a lost database connection is made again now (it was due, and it worked)."""
        lost = self.connect is not None and self.database is None
        return lost and time.monotonic() >= self.retry_at and self._listen()

    def _listen(self) -> bool:
        import psycopg

        try:
            self.database = self.connect()
            self.database.execute(f'LISTEN "{channel(self.listener)}"')
        except (psycopg.Error, OSError) as error:
            self._lost(error)
            return False
        self.failures = 0
        return True

    def _drain_datagrams(self) -> None:
        assert self.sock is not None
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(MAX_TOPIC)
        self.sock.setblocking(True)

    def _drain_notifications(self) -> None:
        import psycopg

        if self.database is None:
            return
        try:
            for _ in self.database.notifies(timeout=0):
                pass
        except (psycopg.Error, OSError) as error:
            self._lost(error)

    def _lost(self, error: Exception) -> None:
        self._close_database()
        delay = RECONNECT_DELAYS[min(self.failures, len(RECONNECT_DELAYS) - 1)]
        self.failures += 1
        self.retry_at = time.monotonic() + delay
        self.log.warning("%s: not listening to the database (%s); again in %g s", self.listener, error, delay)

    def _close_database(self) -> None:
        if self.database is not None:
            with contextlib.suppress(Exception):
                self.database.close()
            self.database = None


def _database_connection(listener: str):
    import psycopg

    from rosetta.core.database import connect_kwargs

    return psycopg.connect(
        **connect_kwargs(), autocommit=True, application_name=f"rosetta-{listener}", connect_timeout=5
    )


def _exit(signum, frame) -> None:
    raise SystemExit(0)
