"""Reporting content (spec: "Reporting content"): events, rooms and users."""

from __future__ import annotations

import attrs
from aiohttp import web

from client_api.http import cs, parse_body, requester, services
from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class EventReportBody:
    reason: str | None = None
    score: int | None = None  # -100..0; removed in v1.18, still sent by older clients and kept


@attrs.frozen
class ReportBody:
    reason: str


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not ids.is_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    return room_id


@routes.post(cs("/rooms/{room_id}/report/{event_id}"))
async def report_event(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/report/{eventId} {reason}"""
    req = await requester(request)
    body = await parse_body(request, EventReportBody, allow_empty=True)
    if body.score is not None and not -100 <= body.score <= 0:
        raise MatrixError(400, "M_INVALID_PARAM", "score must be between -100 and 0")
    await services(request).reports.report_event(
        req, _room_id(request), request.match_info["event_id"], body.reason, body.score,
    )
    return ok()


@routes.post(cs("/rooms/{room_id}/report"))
async def report_room(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/report {reason}"""
    req = await requester(request)
    body = await parse_body(request, ReportBody)
    await services(request).reports.report_room(req, _room_id(request), body.reason)
    return ok()


@routes.post(cs("/users/{user_id}/report"))
async def report_user(request: web.Request) -> web.Response:
    """POST /users/{userId}/report {reason}"""
    req = await requester(request)
    body = await parse_body(request, ReportBody)
    await services(request).reports.report_user(req, request.match_info["user_id"], body.reason)
    return ok()
