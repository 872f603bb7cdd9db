"""Simplified sliding sync (MSC4186) at Synapse's path:
``POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync?pos=&timeout=``."""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

from client_api.http import parse_body, parse_query, requester, services
from homeserver.http.responses import ok
from homeserver.services.sliding_sync import ListParams, RoomParams, SlidingRequest

routes = web.RouteTableDef()
PATH = "/unstable/org.matrix.simplified_msc3575/sync"  # under /_matrix/client


@attrs.frozen
class ListFilters:
    is_dm: bool | None = None
    is_invite: bool | None = None


@attrs.frozen
class ListBody:
    ranges: list[tuple[int, int]] = attrs.Factory(list)
    timeline_limit: int = 0
    required_state: list[tuple[str, str]] = attrs.Factory(list)
    filters: ListFilters | None = None


@attrs.frozen
class RoomSubscriptionBody:
    timeline_limit: int = 0
    required_state: list[tuple[str, str]] = attrs.Factory(list)


@attrs.frozen
class SlidingBody:
    lists: dict[str, ListBody] = attrs.Factory(dict)
    room_subscriptions: dict[str, RoomSubscriptionBody] = attrs.Factory(dict)
    extensions: dict[str, dict[str, Any]] = attrs.Factory(dict)
    conn_id: str | None = None


@attrs.frozen
class SlidingQuery:
    pos: str | None = None
    timeout: int = 0


@routes.post(PATH)
async def sliding_sync(request: web.Request) -> web.Response:
    req = await requester(request)
    query = parse_query(request, SlidingQuery)
    body = await parse_body(request, SlidingBody, allow_empty=True)
    sliding = SlidingRequest(
        lists={
            name: ListParams(
                tuple(lp.ranges), lp.timeline_limit, tuple(lp.required_state),
                lp.filters.is_dm if lp.filters else None, lp.filters.is_invite if lp.filters else None,
            )
            for name, lp in body.lists.items()
        },
        room_subscriptions={
            room: RoomParams(rs.timeline_limit, tuple(rs.required_state))
            for room, rs in body.room_subscriptions.items()
        },
        extensions=body.extensions, conn_id=body.conn_id or "",
    )
    return ok(await services(request).sliding_sync.sync(req, sliding, query.pos, query.timeout))
