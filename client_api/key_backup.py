"""Server-side key backup: /room_keys/version and /room_keys/keys (spec: "Server-side
key backups")."""

from __future__ import annotations

from aiohttp import web

from client_api.http import cs, json_body, requester, services
from homeserver.http.responses import ok

routes = web.RouteTableDef()
KEYS_PATHS = ("/room_keys/keys", "/room_keys/keys/{room_id}", "/room_keys/keys/{room_id}/{session_id}")


@routes.post(cs("/room_keys/version"))
async def create_version(request: web.Request) -> web.Response:
    """POST /room_keys/version {algorithm, auth_data}"""
    req = await requester(request)
    return ok(await services(request).key_backup.create_version(req.user_id, await json_body(request)))


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
    await services(request).key_backup.update_version(
        req.user_id, request.match_info["version"], await json_body(request))
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
        req.user_id, request.query.get("version"), await json_body(request),
        request.match_info.get("room_id"), request.match_info.get("session_id"),
    ))


async def get_keys(request: web.Request) -> web.Response:
    """GET /room_keys/keys[/{roomId}[/{sessionId}]]?version="""
    req = await requester(request)
    return ok(await services(request).key_backup.get_keys(
        req.user_id, request.query.get("version"),
        request.match_info.get("room_id"), request.match_info.get("session_id"),
    ))


async def delete_keys(request: web.Request) -> web.Response:
    """DELETE /room_keys/keys[/{roomId}[/{sessionId}]]?version="""
    req = await requester(request)
    return ok(await services(request).key_backup.delete_keys(
        req.user_id, request.query.get("version"),
        request.match_info.get("room_id"), request.match_info.get("session_id"),
    ))


for _path in KEYS_PATHS:
    routes.put(cs(_path))(put_keys)
    routes.get(cs(_path))(get_keys)
    routes.delete(cs(_path))(delete_keys)
