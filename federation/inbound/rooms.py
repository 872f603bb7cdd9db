"""Joins, leaves, invites, and reading room history and state (server-server API)."""

from __future__ import annotations

import attrs
from aiohttp import web

from federation.inbound.auth import ORIGIN
from federation.inbound.context import FEDERATION
from homeserver.core.errors import MatrixError
from homeserver.http.inputs import json_body, parse_body, parse_query, validate
from homeserver.http.responses import ok

routes = web.RouteTableDef()
V1 = "/v1"  # relative to the federation sub-app's PREFIX
V2 = "/v2"


# One schema per endpoint, as in the client API (docs/inputs.md): a peer's wrong type is
# 400 M_INVALID_PARAM (query) or M_BAD_JSON (body), never a 500.


@attrs.frozen
class MakeJoinQuery:
    ver: list[str] = attrs.field(factory=lambda: ["1"])  # spec: room versions the joiner supports


@attrs.frozen
class EventIdQuery:
    event_id: str  # GET /state and /state_ids: required


@attrs.frozen
class SendJoinQuery:
    omit_members: bool = False  # spec v1.6: the joiner accepts a partial state (MSC3706)


@attrs.frozen
class BackfillQuery:
    v: list[str]  # spec: required, the events to start from
    limit: int  # spec: required


@attrs.frozen
class MissingEventsBody:
    earliest_events: list[str]
    latest_events: list[str]
    limit: int = 10
    min_depth: int = 0


@attrs.frozen
class InviteBody:
    event: dict[str, object]
    room_version: str | None = None
    # Junk entries are dropped by the service (an invite must not fail over a stripped-state hint).
    invite_room_state: list[object] = attrs.field(factory=list)


@attrs.frozen
class ProfileQuery:
    user_id: str
    field: str | None = None


@attrs.frozen
class DirectoryQuery:
    room_alias: str


async def _body(request: web.Request) -> dict[str, object]:
    """A PDU body: any JSON object (the event is checked by the service)."""
    return await json_body(request)


@routes.get(V1 + "/make_join/{room_id}/{user_id}")
async def make_join(request: web.Request) -> web.Response:
    """GET /make_join/{roomId}/{userId}?ver=..."""
    versions = parse_query(request, MakeJoinQuery).ver
    return ok(await request.app[FEDERATION].rooms.make_membership(
        request[ORIGIN], request.match_info["room_id"], request.match_info["user_id"], "join", versions,
    ))


@routes.get(V1 + "/make_leave/{room_id}/{user_id}")
async def make_leave(request: web.Request) -> web.Response:
    """GET /make_leave/{roomId}/{userId}"""
    return ok(await request.app[FEDERATION].rooms.make_membership(
        request[ORIGIN], request.match_info["room_id"], request.match_info["user_id"], "leave", [],
    ))


@routes.put(V2 + "/send_join/{room_id}/{event_id}")
async def send_join(request: web.Request) -> web.Response:
    """PUT /v2/send_join/{roomId}/{eventId}?omit_members="""
    omit = parse_query(request, SendJoinQuery).omit_members
    return ok(await request.app[FEDERATION].rooms.send_membership(
        request[ORIGIN], request.match_info["room_id"], request.match_info["event_id"],
        await _body(request), "join", omit_members=bool(omit),
    ))


@routes.put(V2 + "/send_leave/{room_id}/{event_id}")
async def send_leave(request: web.Request) -> web.Response:
    """PUT /v2/send_leave/{roomId}/{eventId}"""
    return ok(await request.app[FEDERATION].rooms.send_membership(
        request[ORIGIN], request.match_info["room_id"], request.match_info["event_id"],
        await _body(request), "leave",
    ))


@routes.get(V1 + "/make_knock/{room_id}/{user_id}")
async def make_knock(request: web.Request) -> web.Response:
    """GET /make_knock/{roomId}/{userId}?ver=..."""
    versions = request.query.getall("ver", ["1"])
    return ok(await request.app[FEDERATION].rooms.make_membership(
        request[ORIGIN], request.match_info["room_id"], request.match_info["user_id"], "knock", versions,
    ))


@routes.put(V1 + "/send_knock/{room_id}/{event_id}")
async def send_knock(request: web.Request) -> web.Response:
    """PUT /send_knock/{roomId}/{eventId}: answers with knock_room_state."""
    return ok(await request.app[FEDERATION].rooms.send_membership(
        request[ORIGIN], request.match_info["room_id"], request.match_info["event_id"],
        await _body(request), "knock",
    ))


@routes.put(V2 + "/invite/{room_id}/{event_id}")
async def invite(request: web.Request) -> web.Response:
    """PUT /v2/invite/{roomId}/{eventId}"""
    body = await _body(request)
    validate(body, InviteBody)
    return ok(await request.app[FEDERATION].rooms.on_invite(
        request[ORIGIN], request.match_info["room_id"], request.match_info["event_id"], body,
    ))


@routes.get(V1 + "/event/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    """GET /event/{eventId}"""
    return ok(await request.app[FEDERATION].rooms.get_event(request[ORIGIN], request.match_info["event_id"]))


def _event_id_param(request: web.Request) -> str:
    return parse_query(request, EventIdQuery).event_id


@routes.get(V1 + "/state/{room_id}")
async def state(request: web.Request) -> web.Response:
    """GET /state/{roomId}?event_id="""
    return ok(await request.app[FEDERATION].rooms.state_at(
        request[ORIGIN], request.match_info["room_id"], _event_id_param(request), ids_only=False,
    ))


@routes.get(V1 + "/state_ids/{room_id}")
async def state_ids(request: web.Request) -> web.Response:
    """GET /state_ids/{roomId}?event_id="""
    return ok(await request.app[FEDERATION].rooms.state_at(
        request[ORIGIN], request.match_info["room_id"], _event_id_param(request), ids_only=True,
    ))


@routes.get(V1 + "/event_auth/{room_id}/{event_id}")
async def event_auth(request: web.Request) -> web.Response:
    """GET /event_auth/{roomId}/{eventId}"""
    return ok(await request.app[FEDERATION].rooms.event_auth(
        request[ORIGIN], request.match_info["room_id"], request.match_info["event_id"],
    ))


@routes.get(V1 + "/backfill/{room_id}")
async def backfill(request: web.Request) -> web.Response:
    """GET /backfill/{roomId}?v=...&limit="""
    query = parse_query(request, BackfillQuery)
    return ok(await request.app[FEDERATION].rooms.backfill(
        request[ORIGIN], request.match_info["room_id"], query.v, query.limit,
    ))


@routes.post(V1 + "/get_missing_events/{room_id}")
async def get_missing_events(request: web.Request) -> web.Response:
    """POST /get_missing_events/{roomId}"""
    body = await parse_body(request, MissingEventsBody)
    return ok(await request.app[FEDERATION].rooms.missing_events(
        request[ORIGIN], request.match_info["room_id"], body.earliest_events, body.latest_events,
        max(1, min(body.limit, 100)),
    ))


@routes.get(V1 + "/query/profile")
async def query_profile(request: web.Request) -> web.Response:
    """GET /query/profile?user_id=&field="""
    query = parse_query(request, ProfileQuery)
    profile = await request.app[FEDERATION].profile.get_profile(query.user_id)
    if query.field:
        profile = {k: v for k, v in profile.items() if k == query.field}
    return ok(profile)


def _flag(value: object) -> bool:
    return value is True or value == "true"


@routes.get(V1 + "/publicRooms")
async def public_rooms(request: web.Request) -> web.Response:
    """GET /publicRooms?limit&since&include_all_networks&third_party_instance_id"""
    limit = request.query.get("limit")
    if limit is not None and not limit.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer")
    return ok(await request.app[FEDERATION].directory.public_rooms(
        int(limit) if limit is not None else None, request.query.get("since"), None,
        _flag(request.query.get("include_all_networks")), request.query.get("third_party_instance_id"),
    ))


@routes.post(V1 + "/publicRooms")
async def search_public_rooms(request: web.Request) -> web.Response:
    """POST /publicRooms {limit, since, filter: {generic_search_term}, include_all_networks, third_party_instance_id}"""
    body = await _body(request)
    if not isinstance(body, dict):
        raise MatrixError(400, "M_BAD_JSON", "Body must be an object")
    limit, since, flt = body.get("limit"), body.get("since"), body.get("filter") or {}
    tpi = body.get("third_party_instance_id")
    if (limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0)) or (
        since is not None and not isinstance(since, str)) or not isinstance(flt, dict) or (
        tpi is not None and not isinstance(tpi, str)):
        raise MatrixError(400, "M_BAD_JSON", "Malformed publicRooms request")
    term = flt.get("generic_search_term")
    return ok(await request.app[FEDERATION].directory.public_rooms(
        limit, since, term if isinstance(term, str) else None, _flag(body.get("include_all_networks")), tpi,
    ))


@routes.get(V1 + "/query/directory")
async def query_directory(request: web.Request) -> web.Response:
    """GET /query/directory?room_alias="""
    return ok(await request.app[FEDERATION].directory.local_alias(parse_query(request, DirectoryQuery).room_alias))


@attrs.frozen
class HierarchyQuery:
    suggested_only: bool = False


@routes.get(V1 + "/hierarchy/{room_id}")
async def hierarchy(request: web.Request) -> web.Response:
    """GET /hierarchy/{roomId}?suggested_only (spec: server-server API, "Spaces")."""
    query = parse_query(request, HierarchyQuery)
    return ok(await request.app[FEDERATION].spaces.hierarchy_for_server(
        request[ORIGIN], request.match_info["room_id"], query.suggested_only,
    ))


@routes.put(V1 + "/invite/{room_id}/{event_id}")
async def invite_v1(request: web.Request) -> web.Response:
    """PUT /v1/invite/{roomId}/{eventId}: the event itself is the body, the stripped state
    rides in unsigned.invite_room_state, and the API only serves rooms of versions 1-2
    (whose invites countersign alike, so "1" stands for both). Answers [200, {event}]."""
    body = await _body(request)
    if not isinstance(body, dict):
        raise MatrixError(400, "M_BAD_JSON", "The body must be the invite event")
    unsigned = body.get("unsigned") if isinstance(body.get("unsigned"), dict) else {}
    v2_body = {"event": body, "room_version": "1", "invite_room_state": unsigned.get("invite_room_state", [])}
    signed = await request.app[FEDERATION].rooms.on_invite(
        request[ORIGIN], request.match_info["room_id"], request.match_info["event_id"], v2_body,
    )
    return ok([200, signed])


@routes.get(V1 + "/timestamp_to_event/{room_id}")
async def timestamp_to_event(request: web.Request) -> web.Response:
    """GET /timestamp_to_event/{roomId}?ts&dir"""
    direction = request.query.get("dir")
    try:
        ts = int(request.query.get("ts", ""))
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "ts must be an integer") from None
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "dir must be 'f' or 'b'")
    return ok(await request.app[FEDERATION].rooms.timestamp_to_event(
        request[ORIGIN], request.match_info["room_id"], ts, direction == "f",
    ))
