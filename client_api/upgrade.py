"""POST /rooms/{roomId}/upgrade (spec: "Room Upgrades")."""

from __future__ import annotations

import attrs
from aiohttp import web

from client_api.http import cs, parse_body, requester, services
from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class UpgradeBody:
    new_version: str


@routes.post(cs("/rooms/{room_id}/upgrade"))
async def upgrade(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/upgrade {new_version} -> {replacement_room}"""
    req = await requester(request)
    room_id = request.match_info["room_id"]
    if not ids.is_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    body = await parse_body(request, UpgradeBody)
    return ok({"replacement_room": await services(request).upgrades.upgrade(req, room_id, body.new_version)})
