"""End-to-end encryption keys of our users, as peers ask for them (server-server API,
"End-to-End Encryption": /user/devices, /user/keys/query, /user/keys/claim)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation.inbound.context import FEDERATION
from homeserver.core.canonical_json import parse_json
from homeserver.core.errors import bad_json
from homeserver.core.ids import server_of
from homeserver.http.responses import ok

routes = web.RouteTableDef()
V1 = "/v1"


async def _local_users_map(request: web.Request, field: str, value_type: type) -> dict[str, Any]:
    """`field` of the body, keeping only users of this server (we answer for no one else)."""
    raw = await request.read()
    body = parse_json(raw) if raw.strip() else {}
    wanted = body.get(field) if isinstance(body, dict) else None
    if not isinstance(wanted, dict) or not all(isinstance(v, value_type) for v in wanted.values()):
        raise bad_json(f"{field} must map user ids to {value_type.__name__}s")
    name = request.app[FEDERATION].server_name
    return {u: v for u, v in wanted.items() if isinstance(u, str) and server_of(u) == name}


@routes.get(V1 + "/user/devices/{user_id}")
async def user_devices(request: web.Request) -> web.Response:
    """GET /user/devices/{userId}"""
    return ok(await request.app[FEDERATION].e2e.user_devices(request.match_info["user_id"]))


@routes.post(V1 + "/user/keys/query")
async def keys_query(request: web.Request) -> web.Response:
    """POST /user/keys/query {device_keys: {userId: [deviceId]}}"""
    wanted = await _local_users_map(request, "device_keys", list)
    if not all(isinstance(d, str) for devices in wanted.values() for d in devices):
        raise bad_json("device ids must be strings")
    return ok(await request.app[FEDERATION].e2e.query_local(wanted, None))


@routes.post(V1 + "/user/keys/claim")
async def keys_claim(request: web.Request) -> web.Response:
    """POST /user/keys/claim {one_time_keys: {userId: {deviceId: algorithm}}}"""
    wanted = await _local_users_map(request, "one_time_keys", dict)
    if not all(isinstance(a, str) for devices in wanted.values() for a in devices.values()):
        raise bad_json("algorithms must be strings")
    return ok({"one_time_keys": await request.app[FEDERATION].e2e.claim_local(wanted)})
