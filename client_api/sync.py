"""/sync and filters."""

from __future__ import annotations

from typing import Literal

import attrs
from aiohttp import web

from client_api.http import cs, json_body, parse_query, requester, require_own_user, services
from homeserver.http.responses import ok
from homeserver.services.room_material import encode_sync

routes = web.RouteTableDef()


@attrs.frozen
class SyncQuery:
    since: str | None = None
    timeout: int = 0
    filter: str | None = None
    full_state: bool = False
    set_presence: Literal["online", "offline", "unavailable"] = "online"
    use_state_after: bool = False


@routes.post(cs("/user/{user_id}/filter"))
async def create_filter(request: web.Request) -> web.Response:
    """POST /user/{userId}/filter"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    fid = await services(request).filters.create(req.user_id, await json_body(request))
    return ok({"filter_id": fid})


@routes.get(cs("/user/{user_id}/filter/{filter_id}"))
async def get_filter(request: web.Request) -> web.Response:
    """GET /user/{userId}/filter/{filterId}"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    return ok(await services(request).filters.get(req.user_id, request.match_info["filter_id"]))


@routes.get(cs("/sync"))
async def sync(request: web.Request) -> web.Response:
    """GET /sync?since=&timeout=&filter=&full_state="""
    req = await requester(request)
    svc = services(request)
    query = parse_query(request, SyncQuery)
    flt = await svc.filters.for_sync(req.user_id, query.filter)
    result = await svc.sync.sync(
        req, query.since, max(query.timeout, 0), flt, full_state=query.full_state,
        set_presence=query.set_presence,
    )
    # Room events may arrive serialised already (shared per room): encode_sync splices them.
    return web.Response(body=encode_sync(result), content_type="application/json")
