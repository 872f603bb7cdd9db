"""Rooms: create, membership, state, send, redact, read."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from aiohttp import web

from client_api.http import (
    VERSIONED,
    cs,
    json_body,
    parse_body,
    parse_query,
    rate_limit,
    requester,
    services,
    validate,
)
from homeserver.core import ids
from homeserver.core.errors import MatrixError, too_large
from homeserver.core.ids import normalize_user_id
from homeserver.http.responses import ok
from homeserver.services.filtering import EventFilter
from homeserver.services.formatting import bare_client_event

routes = web.RouteTableDef()

Membership = Literal["invite", "join", "knock", "leave", "ban"]


@attrs.frozen
class Invite3pid:
    id_server: str
    id_access_token: str
    medium: str
    address: str


@attrs.frozen
class InitialStateEvent:
    type: str
    content: dict[str, Any]
    state_key: str = ""


@attrs.frozen
class CreateRoomBody:
    """POST /createRoom (spec: "Creation")."""
    visibility: Literal["public", "private"] | None = None
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: list[str] = attrs.field(factory=list)
    invite_3pid: list[Invite3pid] = attrs.field(factory=list)
    # Any value the server does not support, a number included, is M_UNSUPPORTED_ROOM_VERSION
    # (spec "Creation"), which the service answers.
    room_version: Any = None
    creation_content: dict[str, Any] | None = None
    initial_state: list[InitialStateEvent] = attrs.field(factory=list)
    preset: Literal["private_chat", "public_chat", "trusted_private_chat"] | None = None
    is_direct: bool = False
    power_level_content_override: dict[str, Any] | None = None


@attrs.frozen
class ReasonBody:
    """join, leave and redact: an optional reason."""
    reason: str | None = None


@attrs.frozen
class MembershipBody:
    """invite, kick, ban, unban."""
    user_id: str
    reason: str | None = None


@attrs.frozen
class JoinQuery:
    via: list[str] = attrs.field(factory=list)
    server_name: list[str] = attrs.field(factory=list)


@attrs.frozen
class StateQuery:
    format: Literal["content", "event"] = "content"


@attrs.frozen
class MembersQuery:
    membership: Membership | None = None
    not_membership: Membership | None = None
    at: str | None = None


@attrs.frozen
class MessagesQuery:
    dir: Literal["b", "f"] = "b"
    from_: str | None = None
    to: str | None = None
    limit: int = 10
    filter: str | None = None


def _refuse_oversized_event(request: web.Request) -> None:
    """A body over the event size limit cannot become an event: refuse before any work."""
    if request.content_length is not None and request.content_length > services(request).max_event_bytes:
        raise too_large("Event too large")


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not ids.is_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    return room_id


@routes.post(cs("/createRoom"))
async def create_room(request: web.Request) -> web.Response:
    """POST /createRoom"""
    req = await requester(request)
    body = await json_body(request)
    validate(body, CreateRoomBody)  # the service reads the checked object as the spec names it
    await rate_limit(request, "rc_room_creation", req)  # the service reads the checked object as the spec names it
    return ok({"room_id": await services(request).rooms.create_room(req, body)})


async def _join_limit(request: web.Request, room: str) -> str:
    """Synapse's two join limits: rooms we are in, and joins that go over federation."""
    return "rc_joins.local" if await services(request).rooms.join_is_local(room) else "rc_joins.remote"


@routes.post(cs("/join/{room:[^/]+}"))
async def join_by_id_or_alias(request: web.Request) -> web.Response:
    """POST /join/{roomIdOrAlias}"""
    req = await requester(request)
    body = await parse_body(request, ReasonBody, allow_empty=True)
    query = parse_query(request, JoinQuery)
    await rate_limit(request, await _join_limit(request, request.match_info["room"]), req)
    room_id = await services(request).rooms.join(
        req, request.match_info["room"], body.reason, query.via + query.server_name,
    )
    return ok({"room_id": room_id})


@routes.post(cs("/knock/{room:[^/]+}"))
async def knock(request: web.Request) -> web.Response:
    """POST /knock/{roomIdOrAlias}?via= {reason}"""
    req = await requester(request)
    body = await parse_body(request, ReasonBody, allow_empty=True)
    query = parse_query(request, JoinQuery)
    room_id = await services(request).rooms.knock(
        req, request.match_info["room"], body.reason, query.via + query.server_name,
    )
    return ok({"room_id": room_id})


@routes.post(cs("/rooms/{room_id}/join"))
async def join(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/join"""
    req = await requester(request)
    body = await parse_body(request, ReasonBody, allow_empty=True)
    await rate_limit(request, await _join_limit(request, _room_id(request)), req)
    room_id = await services(request).rooms.join(req, _room_id(request), body.reason)
    return ok({"room_id": room_id})


@routes.post(cs("/rooms/{room_id}/leave"))
async def leave(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/leave"""
    req = await requester(request)
    body = await parse_body(request, ReasonBody, allow_empty=True)
    await services(request).rooms.leave(req, _room_id(request), body.reason)
    return ok()


@routes.post(cs("/rooms/{room_id}/forget"))
async def forget(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/forget"""
    req = await requester(request)
    await services(request).rooms.forget(req, _room_id(request))
    return ok()


_MEMBERSHIP_ACTIONS = {"invite": "invite", "kick": "leave", "ban": "ban", "unban": "leave"}


@routes.post(cs("/rooms/{room_id}/{action:(?:invite|kick|ban|unban)}"))
async def change_membership(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/invite|kick|ban|unban {user_id, reason?}"""
    req = await requester(request)
    body = await parse_body(request, MembershipBody)
    target = body.user_id
    action = request.match_info["action"]
    rooms = services(request).rooms
    room_id = _room_id(request)
    if action == "invite":
        await rate_limit(request, "rc_invites.per_room", req, key=f"{req.user_id}|{room_id}")
        await rate_limit(request, "rc_invites.per_user", req, key=target)
    if action == "unban":
        head = await rooms.head_or_404(room_id)
        if head.members.get(normalize_user_id(target, rooms.server_name)) != "ban":
            return ok()
    await rooms.set_membership(req, room_id, target, _MEMBERSHIP_ACTIONS[action], body.reason)
    return ok()


@routes.get(cs("/joined_rooms"))
async def joined_rooms(request: web.Request) -> web.Response:
    """GET /joined_rooms"""
    req = await requester(request)
    return ok({"joined_rooms": await services(request).rooms.joined_rooms(req.user_id)})


@routes.put(cs("/rooms/{room_id}/send/{event_type}/{txn_id}"))
async def send(request: web.Request) -> web.Response:
    """PUT /rooms/{roomId}/send/{eventType}/{txnId} (idempotent per device and txn id)"""
    _refuse_oversized_event(request)
    req = await requester(request)
    body = await json_body(request)
    await rate_limit(request, "rc_message", req)
    event_id = await services(request).rooms.send(
        req, _room_id(request), request.match_info["event_type"], body,
        txn_id=request.match_info["txn_id"],
    )
    return ok({"event_id": event_id})


@routes.post(cs("/rooms/{room_id}/send/{event_type}"))
async def send_post(request: web.Request) -> web.Response:
    """POST /rooms/{roomId}/send/{eventType} (legacy, not idempotent)"""
    req = await requester(request)
    body = await json_body(request)
    await rate_limit(request, "rc_message", req)
    event_id = await services(request).rooms.send(req, _room_id(request), request.match_info["event_type"], body)
    return ok({"event_id": event_id})


@routes.put(cs("/rooms/{room_id}/redact/{event_id}/{txn_id}"))
async def redact(request: web.Request) -> web.Response:
    """PUT /rooms/{roomId}/redact/{eventId}/{txnId} {reason?}"""
    req = await requester(request)
    body = await parse_body(request, ReasonBody, allow_empty=True)
    await rate_limit(request, "rc_message", req)
    content: dict[str, Any] = {}
    if body.reason is not None:
        content["reason"] = body.reason
    event_id = await services(request).rooms.send(
        req, _room_id(request), "m.room.redaction", content, txn_id=request.match_info["txn_id"],
        redacts=request.match_info["event_id"],
    )
    return ok({"event_id": event_id})


def _state_path_key(request: web.Request) -> tuple[str, str]:
    return request.match_info["event_type"], request.match_info.get("state_key", "")


@routes.put(cs("/rooms/{room_id}/state/{event_type}"))
@routes.put(VERSIONED + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
async def put_state(request: web.Request) -> web.Response:
    """PUT /rooms/{roomId}/state/{eventType}/{stateKey}"""
    _refuse_oversized_event(request)
    req = await requester(request)
    body = await json_body(request)
    event_type, state_key = _state_path_key(request)
    event_id = await services(request).rooms.send(req, _room_id(request), event_type, body, state_key=state_key)
    return ok({"event_id": event_id})


@routes.get(cs("/rooms/{room_id}/state/{event_type}"))
@routes.get(VERSIONED + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
async def get_state_event(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/state/{eventType}/{stateKey} -> content (or the event with format=event)"""
    req = await requester(request)
    event_type, state_key = _state_path_key(request)
    svc = services(request)
    event = await svc.rooms.state_event(req, _room_id(request), event_type, state_key)
    stored = await svc.events.get_event(event.event_id)
    formatted = (await svc.timeline.format([stored], req))[0] if stored else bare_client_event(event)
    if parse_query(request, StateQuery).format == "event":
        return ok(formatted)
    return ok(formatted["content"])


@routes.get(cs("/rooms/{room_id}/state"))
async def get_state(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/state"""
    req = await requester(request)
    svc = services(request)
    state = await svc.rooms.current_state(req, _room_id(request))
    stored = await svc.events.get_events(e.event_id for e in state)
    return ok(await svc.timeline.format(list(stored.values()), req))


@routes.get(cs("/rooms/{room_id}/members"))
async def members(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/members?membership=&not_membership="""
    req = await requester(request)
    svc = services(request)
    query = parse_query(request, MembersQuery)
    events = await svc.rooms.members(req, _room_id(request))
    want, not_want = query.membership, query.not_membership
    events = [
        e for e in events
        if (want is None or e.membership == want) and (not_want is None or e.membership != not_want)
    ]
    stored = await svc.events.get_events(e.event_id for e in events)
    return ok({"chunk": await svc.timeline.format(list(stored.values()), req)})


@routes.get(cs("/rooms/{room_id}/joined_members"))
async def joined_members(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/joined_members"""
    req = await requester(request)
    events = await services(request).rooms.members(req, _room_id(request))
    # Spec: both fields are optional strings; a member without a name or avatar has none
    # (not null, which the spec's schema does not allow).
    joined = {
        e.state_key: {
            out: e.content[key] for out, key in (("display_name", "displayname"), ("avatar_url", "avatar_url"))
            if isinstance(e.content.get(key), str)
        }
        for e in events if e.membership == "join"
    }
    return ok({"joined": joined})


@routes.get(cs("/rooms/{room_id}/event/{event_id}"))
async def get_event(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/event/{eventId}"""
    req = await requester(request)
    return ok(await services(request).timeline.get_event(req, _room_id(request), request.match_info["event_id"]))


@routes.get(cs("/rooms/{room_id}/messages"))
async def messages(request: web.Request) -> web.Response:
    """GET /rooms/{roomId}/messages?dir=b|f&from=&to=&limit=&filter="""
    req = await requester(request)
    query = parse_query(request, MessagesQuery)
    flt = EventFilter.from_query(query.filter)
    return ok(await services(request).timeline.messages(
        req, _room_id(request), query.dir, query.from_, query.to, max(query.limit, 0), flt,
    ))
