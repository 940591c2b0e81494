"""When the platform's own disk (ROSETTA_HOME: the SQLite database, keys, logs) is full.

Reading must go on: nothing a read does needs the disk, and what it would like to record by the
way (when an API token was last used) is skipped. A write that cannot be recorded is answered
507 Insufficient Storage with the reason, not a 500; the health endpoint says so too.
"""

from __future__ import annotations

import errno
import logging
import os

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

from rosetta.core.paths import home

log = logging.getLogger(__name__)

STATUS = 507  # Insufficient Storage
SAID = (
    "The platform's disk is full: Rosetta cannot record this change until an operator frees space "
    "on it. Everything can still be read meanwhile."
)
NEARLY_FULL = 16 * 1024 * 1024  # free bytes below which the health endpoint reports the disk full
_DATABASE_WORDS = ("database or disk is full", "no space left on device", "disk quota exceeded")
_POSTGRESQL_DISK_FULL = "53100"  # SQLSTATE disk_full


def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) is the platform's disk or database being out of space."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(error, DatabaseError) and any(words in str(error).lower() for words in _DATABASE_WORDS):
            return True
        if getattr(error, "sqlstate", None) == _POSTGRESQL_DISK_FULL or getattr(error, "pgcode", None) == "53100":
            return True
        error = error.__cause__ or error.__context__
    return False


def free_bytes() -> int:
    found = os.statvfs(home())
    return found.f_bavail * found.f_frsize


def answer(request: HttpRequest) -> HttpResponse:
    log.warning("%s %s refused: the platform's disk is full", request.method, request.path)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": SAID}, status=STATUS)
    return HttpResponse(SAID, status=STATUS, content_type="text/plain; charset=utf-8")


class DiskFullMiddleware:
    """Pages (the API has its own handler) whose view met a full disk answer 507, saying so."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return answer(request) if is_disk_full(exception) else None
