"""Tricolor's own extensions, a sub-app mounted at ``/_tricolor``:

- ``/client/v1/...`` for signed-in users: group members with their roles, role changes,
  ownership transfer, leaving, announcements, dissolving; client event reports.
- ``/admin/v1/...`` for server admins: broadcasts and the client event reports.

Every handler reads its input through a schema declared here; the same schemas make
the OpenAPI description (client_api/openapi.py), so the two cannot disagree.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from aiohttp import web

from client_api.http import (
    json_body,
    parse_body,
    parse_query,
    rate_limit,
    requester,
    services,
    validate,
)
from homeserver.core import ids
from homeserver.core.canonical_json import encode_json
from homeserver.core.errors import MatrixError, too_large
from homeserver.core.paging import PageQuery
from homeserver.http.responses import ok

PREFIX = "/_tricolor"
routes = web.RouteTableDef()

# One client event report's payload may be this big (as encoded JSON).
MAX_CLIENT_EVENT_BYTES = 65_536


def _room(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not ids.is_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    return room_id


# -- groups ----------------------------------------------------------------------------


@attrs.frozen
class RoleBody:
    """PUT /client/v1/rooms/{roomId}/roles/{userId}: appoint (admin) or dismiss (member)."""
    role: Literal["admin", "member"]


@attrs.frozen
class TransferBody:
    """POST /client/v1/rooms/{roomId}/transfer_ownership: the new owner, a member."""
    user_id: str


@attrs.frozen
class AnnouncementBody:
    """PUT /client/v1/rooms/{roomId}/announcement: the group's new announcement."""
    text: str


@attrs.frozen
class AnnouncementQuery:
    limit: int = 10


@attrs.frozen
class DissolveBody:
    """POST /client/v1/rooms/{roomId}/dissolve: the final notice members see."""
    message: str | None = None


@routes.get("/client/v1/rooms/{room_id}/members")
async def group_members(request: web.Request) -> web.Response:
    """The joined members with their role (owner, admin, member) and power level."""
    req = await requester(request)
    return ok(await services(request).groups.members(req, _room(request)))


@routes.put("/client/v1/rooms/{room_id}/roles/{user_id}")
async def set_role(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, RoleBody)
    await services(request).groups.set_role(req, _room(request), request.match_info["user_id"], body.role)
    return ok()


@routes.post("/client/v1/rooms/{room_id}/transfer_ownership")
async def transfer_ownership(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, TransferBody)
    await services(request).groups.transfer_ownership(req, _room(request), body.user_id)
    return ok()


@routes.post("/client/v1/rooms/{room_id}/leave")
async def leave_group(request: web.Request) -> web.Response:
    req = await requester(request)
    await services(request).groups.leave(req, _room(request))
    return ok()


@routes.put("/client/v1/rooms/{room_id}/announcement")
async def set_announcement(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, AnnouncementBody)
    await rate_limit(request, "rc_message", req)
    return ok({"event_id": await services(request).groups.set_announcement(req, _room(request), body.text)})


@routes.get("/client/v1/rooms/{room_id}/announcement")
async def announcements(request: web.Request) -> web.Response:
    """The current announcement and its history, newest first."""
    req = await requester(request)
    query = parse_query(request, AnnouncementQuery)
    return ok(await services(request).groups.announcements(req, _room(request), query.limit))


@routes.post("/client/v1/rooms/{room_id}/dissolve")
async def dissolve(request: web.Request) -> web.Response:
    """The owner (or a server admin) dissolves the group; answers the deletion's id."""
    req = await requester(request)
    body = await parse_body(request, DissolveBody, allow_empty=True)
    return ok(await services(request).deletions.dissolve(req, _room(request), body.message))


@routes.get("/client/v1/rooms/{room_id}/dissolve")
async def dissolve_status(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).deletions.status_of_room(req, _room(request)))


# -- client event reports ---------------------------------------------------------------


@attrs.frozen
class ClientEventBody:
    """POST /client/v1/events: one custom event reported by the client."""
    type: str
    content: dict[str, Any]
    ts: int | None = None  # the client's clock, milliseconds since the epoch


@routes.post("/client/v1/events")
async def report_client_event(request: web.Request) -> web.Response:
    req = await requester(request)
    if request.content_length is not None and request.content_length > MAX_CLIENT_EVENT_BYTES + 1024:
        raise too_large("A client event may carry at most 64 KiB")
    body = validate(await json_body(request, allow_floats=True), ClientEventBody)
    payload = encode_json(body.content)
    if len(payload.encode()) > MAX_CLIENT_EVENT_BYTES:
        raise too_large("A client event may carry at most 64 KiB")
    await rate_limit(request, "rc_client_events", req)
    return ok(await services(request).client_events.report(req, body.type, payload, body.ts))


# -- admin ------------------------------------------------------------------------------


@attrs.frozen
class BroadcastBody:
    """POST /admin/v1/broadcast: a server notice to every active local user (or admins)."""
    content: dict[str, Any]
    admins_only: bool = False


@routes.post("/admin/v1/broadcast")
async def broadcast(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, BroadcastBody)
    if not isinstance(body.content.get("body"), str) or not isinstance(body.content.get("msgtype"), str):
        raise MatrixError(400, "M_BAD_JSON", "content needs a msgtype and a body")
    return ok(await services(request).notices.broadcast(req, body.content, body.admins_only), status=202)


@routes.get("/admin/v1/broadcast/{broadcast_id:\\d+}")
async def broadcast_progress(request: web.Request) -> web.Response:
    req = await requester(request)
    return ok(await services(request).notices.progress(req, int(request.match_info["broadcast_id"])))


@attrs.frozen
class ClientEventsQuery(PageQuery):
    """GET /admin/v1/client_events: reported events, oldest first, filtered (`from`: the
    last id seen)."""
    user_id: str | None = None
    type: str | None = None
    since_ts: int | None = None
    until_ts: int | None = None


@routes.get("/admin/v1/client_events")
async def list_client_events(request: web.Request) -> web.Response:
    req = await requester(request)
    query = parse_query(request, ClientEventsQuery)
    return ok(await services(request).client_events.list(
        req, after=query.from_, limit=query.limit, user_id=query.user_id, event_type=query.type,
        since_ts=query.since_ts, until_ts=query.until_ts,
    ))
