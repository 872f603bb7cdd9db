"""Asking another server for a space's children (server-server API, GET /hierarchy).

Implements ``homeserver.services.spaces.RemoteHierarchyPort``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from federation.outbound.client import FederationClient


class FederationHierarchy:
    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def hierarchy(self, server: str, room_id: str, suggested_only: bool) -> Any:
        path = f"/_matrix/federation/v1/hierarchy/{urllib.parse.quote(room_id, safe='')}"
        return await self._client.request(
            "GET", server, path, query={"suggested_only": "true" if suggested_only else "false"},
        )
