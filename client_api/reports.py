"""POST /rooms/{roomId}/report/{eventId} (spec "Reporting content")."""

from __future__ import annotations

import attrs
from aiohttp import web

from client_api.http import cs, parse_body, requester, services
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class ReportBody:
    reason: str | None = None
    score: int | None = None  # -100 (most offensive) to 0; deprecated in the spec but still sent


@routes.post(cs("/rooms/{room_id}/report/{event_id}"))
async def report_event(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, ReportBody, allow_empty=True)
    await services(request).reports.report(
        req, request.match_info["room_id"], request.match_info["event_id"], body.reason, body.score,
    )
    return ok()
