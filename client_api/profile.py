"""Profiles and account data."""

from __future__ import annotations

import attrs
from aiohttp import web

from client_api.http import (
    cs,
    json_body,
    parse_body,
    requester,
    require_own_user,
    services,
    validate,
)
from homeserver.core.errors import MatrixError
from homeserver.core.ids import normalize_user_id
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class DisplaynameBody:
    displayname: str | None


@attrs.frozen
class AvatarUrlBody:
    avatar_url: str | None


_FIELD_BODIES: dict[str, type[DisplaynameBody] | type[AvatarUrlBody]] = {
    "displayname": DisplaynameBody, "avatar_url": AvatarUrlBody,
}


@attrs.frozen
class UserSearchBody:
    search_term: str
    limit: int = 10


@routes.get(cs("/profile/{user_id}"))
async def get_profile(request: web.Request) -> web.Response:
    """GET /profile/{userId}"""
    return ok(await services(request).profile.get_profile(_user(request), allow_remote=True))


def _user(request: web.Request) -> str:
    return normalize_user_id(request.match_info["user_id"], services(request).server_name)


@routes.get(cs("/profile/{user_id}/{field:(?:displayname|avatar_url)}"))
async def get_field(request: web.Request) -> web.Response:
    """GET /profile/{userId}/displayname|avatar_url"""
    field = request.match_info["field"]
    profile = await services(request).profile.get_profile(_user(request), allow_remote=True)
    if field not in profile:
        return ok({})
    return ok({field: profile[field]})


@routes.put(cs("/profile/{user_id}/{field:(?:displayname|avatar_url)}"))
async def put_field(request: web.Request) -> web.Response:
    """PUT /profile/{userId}/displayname|avatar_url"""
    req = await requester(request)
    field = request.match_info["field"]
    value = getattr(validate(await json_body(request), _FIELD_BODIES[field]), field)
    await services(request).profile.set_field(req.user_id, _user(request), field, value)
    return ok()


@routes.delete(cs("/profile/{user_id}/{field:(?:displayname|avatar_url)}"))
async def delete_field(request: web.Request) -> web.Response:
    """DELETE /profile/{userId}/displayname|avatar_url (spec v1.16): the field is unset."""
    req = await requester(request)
    await services(request).profile.set_field(req.user_id, _user(request), request.match_info["field"], None)
    return ok()



@routes.put(cs("/user/{user_id}/account_data/{type}"))
async def put_account_data(request: web.Request) -> web.Response:
    """PUT /user/{userId}/account_data/{type}"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    body = await json_body(request, allow_floats=True)
    await services(request).account_data.put(req.user_id, "", request.match_info["type"], body)
    return ok()


@routes.get(cs("/user/{user_id}/account_data/{type}"))
async def get_account_data(request: web.Request) -> web.Response:
    """GET /user/{userId}/account_data/{type}"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    return ok(await services(request).account_data.get(req.user_id, "", request.match_info["type"]))


@routes.put(cs("/user/{user_id}/rooms/{room_id}/account_data/{type}"))
async def put_room_account_data(request: web.Request) -> web.Response:
    """PUT /user/{userId}/rooms/{roomId}/account_data/{type}"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    body = await json_body(request, allow_floats=True)
    await services(request).account_data.put(
        req.user_id, request.match_info["room_id"], request.match_info["type"], body,
    )
    return ok()


@routes.get(cs("/user/{user_id}/rooms/{room_id}/account_data/{type}"))
async def get_room_account_data(request: web.Request) -> web.Response:
    """GET /user/{userId}/rooms/{roomId}/account_data/{type}"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    return ok(await services(request).account_data.get(
        req.user_id, request.match_info["room_id"], request.match_info["type"],
    ))


@routes.get(cs("/user/{user_id}/rooms/{room_id}/tags"))
async def get_tags(request: web.Request) -> web.Response:
    """GET /user/{userId}/rooms/{roomId}/tags"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    return ok(await services(request).account_data.tags(req.user_id, request.match_info["room_id"]))


@attrs.frozen
class TagBody:
    """Spec "Room tagging": `order` is a number; other keys are kept as the client sent them."""
    order: float | None = None


@routes.put(cs("/user/{user_id}/rooms/{room_id}/tags/{tag}"))
async def put_tag(request: web.Request) -> web.Response:
    """PUT /user/{userId}/rooms/{roomId}/tags/{tag} {order}"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    body = await json_body(request, allow_floats=True)  # tag orders are fractions
    validate(body, TagBody)
    await services(request).account_data.set_tag(
        req.user_id, request.match_info["room_id"], request.match_info["tag"], body,
    )
    return ok()


@routes.delete(cs("/user/{user_id}/rooms/{room_id}/tags/{tag}"))
async def delete_tag(request: web.Request) -> web.Response:
    """DELETE /user/{userId}/rooms/{roomId}/tags/{tag}"""
    req = await requester(request)
    require_own_user(request, req.user_id)
    await services(request).account_data.delete_tag(
        req.user_id, request.match_info["room_id"], request.match_info["tag"],
    )
    return ok()


@routes.post(cs("/user_directory/search"))
async def search_user_directory(request: web.Request) -> web.Response:
    """POST /user_directory/search {search_term, limit}"""
    req = await requester(request)
    body = await parse_body(request, UserSearchBody)
    if body.limit < 0:
        raise MatrixError(400, "M_BAD_JSON", "limit must be a non-negative integer")
    return ok(await services(request).profile.search_users(req.user_id, body.search_term, min(body.limit, 100)))
