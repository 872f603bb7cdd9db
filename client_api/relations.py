"""Relations, threads, event context and timestamp lookup."""

from __future__ import annotations

from typing import Literal

import attrs
from aiohttp import web

from client_api.http import cs, parse_query, requester, services
from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok
from homeserver.services.filtering import EventFilter

routes = web.RouteTableDef()

# Spec: these live under /_matrix/client/v1 (relations, threads, timestamp_to_event).
V1 = "/v1"


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not ids.is_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    return room_id


@attrs.frozen
class RelationsQuery:
    dir: Literal["b", "f"] = "b"
    from_: str | None = None
    to: str | None = None
    limit: int = 50
    recurse: bool = False


async def _relations(request: web.Request) -> web.Response:
    """GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]?dir&from&to&limit&recurse"""
    req = await requester(request)
    m = request.match_info
    query = parse_query(request, RelationsQuery)
    return ok(await services(request).relations.relations(
        req, _room_id(request), m["event_id"], m.get("rel_type"), m.get("event_type"),
        query.dir, query.from_, query.to, query.limit, query.recurse,
    ))


for _path in ("", "/{rel_type}", "/{rel_type}/{event_type}"):
    routes.get(V1 + "/rooms/{room_id}/relations/{event_id}" + _path)(_relations)


@attrs.frozen
class ThreadsQuery:
    include: Literal["all", "participated"] = "all"
    from_: str | None = None
    limit: int = 50


@routes.get(V1 + "/rooms/{room_id}/threads")
async def threads(request: web.Request) -> web.Response:
    """GET /v1/rooms/{roomId}/threads?include=all|participated&from&limit"""
    req = await requester(request)
    query = parse_query(request, ThreadsQuery)
    return ok(await services(request).relations.threads(
        req, _room_id(request), query.include, query.from_, query.limit,
    ))


@attrs.frozen
class ContextQuery:
    limit: int = 10
    filter: str | None = None


@routes.get(cs("/rooms/{room_id}/context/{event_id}"))
async def context(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/context/{eventId}?limit&filter"""
    req = await requester(request)
    query = parse_query(request, ContextQuery)
    flt = EventFilter.from_query(query.filter)
    return ok(await services(request).timeline.context(
        req, _room_id(request), request.match_info["event_id"], query.limit, flt,
    ))


@attrs.frozen
class TimestampQuery:
    ts: int
    dir: Literal["b", "f"]


@routes.get(V1 + "/rooms/{room_id}/timestamp_to_event")
async def timestamp_to_event(request: web.Request) -> web.Response:
    """GET /v1/rooms/{roomId}/timestamp_to_event?ts&dir"""
    req = await requester(request)
    query = parse_query(request, TimestampQuery)
    return ok(await services(request).timeline.timestamp_to_event(req, _room_id(request), query.ts, query.dir))
