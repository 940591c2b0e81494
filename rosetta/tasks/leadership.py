"""One active controller worker per backend, however many machines run a controller.

On PostgreSQL, a session-level advisory lock per backend, held on one connection of the
controller's own (not the ORM's, which is dropped and re-made after errors). The server
releases it the moment that connection ends: the process killed (``kill -9`` included) at
once, its machine gone or cut off within seconds (TCP keepalives). A standby tries again
every ``STANDBY_RETRY`` seconds, so the work moves within about a second. The holder confirms
its connection before each pass (at most every ``CONFIRM_EVERY`` s) and acts on nothing once it
cannot: the server has let go, or is about to.

Why not a lease table: a lease is a write per backend every second or so from every holder,
a dead holder's work waits for its lease to run out (length + a retry), and the machines'
clocks come into it; a lock dies with its holder and costs nothing while held.

On SQLite (one machine: the database is a file), an ``flock`` per backend on a file in the run
directory does the same: the kernel releases it when the process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

STANDBY_RETRY = 0.5  # seconds between a standby's tries to take a backend over
CONFIRM_EVERY = 0.5  # seconds a confirmed lock connection is trusted without asking again
CONFIRM_TIMEOUT = 2.0  # a lock connection not answering by then is given up (its locks with it)
CONNECT_TIMEOUT = 3  # seconds
# The server notices a holder's machine gone within idle + interval × count seconds.
SERVER_KEEPALIVES = "-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=2"


def lock_key(backend_key: tuple) -> int:
    """A backend's lock number: the same on every machine for the same machinery (a signed 64-bit
    integer, as PostgreSQL's advisory locks take)."""
    digest = hashlib.blake2b(repr(backend_key).encode(), digest_size=8, person=b"rosetta-lead").digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLeadership:
    """Advisory locks on a connection of their own."""

    def __init__(self, connect_kwargs: dict, holder: str) -> None:
        self.connect_kwargs = connect_kwargs
        self.holder = holder  # shown as application_name in pg_stat_activity: who holds what
        self.held: set[int] = set()
        self._connection = None
        self._confirmed_at = 0.0
        self._serial = asyncio.Lock()  # one query at a time on the connection

    async def hold(self, key: int) -> bool:
        """Whether this process is (now) the active one for ``key``; never raises."""
        import psycopg

        async with self._serial:
            try:
                await self._connected_and_confirmed()
                if key not in self.held:
                    cursor = await self._connection.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                    if (await cursor.fetchone())[0]:
                        self.held.add(key)
                return key in self.held
            except (psycopg.Error, OSError, TimeoutError) as error:
                log.warning("controller: lost the lock connection to the database (%s): standing by", error)
                await self._drop()
                return False

    async def release(self, key: int) -> None:
        import psycopg

        async with self._serial:
            if key in self.held and self._connection is not None:
                self.held.discard(key)
                with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
                    await asyncio.wait_for(
                        self._connection.execute("SELECT pg_advisory_unlock(%s)", (key,)), CONFIRM_TIMEOUT
                    )

    async def close(self) -> None:
        async with self._serial:
            await self._drop()

    async def _connected_and_confirmed(self) -> None:
        import psycopg

        if self._connection is None:
            self._connection = await psycopg.AsyncConnection.connect(
                **self.connect_kwargs,
                autocommit=True,
                application_name=self.holder[:63],
                connect_timeout=CONNECT_TIMEOUT,
                keepalives=1,
                keepalives_idle=2,
                keepalives_interval=1,
                keepalives_count=2,
                options=SERVER_KEEPALIVES,
            )
            self.held.clear()
        elif time.monotonic() - self._confirmed_at > CONFIRM_EVERY:
            await asyncio.wait_for(self._connection.execute("SELECT 1"), CONFIRM_TIMEOUT)
        self._confirmed_at = time.monotonic()

    async def _drop(self) -> None:
        self.held.clear()
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CONFIRM_TIMEOUT)


class FileLeadership:
    """flock per backend, for the processes of one machine. The process is the holder (as a
    connection is on PostgreSQL): what one controller of the process holds, every one does."""

    _files: dict[Path, int] = {}  # lock file -> its open descriptor, for the whole process

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def held(self) -> set[int]:
        return {key for key in map(self._key, self._files) if key is not None}

    def _path(self, key: int) -> Path:
        return self.directory / f"{key & 0xFFFFFFFFFFFFFFFF:016x}.lock"

    def _key(self, path: Path) -> int | None:
        if path.parent != self.directory:
            return None
        return int.from_bytes(int(path.stem, 16).to_bytes(8, "big"), "big", signed=True)

    async def hold(self, key: int) -> bool:
        path = self._path(key)
        if path in self._files:
            return True
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._files[path] = fd
        return True

    async def release(self, key: int) -> None:
        fd = self._files.pop(self._path(key), None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases its lock

    async def close(self) -> None:
        for key in self.held:
            await self.release(key)


def leadership_for_this_database(holder: str) -> PostgresLeadership | FileLeadership:
    """Advisory locks where machines share PostgreSQL; file locks beside a SQLite database."""
    from django.db import connection

    from rosetta.core.database import connect_kwargs
    from rosetta.core.paths import run_dir

    if connection.vendor == "postgresql":
        return PostgresLeadership(connect_kwargs(), holder)
    return FileLeadership(run_dir() / "leadership")
