"""Relations, threads, event context and timestamp lookup."""

from __future__ import annotations

import json

from aiohttp import web

from client_api.http import cs, query_int, requester, services
from homeserver.core.errors import MatrixError, bad_json
from homeserver.http.responses import ok
from homeserver.services.filtering import EventFilter

routes = web.RouteTableDef()

# Spec: these live under /_matrix/client/v1 (relations, threads, timestamp_to_event).
V1 = "/v1"


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not room_id.startswith("!") or ":" not in room_id:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    return room_id


def _bool_query(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false")
    if value not in ("true", "false"):
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be true or false")
    return value == "true"


async def _relations(request: web.Request) -> web.Response:
    """GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]?dir&from&to&limit&recurse"""
    req = await requester(request)
    m = request.match_info
    return ok(await services(request).relations.relations(
        req, _room_id(request), m["event_id"], m.get("rel_type"), m.get("event_type"),
        request.query.get("dir", "b"), request.query.get("from"), request.query.get("to"),
        query_int(request, "limit", 50), _bool_query(request, "recurse"),
    ))


for _path in ("", "/{rel_type}", "/{rel_type}/{event_type}"):
    routes.get(V1 + "/rooms/{room_id}/relations/{event_id}" + _path)(_relations)


@routes.get(V1 + "/rooms/{room_id}/threads")
async def threads(request: web.Request) -> web.Response:
    """GET /v1/rooms/{roomId}/threads?include=all|participated&from&limit"""
    req = await requester(request)
    return ok(await services(request).relations.threads(
        req, _room_id(request), request.query.get("include", "all"), request.query.get("from"),
        query_int(request, "limit", 50, minimum=1),
    ))


@routes.get(cs("/rooms/{room_id}/context/{event_id}"))
async def context(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/context/{eventId}?limit&filter"""
    req = await requester(request)
    raw = request.query.get("filter")
    try:
        flt = EventFilter.parse(json.loads(raw)) if raw else EventFilter()
    except json.JSONDecodeError:
        raise bad_json("filter is not valid JSON") from None
    return ok(await services(request).timeline.context(
        req, _room_id(request), request.match_info["event_id"], query_int(request, "limit", 10), flt,
    ))


@routes.get(V1 + "/rooms/{room_id}/timestamp_to_event")
async def timestamp_to_event(request: web.Request) -> web.Response:
    """GET /v1/rooms/{roomId}/timestamp_to_event?ts&dir"""
    req = await requester(request)
    if "ts" not in request.query:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing ts")
    if "dir" not in request.query:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing dir")
    return ok(await services(request).timeline.timestamp_to_event(
        req, _room_id(request), query_int(request, "ts", 0), request.query["dir"],
    ))
