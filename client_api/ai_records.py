"""AI interaction records, part of Tricolor's own API (mounted under `/_tricolor`):

- `GET  /_tricolor/client/v1/rooms/{roomId}/ai/interactions?from=&limit=`: the room's
  DOCTORs and admins;
- `POST /_tricolor/client/v1/rooms/{roomId}/ai/interactions` and
  `PUT .../ai/interactions/{id}`, `GET /_tricolor/client/v1/ai/interactions/pending`:
  the assistant application service (as_token) records its work;
- `GET  /_tricolor/admin/v1/ai/interactions?room_id=&status=&from=&limit=`: server admins.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from aiohttp import web

from client_api.http import parse_body, parse_query, requester, services
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class PageQuery:
    from_: str | None = None
    limit: int = 20
    room_id: str | None = None
    status: str | None = None


@attrs.frozen
class OpenBody:
    user_event_id: str
    provider: str
    request: Any = None


@attrs.frozen
class FinishBody:
    status: Literal["pending", "success", "failed"]
    response: Any = None
    reply_event_id: str | None = None
    duration_ms: int | None = None
    error: str | None = None


def _before(query: PageQuery) -> int | None:
    if query.from_ is None:
        return None
    if not query.from_.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid from token")
    return int(query.from_)


@routes.get("/client/v1/rooms/{room_id}/ai/interactions")
async def list_room(request: web.Request) -> web.Response:
    req = await requester(request)
    query = parse_query(request, PageQuery)
    return ok(await services(request).ai_records.list_room(
        req, request.match_info["room_id"], _before(query), query.limit,
    ))


@routes.post("/client/v1/rooms/{room_id}/ai/interactions")
async def open_record(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, OpenBody)
    return ok(await services(request).ai_records.open(
        req, request.match_info["room_id"], body.user_event_id, body.provider, body.request,
    ))


@routes.put("/client/v1/rooms/{room_id}/ai/interactions/{record_id:[0-9]+}")
async def finish_record(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await parse_body(request, FinishBody)
    return ok(await services(request).ai_records.finish(
        req, request.match_info["room_id"], int(request.match_info["record_id"]), status=body.status,
        response=body.response, reply_event_id=body.reply_event_id, duration_ms=body.duration_ms,
        error=body.error,
    ))


@routes.get("/client/v1/ai/interactions/pending")
async def pending(request: web.Request) -> web.Response:
    req = await requester(request)
    query = parse_query(request, PageQuery)
    return ok(await services(request).ai_records.pending(req, _before(query), query.limit))


@routes.get("/admin/v1/ai/interactions")
async def list_all(request: web.Request) -> web.Response:
    req = await requester(request)
    query = parse_query(request, PageQuery)
    return ok(await services(request).ai_records.list_all(
        req, query.room_id, query.status, _before(query), query.limit,
    ))
