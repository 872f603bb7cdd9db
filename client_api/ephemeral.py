"""Typing, receipts, read markers and presence."""

from __future__ import annotations

from typing import Literal, TypedDict

import attrs
from aiohttp import web

from client_api.http import cs, parse_body, requester, services
from homeserver.core.errors import MatrixError, forbidden
from homeserver.http.responses import ok
from homeserver.services.auth import Requester
from homeserver.services.container import Services

routes = web.RouteTableDef()


@attrs.frozen
class TypingBody:
    typing: bool
    timeout: int = 30_000


@attrs.frozen
class ReceiptBody:
    thread_id: str | None = None


# Keys with dots are no attribute names: a TypedDict is the schema here.
ReadMarkersBody = TypedDict(
    "ReadMarkersBody", {"m.fully_read": str, "m.read": str, "m.read.private": str}, total=False,
)


@attrs.frozen
class PresenceBody:
    presence: Literal["online", "offline", "unavailable"]
    status_msg: str | None = None


@routes.put(cs("/rooms/{room_id}/typing/{user_id}"))
async def typing(request: web.Request) -> web.Response:
    """PUT /rooms/{roomId}/typing/{userId} {typing, timeout?}"""
    req = await requester(request)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("Cannot set typing for another user")
    body = await parse_body(request, TypingBody)
    svc = services(request)
    room_id = request.match_info["room_id"]
    await svc.rooms.require_joined(req, room_id)
    svc.typing.set_typing(room_id, req.user_id, body.typing, body.timeout)
    return ok()


async def _receipt(request: web.Request, room_id: str, receipt_type: str, event_id: str, thread_id: str | None) -> None:
    await put_receipt(services(request), await requester(request), room_id, receipt_type, event_id, thread_id)


async def put_receipt(
    svc: Services, req: Requester, room_id: str, receipt_type: str, event_id: str, thread_id: str | None,
) -> None:
    """A receipt or read marker, from HTTP or a WebSocket `receipt` op."""
    await svc.rooms.require_joined(req, room_id)
    target = await svc.events.get_event(event_id)
    if target is None or target.event.room_id != room_id:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown event")
    if receipt_type == "m.fully_read":
        await svc.account_data.set_fully_read(req.user_id, room_id, event_id)
    else:
        await svc.receipts.put(room_id, req.user_id, receipt_type, event_id, thread_id)


@routes.post(cs("/rooms/{room_id}/receipt/{receipt_type}/{event_id}"))
async def receipt(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/receipt/{receiptType}/{eventId} {thread_id?}"""
    body = await parse_body(request, ReceiptBody, allow_empty=True)
    receipt_type = request.match_info["receipt_type"]
    if receipt_type not in ("m.read", "m.read.private", "m.fully_read"):
        raise MatrixError(400, "M_INVALID_PARAM", "Unknown receipt type")
    await _receipt(request, request.match_info["room_id"], receipt_type, request.match_info["event_id"], body.thread_id)
    return ok()


@routes.post(cs("/rooms/{room_id}/read_markers"))
async def read_markers(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/read_markers {m.fully_read, m.read?, m.read.private?}"""
    body = await parse_body(request, ReadMarkersBody)
    room_id = request.match_info["room_id"]
    for key, event_id in body.items():
        await _receipt(request, room_id, key, event_id, None)
    return ok()


@routes.put(cs("/presence/{user_id}/status"))
async def set_presence(request: web.Request) -> web.Response:
    """PUT /presence/{userId}/status {presence, status_msg?}"""
    req = await requester(request)
    body = await parse_body(request, PresenceBody)
    await services(request).presence.set(
        req.user_id, request.match_info["user_id"], body.presence, body.status_msg,
    )
    return ok()


@routes.get(cs("/presence/{user_id}/status"))
async def get_presence(request: web.Request) -> web.Response:
    """GET /presence/{userId}/status"""
    await requester(request)
    return ok(services(request).presence.get(request.match_info["user_id"]))
