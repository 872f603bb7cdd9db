"""Deprecated read APIs older clients still use: /events, /events/{eventId}, /initialSync,
/rooms/{roomId}/initialSync (see homeserver/services/legacy.py)."""

from __future__ import annotations

import attrs
from aiohttp import web

from client_api.http import cs, parse_query, requester, services
from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class EventsQuery:
    from_: str | None = None
    timeout: int = 30_000
    room_id: str | None = None


@attrs.frozen
class InitialSyncQuery:
    limit: int = 10
    archived: bool = False


@routes.get(cs("/events"))
async def events(request: web.Request) -> web.Response:
    """GET /events?from=&timeout=&room_id="""
    req = await requester(request)
    query = parse_query(request, EventsQuery)
    return ok(await services(request).legacy.events(req, query.from_, query.timeout, query.room_id))


@routes.get(cs("/events/{event_id}"))
async def event(request: web.Request) -> web.Response:
    """GET /events/{eventId}"""
    req = await requester(request)
    return ok(await services(request).legacy.event(req, request.match_info["event_id"]))


@routes.get(cs("/initialSync"))
async def initial_sync(request: web.Request) -> web.Response:
    """GET /initialSync?limit=&archived="""
    req = await requester(request)
    query = parse_query(request, InitialSyncQuery)
    return ok(await services(request).legacy.initial_sync(req, max(0, min(query.limit, 100)), query.archived))


@routes.get(cs("/rooms/{room_id}/initialSync"))
async def room_initial_sync(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/initialSync"""
    req = await requester(request)
    room_id = request.match_info["room_id"]
    if not ids.is_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    return ok(await services(request).legacy.room_initial_sync(req, room_id))
