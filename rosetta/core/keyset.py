"""Long lists a page at a time, newest first, with a cursor that stays right while rows are added.

A page ends at a row; the cursor names that row by its (created, id), and the next page is the
rows strictly older than it in that order (keyset pagination). New rows are newer than every row
already listed, so they never push a row onto a second page or hide one: a client walking the
pages sees each row once, whatever is created meanwhile. Unlike an offset, the database goes
straight to the page through the (created, id) index, however deep it is.

The cursor is opaque to clients: URL-safe base64 of a versioned text, checked when it comes back.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

NEWEST_FIRST = ("-created", "-pk")
MAX_CURSOR_LENGTH = 200
_VERSION = "1"
_ID = re.compile(r"^[a-z0-9]{1,64}$")


class BadCursor(ValueError):
    """A cursor this platform did not give out (or mangled on the way)."""

    def __init__(self) -> None:
        super().__init__("not a cursor this list gave out (copy `next_cursor` as it is, or start again without it)")


@dataclass(frozen=True)
class Page:
    items: list
    next_cursor: str | None  # None: this was the last page


def cursor_after(row) -> str:
    """The cursor of the page that follows ``row``."""
    text = f"{_VERSION}|{row.created.isoformat()}|{row.pk}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def position(cursor: str) -> tuple[datetime, str]:
    """The (created, id) a cursor names; BadCursor if it is not one of ours."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise BadCursor()
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, created, pk = text.split("|")
        when = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor() from None
    if version != _VERSION or when.tzinfo is None or not _ID.match(pk):
        raise BadCursor()
    return when, pk


def page_of(queryset: QuerySet, limit: int, cursor: str | None = None) -> Page:
    """At most ``limit`` rows of ``queryset``, newest first, after ``cursor`` (None: from the newest)."""
    if cursor:
        created, pk = position(cursor)
        queryset = queryset.filter(Q(created__lt=created) | Q(created=created, pk__lt=pk))
    rows = list(queryset.order_by(*NEWEST_FIRST)[: limit + 1])
    items = rows[:limit]
    return Page(items, cursor_after(items[-1]) if len(rows) > limit else None)
