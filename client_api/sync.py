"""/sync and filters."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from client_api.http import cs, json_body, ok, query_int, requester, require_own_user, services
from homeserver.core.canonical_json import parse_json
from homeserver.core.errors import MatrixError, not_found
from homeserver.services.filtering import SyncFilter

routes = web.RouteTableDef()



@routes.post(cs("/user/{user_id}/filter"))
async def create_filter(request: web.Request) -> web.Response:
    """POST /user/{userId}/filter"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    body = await json_body(request)
    SyncFilter.parse(body)  # refuse filters we could not apply later
    fid = await services(request).filters.add_filter(req.user_id, body)
    return ok({"filter_id": str(fid)})


@routes.get(cs("/user/{user_id}/filter/{filter_id}"))
async def get_filter(request: web.Request) -> web.Response:
    """GET /user/{userId}/filter/{filterId}"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    try:
        fid = int(request.match_info["filter_id"])
    except ValueError:
        raise not_found("No such filter") from None
    body = await services(request).filters.get_filter(req.user_id, fid)
    if body is None:
        raise not_found("No such filter")
    return ok(body)


async def _load_filter(request: web.Request, user_id: str) -> SyncFilter:
    raw = request.query.get("filter")
    if not raw:
        return SyncFilter()
    body: Any
    if raw.lstrip().startswith("{"):
        body = parse_json(raw)
    else:
        try:
            fid = int(raw)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "filter must be an id or JSON") from None
        body = await services(request).filters.get_filter(user_id, fid)
        if body is None:
            raise MatrixError(400, "M_INVALID_PARAM", "Unknown filter id")
    return SyncFilter.parse(body)


@routes.get(cs("/sync"))
async def sync(request: web.Request) -> web.Response:
    """GET /sync?since=&timeout=&filter=&full_state="""
    req = await requester(request)
    svc = services(request)
    flt = await _load_filter(request, req.user_id)
    result = await svc.sync.sync(
        req, request.query.get("since"), query_int(request, "timeout", 0), flt,
        full_state=request.query.get("full_state", "false").lower() == "true",
        set_presence=request.query.get("set_presence", "online"),
    )
    return ok(result)
