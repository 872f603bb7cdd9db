"""Stored sync filters: upload, read back, and the one a /sync request names.

Spec: "Filtering" (client-server API).
"""

from __future__ import annotations

from typing import Any

from homeserver.core.canonical_json import parse_json
from homeserver.core.errors import MatrixError, not_found
from homeserver.services.filtering import SyncFilter
from storage.stores.filters import FilterStore


class FilterService:
    def __init__(self, store: FilterStore) -> None:
        self._store = store

    async def create(self, user_id: str, body: dict[str, Any]) -> str:
        SyncFilter.parse(body)  # refuse filters we could not apply later
        return str(await self._store.add_filter(user_id, body))

    async def get(self, user_id: str, filter_id: str) -> dict[str, Any]:
        try:
            fid = int(filter_id)
        except ValueError:
            raise not_found("No such filter") from None
        body = await self._store.get_filter(user_id, fid)
        if body is None:
            raise not_found("No such filter")
        return body

    async def for_sync(self, user_id: str, raw: str | None) -> SyncFilter:
        """The filter a ``/sync?filter=`` names: none, inline JSON, or a stored filter's id."""
        if not raw:
            return SyncFilter()
        if raw.lstrip().startswith("{"):
            return SyncFilter.parse(parse_json(raw))
        try:
            fid = int(raw)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "filter must be an id or JSON") from None
        body = await self._store.get_filter(user_id, fid)
        if body is None:
            raise MatrixError(400, "M_INVALID_PARAM", "Unknown filter id")
        return SyncFilter.parse(body)
