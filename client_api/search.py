"""POST /search (spec: "Server Side Search"): the `room_events` category."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from aiohttp import web

from client_api.http import cs, parse_body, parse_query, requester, services
from homeserver.http.responses import ok
from homeserver.services.search import Criteria

routes = web.RouteTableDef()


@attrs.frozen
class EventContext:
    before_limit: int = 5
    after_limit: int = 5
    include_profile: bool = False


@attrs.frozen
class Group:
    key: Literal["room_id", "sender"]


@attrs.frozen
class Groupings:
    group_by: list[Group] = attrs.field(factory=list)


@attrs.frozen
class RoomEvents:
    search_term: str
    keys: list[Literal["content.body", "content.name", "content.topic"]] | None = None
    filter: dict[str, Any] | None = None
    order_by: Literal["recent", "rank"] = "rank"
    event_context: EventContext | None = None
    include_state: bool = False
    groupings: Groupings | None = None


@attrs.frozen
class Categories:
    room_events: RoomEvents | None = None


@attrs.frozen
class SearchBody:
    search_categories: Categories


@attrs.frozen
class SearchQuery:
    next_batch: str | None = None


@routes.post(cs("/search"))
async def search(request: web.Request) -> web.Response:
    """POST /search?next_batch= {search_categories: {room_events: {...}}}"""
    req = await requester(request)
    query = parse_query(request, SearchQuery)
    body = await parse_body(request, SearchBody)
    room_events = body.search_categories.room_events
    if room_events is None:
        return ok({"search_categories": {}})  # no category we know was asked for
    ctx = room_events.event_context
    crit = Criteria(
        search_term=room_events.search_term,
        keys=tuple(room_events.keys) if room_events.keys is not None else None,
        filter=room_events.filter, order_by=room_events.order_by,
        before_limit=ctx.before_limit if ctx is not None else None,
        after_limit=ctx.after_limit if ctx is not None else 5,
        include_profile=ctx.include_profile if ctx is not None else False,
        include_state=room_events.include_state,
        group_by=tuple(g.key for g in room_events.groupings.group_by) if room_events.groupings else (),
    )
    return ok(await services(request).search.search(req, crit, query.next_batch))
