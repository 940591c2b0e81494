"""Cursors of long lists: they name the row a page ended at, and nothing else gets through."""

import base64
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from rosetta.core.keyset import MAX_CURSOR_LENGTH, BadCursor, cursor_after, position


def encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_a_cursor_names_the_row_a_page_ended_at():
    created = datetime(2026, 12, 6, 20, 7, 19, 123456, tzinfo=UTC)
    cursor = cursor_after(SimpleNamespace(created=created, pk="tabc123xyz"))
    assert position(cursor) == (created, "tabc123xyz")
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), "safe in a URL as is"
    whole_second = datetime(2026, 12, 6, 20, 7, 19, tzinfo=UTC)
    assert position(cursor_after(SimpleNamespace(created=whole_second, pk="t1"))) == (whole_second, "t1")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "%%%",
        "not base64!",
        encoded("1|2026-12-06T20:07:19+00:00"),  # no id
        encoded("1|2026-12-06T20:07:19|t1"),  # no time zone
        encoded("2|2026-12-06T20:07:19+00:00|t1"),  # a version this platform does not give
        encoded("1|yesterday|t1"),
        encoded("1|2026-12-06T20:07:19+00:00|' OR 1=1 --"),
        encoded("1|2026-12-06T20:07:19+00:00|t1|more"),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
        "A" * (MAX_CURSOR_LENGTH + 1),
    ],
)
def test_anything_else_is_refused_in_plain_words(cursor):
    with pytest.raises(BadCursor, match="not a cursor this list gave out"):
        position(cursor)
