"""Spaces: GET /_matrix/client/v1/rooms/{roomId}/hierarchy (spec v1.2+)."""

from __future__ import annotations

import attrs
from aiohttp import web

from client_api.http import parse_query, requester, services
from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()
V1 = "/v1"


@attrs.frozen
class HierarchyQuery:
    suggested_only: bool = False
    limit: int | None = None
    max_depth: int | None = None
    from_: str | None = None


@routes.get(V1 + "/rooms/{room_id}/hierarchy")
async def hierarchy(request: web.Request) -> web.Response:
    """GET /v1/rooms/{roomId}/hierarchy?suggested_only&limit&max_depth&from"""
    req = await requester(request)
    room_id = request.match_info["room_id"]
    if not ids.is_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    query = parse_query(request, HierarchyQuery)
    return ok(await services(request).spaces.hierarchy(
        req, room_id, suggested_only=query.suggested_only, max_depth=query.max_depth,
        limit=query.limit, from_=query.from_,
    ))
