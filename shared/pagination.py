"""Cursor (keyset) pagination.

A cursor names the last row a client saw, by a strictly increasing key, so pages stay
stable while rows are inserted: no row is seen twice and none that existed is skipped
(unlike OFFSET). Cursors are opaque to clients: base64url of a small JSON document
tagged with the listing it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from shared.errors import INVALID_CURSOR, ProblemError

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


def encode_cursor(listing: str, after: int | Sequence[int]) -> str:
    raw = json.dumps({"l": listing, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(listing: str, cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data: Any = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise ProblemError(INVALID_CURSOR) from exc
    if not isinstance(data, dict) or data.get("l") != listing:
        raise ProblemError(INVALID_CURSOR)
    return data.get("a")


def _is_key(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def decode_cursor(listing: str, cursor: str) -> int:
    """The key after which the page starts; refuses cursors of another listing."""
    after = _decode(listing, cursor)
    if not _is_key(after):
        raise ProblemError(INVALID_CURSOR)
    return int(after)


def decode_cursor_keys(listing: str, cursor: str, length: int) -> tuple[int, ...]:
    """A composite key (e.g. priority, sequence) after which the page starts."""
    after = _decode(listing, cursor)
    if not isinstance(after, list) or len(after) != length or not all(_is_key(key) for key in after):
        raise ProblemError(INVALID_CURSOR)
    return tuple(int(key) for key in after)


class PageParams(BaseModel):
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT


async def page_params(
    cursor: Annotated[str | None, Query(max_length=512, description="From `next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")] = DEFAULT_LIMIT,
) -> PageParams:
    return PageParams(cursor=cursor, limit=limit)


def make_page(listing: str, rows: list[T], limit: int, key_of: Any) -> Page[T]:
    """`rows` was fetched with `limit + 1`: the extra row only says whether there is more."""
    has_more = len(rows) > limit
    items = rows[:limit]
    next_cursor = encode_cursor(listing, key_of(items[-1])) if has_more and items else None
    return Page[T](items=items, next_cursor=next_cursor)
