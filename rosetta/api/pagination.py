"""Lists answered a page at a time (django-ninja's ``@paginate`` with a keyset cursor).

An answer is ``{"items": [...], "next": URL | null, "next_cursor": CURSOR | null}``: ``next`` is
the request again with ``cursor`` set (a path, relative to the platform's address), null on the
last page. The cursor names the last row listed (rosetta.core.keyset), so rows created while a
client walks the pages never make it see a row twice or miss one.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Schema
from ninja.errors import ValidationError
from ninja.pagination import PaginationBase

from rosetta.core.keyset import MAX_CURSOR_LENGTH, BadCursor, page_of

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class KeysetPagination(PaginationBase):
    class Input(Schema):
        limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"At most this many (1 to {MAX_LIMIT}).")
        cursor: str | None = Field(
            None,
            max_length=MAX_CURSOR_LENGTH,
            description="Where to go on: the `next_cursor` of the previous page (omit for the first page).",
        )

    class Output(Schema):
        items: list[Any]
        next: str | None = Field(
            ..., description="The next page: this request with `cursor` set (a path on the platform); null: no more."
        )
        next_cursor: str | None = Field(..., description="The `cursor` of the next page; null: this is the last page.")

    def paginate_queryset(self, queryset, pagination: Input, request: HttpRequest, **params: Any) -> dict:
        try:
            page = page_of(queryset, pagination.limit, pagination.cursor)
        except BadCursor as error:
            raise ValidationError([{"loc": ("query", "cursor"), "msg": str(error), "type": "value_error"}]) from None
        return {"items": page.items, "next": _next_url(request, page.next_cursor), "next_cursor": page.next_cursor}


def _next_url(request: HttpRequest, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    query = request.GET.copy()
    query["cursor"] = cursor
    return f"{request.path}?{query.urlencode()}"
