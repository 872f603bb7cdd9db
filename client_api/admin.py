"""The Synapse-compatible admin API, a sub-app mounted at ``/_synapse/admin``.

Paths, bodies and answers follow Synapse's admin API documentation, so its tools (the
synapse-admin web UI, scripts) work unchanged; every endpoint is for server admins only.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from aiohttp import web

from client_api.http import json_body, parse_body, parse_query, requester, services, validate
from homeserver.core.errors import MatrixError, forbidden
from homeserver.core.paging import PageQuery
from homeserver.http.middleware import Handler
from homeserver.http.responses import ok
from homeserver.services.admin import SERVER_VERSION
from homeserver.services.filtering import EventFilter
from homeserver.services.media import MediaService

PREFIX = "/_synapse/admin"
routes = web.RouteTableDef()


@attrs.frozen
class UsersQuery(PageQuery):
    """GET /v2/users and /v3/users."""
    name: str | None = None
    user_id: str | None = None
    guests: bool = True
    deactivated: bool = False
    admins: bool | None = None
    order_by: str = "name"
    dir: Literal["f", "b"] = "f"


@attrs.frozen
class PutUserBody:
    """PUT /v2/users/{userId}: create or modify."""
    password: str | None = None
    logout_devices: bool = True
    displayname: str | None = None
    avatar_url: str | None = None
    admin: bool | None = None
    deactivated: bool | None = None


@attrs.frozen
class DeactivateBody:
    erase: bool = False


@attrs.frozen
class ResetPasswordBody:
    new_password: str
    logout_devices: bool = True


@attrs.frozen
class OverrideBody:
    messages_per_second: float = 0
    burst_count: int = 0


@attrs.frozen
class RoomsQuery(PageQuery):
    order_by: str = "name"
    dir: Literal["f", "b"] = "f"
    search_term: str | None = None


@attrs.frozen
class BlockBody:
    block: bool


@attrs.frozen
class MakeRoomAdminBody:
    user_id: str | None = None


def _user(request: web.Request) -> str:
    return request.match_info["user_id"]


def _room(request: web.Request) -> str:
    return request.match_info["room_id"]


@attrs.frozen
class SharedSecretBody:
    """POST /v1/register: Synapse's shared-secret registration."""
    nonce: str
    username: str
    password: str
    mac: str
    admin: bool = False
    displayname: str | None = None


# Reachable without an admin token (as in Synapse): shared-secret registration proves
# itself with its MAC, and the version is public.
_OPEN_PATHS = frozenset({PREFIX + "/v1/register", PREFIX + "/v1/server_version"})


@web.middleware
async def admins_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every other admin endpoint refuses non-admins before reading anything of the request
    (issue 18: a non-admin learns nothing, not even whether a body would have been valid)."""
    if request.path not in _OPEN_PATHS and request.method != "OPTIONS":
        req = await requester(request)
        # Users may ask whois about themselves (Synapse's rule, and the spec's /admin/whois).
        own_whois = request.match_info.handler is whois and request.match_info.get("user_id") == req.user_id
        if not req.is_admin and not own_whois:
            raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")
    return await handler(request)


@routes.get("/v1/register")
async def register_nonce(request: web.Request) -> web.Response:
    """A nonce for one shared-secret registration (no authentication)."""
    return ok(services(request).shared_secret.nonce())


@routes.post("/v1/register")
async def register_with_secret(request: web.Request) -> web.Response:
    body = await parse_body(request, SharedSecretBody)
    return ok(await services(request).shared_secret.register(
        body.nonce, body.username, body.password, body.admin, body.mac, body.displayname,
    ))


@routes.get("/v1/server_version")
async def server_version(request: web.Request) -> web.Response:
    """GET /v1/server_version (no authentication, as in Synapse)."""
    return ok({"server_version": SERVER_VERSION})


@routes.get("/{v:v2|v3}/users")
async def list_users(request: web.Request) -> web.Response:
    req = await requester(request)
    query = parse_query(request, UsersQuery)
    return ok(await services(request).admin.list_users(
        req, offset=query.from_, limit=query.limit, name=query.name or query.user_id,
        guests=query.guests, deactivated=query.deactivated, admins=query.admins, order_by=query.order_by,
        backwards=query.dir == "b",
    ))


@routes.get("/v2/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).admin.get_user(req, _user(request)))


@routes.put("/v2/users/{user_id}")
async def put_user(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, PutUserBody, allow_empty=True)
    user, created = await services(request).admin.put_user(
        req, _user(request), password=body.password, displayname=body.displayname,
        avatar_url=body.avatar_url, admin=body.admin, deactivated=body.deactivated,
        logout_devices=body.logout_devices,
    )
    return ok(user, status=201 if created else 200)


@routes.post("/v1/deactivate/{user_id}")
async def deactivate(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, DeactivateBody, allow_empty=True)
    await services(request).admin.deactivate(req, _user(request), body.erase)
    return ok({"id_server_unbind_result": "success"})


@routes.post("/v1/reset_password/{user_id}")
async def reset_password(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, ResetPasswordBody)
    await services(request).admin.reset_password(req, _user(request), body.new_password, body.logout_devices)
    return ok()


@routes.get("/v1/whois/{user_id}")
async def whois(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).admin.whois(req, _user(request)))


@routes.get("/v2/users/{user_id}/devices")
async def devices(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).admin.devices(req, _user(request)))


@routes.get("/v1/users/{user_id}/joined_rooms")
async def joined_rooms(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).admin.joined_rooms(req, _user(request)))


@routes.get("/v1/users/{user_id}/override_ratelimit")
async def get_override(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).admin.get_override(req, _user(request)))


@routes.post("/v1/users/{user_id}/override_ratelimit")
async def set_override(request: web.Request) -> web.Response:
    req = await requester(request)
    # Synapse takes integers; a fraction (one message per ten seconds) is allowed here too.
    body = validate(await json_body(request, allow_empty=True, allow_floats=True), OverrideBody)
    return ok(await services(request).admin.set_override(
        req, _user(request), float(body.messages_per_second), body.burst_count,
    ))


@routes.delete("/v1/users/{user_id}/override_ratelimit")
async def delete_override(request: web.Request) -> web.Response:
    req = await requester(request)
    await services(request).admin.delete_override(req, _user(request))
    return ok()


@routes.get("/v1/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    req = await requester(request)
    query = parse_query(request, RoomsQuery)
    return ok(await services(request).admin.list_rooms(
        req, offset=query.from_, limit=query.limit, order_by=query.order_by,
        backwards=query.dir == "b", search_term=query.search_term,
    ))


@routes.get("/v1/rooms/{room_id}")
async def room(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).admin.room(req, _room(request)))


@routes.get("/v1/rooms/{room_id}/members")
async def room_members(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).admin.room_members(req, _room(request)))


@routes.get("/v1/rooms/{room_id}/state")
async def room_state(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).admin.room_state(req, _room(request)))


@attrs.frozen
class RoomMessagesQuery:
    dir: Literal["b", "f"] = "b"
    from_: str | None = None
    to: str | None = None
    limit: int = 10
    filter: str | None = None


@routes.get("/v1/rooms/{room_id}/messages")
async def room_messages(request: web.Request) -> web.Response:
    """A room's timeline as /messages pages it, whoever is in the room."""
    req = await requester(request)
    if not req.is_admin:
        raise forbidden("You are not a server admin")
    query = parse_query(request, RoomMessagesQuery)
    return ok(await services(request).timeline.messages(
        req, _room(request), query.dir, query.from_, query.to, query.limit,
        EventFilter.from_query(query.filter), whole_history=True,
    ))


@routes.put("/v1/rooms/{room_id}/block")
async def block_room(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, BlockBody)
    return ok(await services(request).admin.block_room(req, _room(request), body.block))


@routes.get("/v1/rooms/{room_id}/block")
async def room_block(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).admin.room_block(req, _room(request)))


@routes.post("/v1/rooms/{room_id}/make_room_admin")
async def make_room_admin(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, MakeRoomAdminBody, allow_empty=True)
    await services(request).admin.make_room_admin(req, _room(request), body.user_id)
    return ok()


@attrs.frozen
class ServerNoticeBody:
    """POST /v1/send_server_notice (and PUT .../{txnId})."""
    user_id: str
    content: dict[str, Any]
    type: str = "m.room.message"
    state_key: str | None = None


@routes.post("/v1/send_server_notice")
async def send_server_notice(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, ServerNoticeBody)
    return ok(await services(request).notices.send_as_admin(
        req, body.user_id, body.content, body.type, None, body.state_key,
    ))


@routes.put("/v1/send_server_notice/{txn_id}")
async def send_server_notice_txn(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, ServerNoticeBody)
    return ok(await services(request).notices.send_as_admin(
        req, body.user_id, body.content, body.type, request.match_info["txn_id"], body.state_key,
    ))


@attrs.frozen
class DeleteRoomBody:
    """DELETE /v2/rooms/{roomId} (Synapse's delete room API, version 2)."""
    block: bool = False
    purge: bool = True
    force_purge: bool = False
    new_room_user_id: str | None = None
    room_name: str | None = None
    message: str | None = None


@routes.delete("/v2/rooms/{room_id}")
@routes.delete("/v1/rooms/{room_id}")
async def delete_room(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, DeleteRoomBody, allow_empty=True)
    return ok(await services(request).deletions.admin_delete(
        req, _room(request), block=body.block, purge=body.purge, force_purge=body.force_purge,
        message=body.message, new_room_user_id=body.new_room_user_id, room_name=body.room_name,
    ))


@routes.get("/v2/rooms/{room_id}/delete_status")
async def delete_status_of_room(request: web.Request) -> web.Response:
    req = await requester(request)
    if not req.is_admin:
        raise forbidden("You are not a server admin")
    return ok(await services(request).deletions.status_of_room(req, _room(request)))


@routes.get("/v2/rooms/delete_status/{delete_id}")
async def delete_status(request: web.Request) -> web.Response:
    req = await requester(request)
    if not req.is_admin:
        raise forbidden("You are not a server admin")
    return ok(await services(request).deletions.status(req, request.match_info["delete_id"]))


# -- media: an app key, since the media service is built with the media sub-apps ------------

ADMIN_MEDIA = web.AppKey("admin_media", MediaService)


@routes.get("/v1/users/{user_id}/media")
async def user_media(request: web.Request) -> web.Response:
    """A user's uploads, newest first."""
    req = await requester(request)
    query = parse_query(request, PageQuery)
    return ok(await request.app[ADMIN_MEDIA].user_media(req, _user(request), query.from_, query.limit))


@routes.delete("/v1/media/{server_name}/{media_id}")
async def delete_media(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await request.app[ADMIN_MEDIA].delete_media(
        req, request.match_info["server_name"], request.match_info["media_id"],
    ))


@routes.post("/v1/media/quarantine/{server_name}/{media_id}")
async def quarantine_media(request: web.Request) -> web.Response:
    req = await requester(request)
    await request.app[ADMIN_MEDIA].quarantine(req, request.match_info["server_name"], request.match_info["media_id"], True)
    return ok()


@routes.post("/v1/media/unquarantine/{server_name}/{media_id}")
async def unquarantine_media(request: web.Request) -> web.Response:
    req = await requester(request)
    await request.app[ADMIN_MEDIA].quarantine(req, request.match_info["server_name"], request.match_info["media_id"], False)
    return ok()


# -- event reports ---------------------------------------------------------------------


@attrs.frozen
class ReportsQuery(PageQuery):
    dir: Literal["f", "b"] = "b"
    room_id: str | None = None
    user_id: str | None = None


@routes.get("/v1/event_reports")
async def list_reports(request: web.Request) -> web.Response:
    """Reported events, newest first by default."""
    req = await requester(request)
    query = parse_query(request, ReportsQuery)
    return ok(await services(request).report_admin.list_reports(
        req, offset=query.from_, limit=query.limit, backwards=query.dir == "b", room_id=query.room_id,
        user_id=query.user_id,
    ))


@routes.get("/v1/event_reports/{report_id:\\d+}")
async def get_report(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).report_admin.get_report(req, int(request.match_info["report_id"])))


@routes.delete("/v1/event_reports/{report_id:\\d+}")
async def delete_report(request: web.Request) -> web.Response:
    req = await requester(request)
    await services(request).report_admin.delete_report(req, int(request.match_info["report_id"]))
    return ok()


# -- registration tokens -----------------------------------------------------------------


@attrs.frozen
class TokensQuery:
    valid: bool | None = None


@attrs.frozen
class NewTokenBody:
    token: str | None = None
    uses_allowed: int | None = None
    expiry_time: int | None = None
    length: int = 16


@attrs.frozen
class UpdateTokenBody:
    """Absent fields stay as they are; null clears (no limit, no expiry)."""
    uses_allowed: int | None = None
    expiry_time: int | None = None


@routes.get("/v1/registration_tokens")
async def list_tokens(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).report_admin.list_tokens(req, parse_query(request, TokensQuery).valid))


@routes.post("/v1/registration_tokens/new")
async def new_token(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, NewTokenBody, allow_empty=True)
    return ok(await services(request).report_admin.new_token(req, body.token, body.uses_allowed, body.expiry_time, body.length))


@routes.get("/v1/registration_tokens/{token}")
async def get_token(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).report_admin.get_token(req, request.match_info["token"]))


@routes.put("/v1/registration_tokens/{token}")
async def update_token(request: web.Request) -> web.Response:
    req = await requester(request)
    raw = await json_body(request, allow_empty=True)
    body = validate(raw, UpdateTokenBody)
    changes = {k: getattr(body, k) for k in ("uses_allowed", "expiry_time") if k in raw}
    return ok(await services(request).report_admin.update_token(req, request.match_info["token"], changes))


@routes.delete("/v1/registration_tokens/{token}")
async def delete_token(request: web.Request) -> web.Response:
    req = await requester(request)
    await services(request).report_admin.delete_token(req, request.match_info["token"])
    return ok()
