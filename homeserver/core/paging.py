"""The admin APIs' paged listings, in Synapse's shape: ``from`` and ``limit`` in; the
page, the ``total`` and a ``next_token`` (where the next page starts) out, the token
absent on the last page. Offset listings count rows; cursor listings (rows that only
grow, like client event reports) continue after the last id seen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from homeserver.core.errors import MatrixError

MAX_LIMIT = 1000  # one page never holds more, whatever a client asks


@attrs.frozen
class PageQuery:
    """The query parameters every paged listing takes (``from`` is ``from_`` here)."""

    from_: int = 0
    limit: int = 100


def check_page(start: int, limit: int) -> int:
    """Refuse negative values; the limit, capped at MAX_LIMIT."""
    if start < 0 or limit < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "from and limit must not be negative")
    return min(limit, MAX_LIMIT)


def offset_page(
    key: str, rows: Sequence[Any], *, offset: int, total: int, token: Callable[[int], Any] = int,
) -> dict[str, Any]:
    """``{key: rows, "total": total, "next_token": offset of the next page}``; Synapse gives
    the users listing's token as a string, the others as numbers (``token``)."""
    out: dict[str, Any] = {key: list(rows), "total": total}
    if offset + len(rows) < total:
        out["next_token"] = token(offset + len(rows))
    return out


def cursor_page(key: str, rows: Sequence[dict[str, Any]], *, limit: int, cursor: str = "id") -> dict[str, Any]:
    """``{key: rows, "next_token": the last row's cursor}`` when the page is full."""
    out: dict[str, Any] = {key: list(rows)}
    if rows and len(rows) == limit:
        out["next_token"] = rows[-1][cursor]
    return out
