"""End-to-end encryption keys of our users, as peers ask for them (server-server API,
"End-to-End Encryption": /user/devices, /user/keys/query, /user/keys/claim)."""

from __future__ import annotations

from typing import TypeVar

import attrs
from aiohttp import web

from federation.inbound.context import FEDERATION
from homeserver.core.errors import MatrixError
from homeserver.core.ids import is_valid_user_id, server_of
from homeserver.http.inputs import parse_body
from homeserver.http.responses import ok

routes = web.RouteTableDef()
V1 = "/v1"
V = TypeVar("V")


@attrs.frozen
class KeysQueryBody:
    device_keys: dict[str, list[str]]  # user id -> device ids (empty: all)


@attrs.frozen
class KeysClaimBody:
    one_time_keys: dict[str, dict[str, str]]  # user id -> device id -> algorithm


def _local(request: web.Request, wanted: dict[str, V]) -> dict[str, V]:
    """Only users of this server: we answer for no one else."""
    name = request.app[FEDERATION].server_name
    return {u: v for u, v in wanted.items() if is_valid_user_id(u) and server_of(u) == name}


@routes.get(V1 + "/user/devices/{user_id}")
async def user_devices(request: web.Request) -> web.Response:
    """GET /user/devices/{userId}"""
    user_id = request.match_info["user_id"]
    if not is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "userId is not a user ID")
    return ok(await request.app[FEDERATION].e2e.user_devices(user_id))


@routes.post(V1 + "/user/keys/query")
async def keys_query(request: web.Request) -> web.Response:
    """POST /user/keys/query {device_keys: {userId: [deviceId]}}"""
    wanted = _local(request, (await parse_body(request, KeysQueryBody)).device_keys)
    return ok(await request.app[FEDERATION].e2e.query_local(wanted, None))


@routes.post(V1 + "/user/keys/claim")
async def keys_claim(request: web.Request) -> web.Response:
    """POST /user/keys/claim {one_time_keys: {userId: {deviceId: algorithm}}}"""
    wanted = _local(request, (await parse_body(request, KeysClaimBody)).one_time_keys)
    return ok({"one_time_keys": await request.app[FEDERATION].e2e.claim_local(wanted)})
