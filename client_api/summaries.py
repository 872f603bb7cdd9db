"""Room summary (MSC3266), mutual rooms (MSC2666) and /admin/whois."""

from __future__ import annotations

import attrs
from aiohttp import web

from client_api.http import cs, parse_query, requester, services
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class SummaryQuery:
    via: list[str] = attrs.field(factory=list)


@attrs.frozen
class MutualQuery:
    user_id: str | None = None
    from_: str | None = None


@routes.get("/v1/room_summary/{room:[^/]+}")
async def room_summary(request: web.Request) -> web.Response:
    """GET /v1/room_summary/{roomIdOrAlias}?via= (authentication optional)"""
    query = parse_query(request, SummaryQuery)
    try:
        req = await requester(request)
    except MatrixError as e:
        if e.errcode != "M_MISSING_TOKEN":
            raise
        req = None
    return ok(await services(request).summaries.room_summary(req, request.match_info["room"], query.via))


@routes.get("/v1/mutual_rooms")
async def mutual_rooms(request: web.Request) -> web.Response:
    """GET /v1/mutual_rooms?user_id=&from="""
    req = await requester(request)
    query = parse_query(request, MutualQuery)
    return ok(await services(request).summaries.mutual_rooms(req, query.user_id, query.from_))


@routes.get(cs("/admin/whois/{user_id}"))
async def whois(request: web.Request) -> web.Response:
    """GET /admin/whois/{userId}"""
    req = await requester(request)
    return ok(await services(request).summaries.whois(req, request.match_info["user_id"]))
