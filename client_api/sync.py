"""/sync and filters."""

from __future__ import annotations

from aiohttp import web

from client_api.http import cs, json_body, query_int, requester, require_own_user, services
from homeserver.http.responses import ok

routes = web.RouteTableDef()



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
    flt = await svc.filters.for_sync(req.user_id, request.query.get("filter"))
    result = await svc.sync.sync(
        req, request.query.get("since"), query_int(request, "timeout", 0), flt,
        full_state=request.query.get("full_state", "false").lower() == "true",
        set_presence=request.query.get("set_presence", "online"),
    )
    return ok(result)
