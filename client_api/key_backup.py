"""Server-side key backup: /room_keys/version and /room_keys/keys (spec: "Server-side
key backups")."""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

from client_api.http import cs, json_body, parse_body, parse_query, requester, services, validate
from homeserver.http.responses import ok

routes = web.RouteTableDef()
KEYS_PATHS = ("/room_keys/keys", "/room_keys/keys/{room_id}", "/room_keys/keys/{room_id}/{session_id}")


@attrs.frozen
class VersionBody:
    algorithm: str
    auth_data: dict[str, Any]
    version: str | None = None


@attrs.frozen
class VersionQuery:
    version: str | None = None


@attrs.frozen
class KeyBackupData:
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any]


@attrs.frozen
class RoomKeyBackup:
    sessions: dict[str, KeyBackupData]


@attrs.frozen
class KeysBackup:
    rooms: dict[str, RoomKeyBackup]


async def _keys_body(request: web.Request) -> dict[str, Any]:
    """The body of PUT /room_keys/keys[/{roomId}[/{sessionId}]], checked for its form."""
    body = await json_body(request)
    form = (
        KeyBackupData if "session_id" in request.match_info
        else RoomKeyBackup if "room_id" in request.match_info else KeysBackup
    )
    validate(body, form)
    return body


@routes.post(cs("/room_keys/version"))
async def create_version(request: web.Request) -> web.Response:
    """POST /room_keys/version {algorithm, auth_data}"""
    req = await requester(request)
    body = await parse_body(request, VersionBody)
    return ok(await services(request).key_backup.create_version(req.user_id, attrs.asdict(body)))


@routes.get(cs("/room_keys/version"))
async def current_version(request: web.Request) -> web.Response:
    """GET /room_keys/version: the current backup"""
    req = await requester(request)
    return ok(await services(request).key_backup.get_version(req.user_id, None))


@routes.get(cs("/room_keys/version/{version}"))
async def get_version(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).key_backup.get_version(req.user_id, request.match_info["version"]))


@routes.put(cs("/room_keys/version/{version}"))
async def update_version(request: web.Request) -> web.Response:
    """PUT /room_keys/version/{version} {algorithm, auth_data, version?}"""
    req = await requester(request)
    body = attrs.asdict(await parse_body(request, VersionBody))
    if body["version"] is None:
        del body["version"]
    await services(request).key_backup.update_version(req.user_id, request.match_info["version"], body)
    return ok()


@routes.delete(cs("/room_keys/version/{version}"))
async def delete_version(request: web.Request) -> web.Response:
    req = await requester(request)
    await services(request).key_backup.delete_version(req.user_id, request.match_info["version"])
    return ok()


async def put_keys(request: web.Request) -> web.Response:
    """PUT /room_keys/keys[/{roomId}[/{sessionId}]]?version="""
    req = await requester(request)
    return ok(await services(request).key_backup.put_keys(
        req.user_id, parse_query(request, VersionQuery).version, await _keys_body(request),
        request.match_info.get("room_id"), request.match_info.get("session_id"),
    ))


async def get_keys(request: web.Request) -> web.Response:
    """GET /room_keys/keys[/{roomId}[/{sessionId}]]?version="""
    req = await requester(request)
    return ok(await services(request).key_backup.get_keys(
        req.user_id, parse_query(request, VersionQuery).version,
        request.match_info.get("room_id"), request.match_info.get("session_id"),
    ))


async def delete_keys(request: web.Request) -> web.Response:
    """DELETE /room_keys/keys[/{roomId}[/{sessionId}]]?version="""
    req = await requester(request)
    return ok(await services(request).key_backup.delete_keys(
        req.user_id, parse_query(request, VersionQuery).version,
        request.match_info.get("room_id"), request.match_info.get("session_id"),
    ))


for _path in KEYS_PATHS:
    routes.put(cs(_path))(put_keys)
    routes.get(cs(_path))(get_keys)
    routes.delete(cs(_path))(delete_keys)
