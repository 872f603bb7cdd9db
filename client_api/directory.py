"""Room aliases and the public room list."""

from __future__ import annotations

from aiohttp import web

from client_api.http import cs, json_body, requester, services, str_field
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@routes.put(cs("/directory/room/{alias}"))
async def put_alias(request: web.Request) -> web.Response:
    """PUT /directory/room/{roomAlias} {room_id}"""
    req = await requester(request)
    body = await json_body(request)
    await services(request).directory.create_alias(req, request.match_info["alias"], body.get("room_id"))
    return ok()


@routes.get(cs("/directory/room/{alias}"))
async def get_alias(request: web.Request) -> web.Response:
    """GET /directory/room/{roomAlias}"""
    return ok(await services(request).directory.resolve(request.match_info["alias"]))


@routes.delete(cs("/directory/room/{alias}"))
async def delete_alias(request: web.Request) -> web.Response:
    """DELETE /directory/room/{roomAlias}"""
    req = await requester(request)
    await services(request).directory.delete_alias(req, request.match_info["alias"])
    return ok()


@routes.get(cs("/rooms/{room_id}/aliases"))
async def room_aliases(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/aliases"""
    req = await requester(request)
    return ok({"aliases": await services(request).directory.room_aliases(req, request.match_info["room_id"])})


@routes.get(cs("/directory/list/room/{room_id}"))
async def get_visibility(request: web.Request) -> web.Response:
    """GET /directory/list/room/{roomId}"""
    return ok({"visibility": await services(request).directory.get_visibility(request.match_info["room_id"])})


@routes.put(cs("/directory/list/room/{room_id}"))
async def put_visibility(request: web.Request) -> web.Response:
    """PUT /directory/list/room/{roomId} {visibility}"""
    req = await requester(request)
    body = await json_body(request)
    await services(request).directory.set_visibility(req, request.match_info["room_id"], body.get("visibility", "public"))
    return ok()


def _limit(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be an integer") from None


@routes.get(cs("/publicRooms"))
async def public_rooms(request: web.Request) -> web.Response:
    """GET /publicRooms?limit&since"""
    return ok(await services(request).directory.public_rooms(
        _limit(request.query.get("limit")), request.query.get("since"), None,
    ))


@routes.post(cs("/publicRooms"))
async def search_public_rooms(request: web.Request) -> web.Response:
    """POST /publicRooms {limit, since, filter: {generic_search_term}}"""
    await requester(request)
    body = await json_body(request, allow_empty=True)
    flt = body.get("filter") or {}
    term = flt.get("generic_search_term") if isinstance(flt, dict) else None
    if term is not None and not isinstance(term, str):
        raise MatrixError(400, "M_BAD_JSON", "generic_search_term must be a string")
    since = str_field(body, "since", required=False)
    return ok(await services(request).directory.public_rooms(_limit(body.get("limit")), since, term))
