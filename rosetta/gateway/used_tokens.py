"""Which one-time access tokens were redeemed already, for every gateway process alike.

A token is good once: whichever gateway worker redeems it first wins, and a restarted gateway
still knows it was used. The record is written only on ``/.rosetta/login`` (never on the hot
path) and kept only until the tokens expire: a small SQLite file in the run directory where the
platform runs on one machine, a table of the database (PostgreSQL) where gateways on several
machines must all know it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)


class UsedTokens:
    """Claims token nonces in a SQLite file shared by the processes that open it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def claim(self, nonce: str, expires: int) -> bool:
        """True for the first claim of ``nonce``; False when it was claimed before, or when the
        record cannot be written (a token that cannot be recorded is refused, not let through)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._claim, nonce, expires)
        except sqlite3.Error:
            log.exception("gateway: cannot record a used access token in %s", self.path)
            return False

    def _claim(self, nonce: str, expires: int) -> bool:
        # A connection per claim: logins are rare, and nothing is shared across forked workers.
        with contextlib.closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as database:
            database.execute("CREATE TABLE IF NOT EXISTS used_token (nonce TEXT PRIMARY KEY, expires INTEGER)")
            database.execute("DELETE FROM used_token WHERE expires <= ?", (int(time.time()),))
            try:
                database.execute("INSERT INTO used_token (nonce, expires) VALUES (?, ?)", (nonce, expires))
            except sqlite3.IntegrityError:
                return False
            return True


class DatabaseUsedTokens:
    """Claims token nonces in the platform's database (rosetta.gateway.models.UsedToken), shared by
    the gateways of every machine."""

    async def claim(self, nonce: str, expires: int) -> bool:
        """As UsedTokens.claim: a token that cannot be recorded is refused."""
        from django.db import DatabaseError

        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._claim, nonce, expires)
        except DatabaseError:
            log.exception("gateway: cannot record a used access token in the database")
            return False

    @staticmethod
    def _claim(nonce: str, expires: int) -> bool:
        from django.db import IntegrityError, transaction

        from rosetta.core.database import drop_broken_connections
        from rosetta.gateway.models import UsedToken

        drop_broken_connections()
        UsedToken.objects.filter(expires__lte=int(time.time())).delete()
        try:
            with transaction.atomic():
                UsedToken.objects.create(nonce=nonce, expires=expires)
        except IntegrityError:
            return False
        return True


class ProcessUsedTokens:
    """The same in this process's memory: for a single gateway process that need not survive a
    restart (tests, benchmarks)."""

    def __init__(self) -> None:
        self._expiry: dict[str, int] = {}

    async def claim(self, nonce: str, expires: int) -> bool:
        now = time.time()
        for used in [used for used, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[used]
        if nonce in self._expiry:
            return False
        self._expiry[nonce] = expires
        return True
