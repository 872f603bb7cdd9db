"""Room aliases and the public room list."""

from __future__ import annotations

from typing import Literal

import attrs
from aiohttp import web

from client_api.http import cs, parse_body, parse_query, requester, services
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class AliasBody:
    room_id: str


@attrs.frozen
class VisibilityBody:
    visibility: Literal["public", "private"] = "public"


@attrs.frozen
class PublicRoomsQuery:
    limit: int | None = None
    since: str | None = None
    server: str | None = None
    include_all_networks: bool = False
    third_party_instance_id: str | None = None


@attrs.frozen
class ServerQuery:
    server: str | None = None


@attrs.frozen
class PublicRoomsFilter:
    generic_search_term: str | None = None


@attrs.frozen
class PublicRoomsBody:
    limit: int | None = None
    since: str | None = None
    filter: PublicRoomsFilter | None = None
    include_all_networks: bool = False
    third_party_instance_id: str | None = None


@routes.put(cs("/directory/room/{alias}"))
async def put_alias(request: web.Request) -> web.Response:
    """PUT /directory/room/{roomAlias} {room_id}"""
    req = await requester(request)
    body = await parse_body(request, AliasBody)
    await services(request).directory.create_alias(req, request.match_info["alias"], body.room_id)
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
    body = await parse_body(request, VisibilityBody)
    await services(request).directory.set_visibility(req, request.match_info["room_id"], body.visibility)
    return ok()


@routes.get(cs("/publicRooms"))
async def public_rooms(request: web.Request) -> web.Response:
    """GET /publicRooms?limit&since"""
    query = parse_query(request, PublicRoomsQuery)
    return ok(await services(request).directory.public_rooms_of(
        query.server, query.limit, query.since, None, query.include_all_networks, query.third_party_instance_id,
    ))


@routes.post(cs("/publicRooms"))
async def search_public_rooms(request: web.Request) -> web.Response:
    """POST /publicRooms {limit, since, filter: {generic_search_term}}"""
    await requester(request)
    body = await parse_body(request, PublicRoomsBody, allow_empty=True)
    query = parse_query(request, ServerQuery)
    term = body.filter.generic_search_term if body.filter else None
    return ok(await services(request).directory.public_rooms_of(
        query.server, body.limit, body.since, term, body.include_all_networks, body.third_party_instance_id,
    ))
