"""Rooms across servers, the part that serves peers: make/send join and leave,
invites, state, event auth, backfill and missing events (spec: Server-Server API,
"Joining Rooms", "Inviting to a room", "Backfilling and retrieving missing events").
What our users ask of peers is remote_rooms.py."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.core import auth_rules
from homeserver.core.errors import AuthError, MatrixError, forbidden, not_found
from homeserver.core.events import Event, compute_event_id, countersign_pdu, event_from_pdu
from homeserver.core.ids import server_of
from homeserver.core.records import NewRoom
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, get_room_version
from homeserver.core.signing import SigningKey
from homeserver.core.state_groups import StateMap
from homeserver.services.clock import now_ms
from homeserver.services.federation_events import FederationEventHandler, PduRejected
from homeserver.services.formatting import stripped_state
from homeserver.services.reader import EventReader
from homeserver.services.remote_rooms import INVITE_STATE_TYPES
from homeserver.services.restricted import restricted_authoriser
from homeserver.services.room_heads import RoomHead
from homeserver.services.writer import RoomWriterPort
from storage.stores.users import UserStore

log = logging.getLogger(__name__)

MAX_BACKFILL = 100


class FederationRooms:
    def __init__(
        self, *, server_name: str, signing_key: SigningKey, events: EventReader,
        writer: RoomWriterPort, users: UserStore, handler: FederationEventHandler,
    ) -> None:
        self.server_name = server_name
        self._key = signing_key
        self._events = events
        self._writer = writer
        self._users = users
        self._handler = handler

    async def _resident_head(self, room_id: str) -> RoomHead:
        head = await self._events.room_head(room_id)
        if head is None or not head.joined_local(self.server_name):
            raise not_found("Unknown room")
        return head

    async def _check_acl(self, origin: str, room_id: str) -> None:
        if not await self._events.server_allowed(room_id, origin):
            raise forbidden("Server is banned from this room")

    async def _may_see_room(self, origin: str, head: RoomHead) -> None:
        """A server sees a room's events if one of its users is or was in it (and the ACL allows it)."""
        await self._check_acl(origin, head.room_id)
        if any(server_of(u) == origin for u in head.members):
            return
        hv = await self._events.current_state_event(head.room_id, ("m.room.history_visibility", ""))
        if hv is None or hv.content.get("history_visibility") != "world_readable":
            raise forbidden("Your server is not in this room")

    async def make_membership(
        self, origin: str, room_id: str, user_id: str, membership: str, versions: Sequence[str],
    ) -> dict[str, Any]:
        """make_join / make_leave: an unsigned event template the remote server fills in."""
        if server_of(user_id) != origin:
            raise forbidden("A server can only make membership events for its own users")
        head = await self._resident_head(room_id)
        await self._check_acl(origin, room_id)
        if membership == "knock" and not get_room_version(head.room_version).knock_join_rule:
            # make_knock: knocking exists from room version 7.
            raise MatrixError(
                400, "M_INCOMPATIBLE_ROOM_VERSION", "This room's version does not support knocking",
                room_version=head.room_version,
            )
        if membership in ("join", "knock") and head.room_version not in versions:
            raise MatrixError(
                400, "M_INCOMPATIBLE_ROOM_VERSION", "Your server does not support this room version",
                room_version=head.room_version,
            )
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            # Spec "Restricted rooms": we vouch for a join our allow list admits.
            authoriser = await restricted_authoriser(self._events, self.server_name, head, user_id)
            if authoriser is not None:
                content["join_authorised_via_users_server"] = authoriser
        keys = auth_rules.auth_types_for_event(head.room_version, "m.room.member", user_id, user_id, content)
        # v12: the create event is not cited (the room id names it), but auth needs it.
        selected = auth_rules.auth_event_selection(
            head.room_version, "m.room.member", user_id, user_id, content,
        )
        # Spec make_join/make_leave/make_knock: the template names the resident server as
        # `origin` (required by the response schema; Synapse sends it too).
        template = {
            "room_id": room_id, "sender": user_id, "state_key": user_id, "type": "m.room.member",
            "origin": self.server_name,
            "content": content, "origin_server_ts": now_ms(), "depth": head.max_depth + 1,
            "prev_events": list(head.extremities),
            "auth_events": [head.state[k] for k in selected if k in head.state],
        }
        if get_room_version(head.room_version).event_format is EventFormat.V1:
            # rooms/v1 event format: references are [event_id, {hashes}] pairs.
            refs = await self._events.get_events([*template["prev_events"], *template["auth_events"]])

            def pair(event_id: str) -> list[Any]:
                found = refs.get(event_id)
                return [event_id, dict(found.event.pdu.get("hashes") or {}) if found else {}]

            template["prev_events"] = [pair(i) for i in template["prev_events"]]
            template["auth_events"] = [pair(i) for i in template["auth_events"]]
        if membership in ("join", "knock"):
            # Refuse early what the join itself would fail (banned, invite-only...); the
            # authorising signature is ours to add at send_join.
            probe = Event("$probe", template, head.room_version)
            state = await self._events.state_events({k: head.state[k] for k in keys if k in head.state})
            try:
                auth_rules.check_auth_rules(
                    head.room_version, probe, state, verify_authoriser=lambda _e, _s: True,
                )
            except AuthError as e:
                raise forbidden(e.error) from None
        return {"event": template, "room_version": head.room_version}

    async def send_membership(
        self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str,
        *, omit_members: bool = False,
    ) -> dict[str, Any]:
        """send_join / send_leave (v2): accept the signed event, answer with the room state.
        ``omit_members`` (send_join, spec v1.6 / MSC3706): the joiner accepts a partial
        state without membership events; see ``_join_response``."""
        head = await self._resident_head(room_id)
        await self._check_acl(origin, room_id)
        if not isinstance(pdu, dict):
            raise MatrixError(400, "M_BAD_JSON", "Event must be an object")
        content = pdu.get("content")
        authoriser = content.get("join_authorised_via_users_server") if isinstance(content, dict) else None
        if membership == "join" and isinstance(authoriser, str) and server_of(authoriser) == self.server_name:
            # Spec "send_join": the resident server named as authoriser signs the join, and
            # only when its allow list still admits the user.
            joiner = pdu.get("state_key") if isinstance(pdu.get("state_key"), str) else ""
            admissible = await restricted_authoriser(self._events, self.server_name, head, joiner)
            if admissible is None and head.members.get(joiner) not in ("invite", "join"):
                raise forbidden("We cannot authorise this join")
            pdu = countersign_pdu(head.room_version, pdu, self.server_name, self._key)
        try:
            event = await self._handler.check_pdu(head.room_version, pdu)
        except PduRejected as e:
            raise forbidden(str(e)) from None
        if event.event_id != event_id:
            raise MatrixError(400, "M_BAD_JSON", "Event id does not match the event")
        if (event.type != "m.room.member" or event.membership != membership or event.room_id != room_id
                or event.state_key != event.sender or server_of(event.sender) != origin):
            raise forbidden(f"Not a {membership} event of a user of {origin}")
        try:
            # As the resident server we pass the join/leave on to the room's other servers
            # (spec: send_join "the resident server ... sends the event to other servers").
            before = await self._handler.accept(origin, head.room_version, event, forward=True)
        except PduRejected as e:
            raise forbidden(str(e)) from None
        stored = await self._events.get_event(event_id)
        if stored is None or stored.soft_failed:
            raise forbidden("The event was not accepted")
        if membership == "leave":
            return {}
        if membership == "knock":
            # Spec "send_knock": the room's stripped state, for the knocker's client.
            wanted = {k: v for k, v in head.state.items() if k[0] in INVITE_STATE_TYPES and k[1] == ""}
            stripped = stripped_state(list((await self._events.state_events(wanted)).values()))
            return {"knock_room_state": stripped}
        return await self._join_response(head, before, event, stored.event.pdu, omit_members)

    async def _join_response(
        self, head: RoomHead, before: StateMap, join: Event, join_pdu: dict[str, Any], omit_members: bool,
    ) -> dict[str, Any]:
        """The send_join answer (https://spec.matrix.org/v1.19/server-server-api/#put_matrixfederationv2send_joinroomideventid).
        With ``omit_members``, the state leaves out m.room.member events, except — when the
        room has neither a name nor a canonical alias — those of the members a client would
        name it after (the heroes: up to five members but the joiner, as in /sync's room
        summary); the auth chain then leaves out what is already in ``state``. The joiner
        learns the rest later, and ``servers_in_room`` says whom to ask."""
        state = dict(before)
        if omit_members:
            named = ("m.room.name", "") in state or ("m.room.canonical_alias", "") in state
            members = sorted(
                u for u, m in head.members.items() if m in ("join", "invite") and u != join.sender
            )
            heroes = set() if named else set(members[:5])
            state = {k: v for k, v in state.items() if k[0] != "m.room.member" or k[1] in heroes}
        state_pdus = [se.event.pdu for se in (await self._events.get_events(state.values())).values()]
        chain = await self.auth_chain([*state.values(), join.event_id])
        if omit_members:
            returned = set(state.values())
            chain = [pdu for pdu in chain if compute_event_id(head.room_version, pdu) not in returned]
        return {
            "origin": self.server_name, "state": state_pdus, "auth_chain": chain,
            "event": join_pdu, "members_omitted": omit_members,
            "servers_in_room": sorted({server_of(u) for u, m in head.members.items() if m == "join"}),
        }

    async def timestamp_to_event(self, origin: str, room_id: str, ts: int, forwards: bool) -> dict[str, Any]:
        """GET /timestamp_to_event: the closest event we hold, if the peer may see the room."""
        head = await self._resident_head(room_id)
        await self._may_see_room(origin, head)
        se = await self._events.event_near_ts(room_id, ts, forwards)
        if se is None:
            raise not_found("No event found")
        return {"event_id": se.event.event_id, "origin_server_ts": se.event.origin_server_ts}

    async def auth_chain(self, event_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Every event reachable through auth_events (and v12's implied create event),
        as PDUs."""
        seen: dict[str, dict[str, Any]] = {}
        frontier = set(event_ids)
        start = set(frontier)
        while frontier:
            got = await self._events.get_events(frontier)
            nxt: set[str] = set()
            for eid, se in got.items():
                if eid not in start:
                    seen[eid] = se.event.pdu
                nxt.update(a for a in se.event.auth_event_ids if a not in seen)
                if se.event.type != "m.room.create" and (
                    get_room_version(se.event.room_version).room_id_is_create_hash
                ):
                    # rooms/v12: the create event authorises every event, uncited.
                    nxt.add(auth_rules.create_event_id_for_room(se.event.room_id))
            frontier = nxt - set(seen)
            start = set()
        return list(seen.values())

    async def on_invite(self, origin: str, room_id: str, event_id: str, body: Any) -> dict[str, Any]:
        """PUT /v2/invite: countersign an invite for one of our users and keep it."""
        await self._check_acl(origin, room_id)  # server ACLs cover invites too (spec: Server ACLs)
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            raise MatrixError(400, "M_BAD_JSON", "Missing event")
        version = body.get("room_version", "1")
        if version not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "Unsupported room version", room_version=version)
        pdu = body["event"]
        try:
            event = await self._handler.check_pdu(version, pdu)
        except PduRejected as e:
            raise forbidden(str(e)) from None
        target = event.state_key or ""
        if (event.event_id != event_id or event.room_id != room_id or event.type != "m.room.member"
                or event.membership != "invite" or server_of(event.sender) != origin):
            raise forbidden("Not an invite event from your server")
        if server_of(target) != self.server_name or await self._users.get_user(target) is None:
            raise not_found("Unknown user")
        signed = countersign_pdu(version, event.pdu, self.server_name, self._key)
        stripped = body.get("invite_room_state") or []
        kept = dict(signed, unsigned={**signed.get("unsigned", {}), "invite_room_state": stripped})
        await self._writer.append_outliers(
            [event_from_pdu(version, kept)], NewRoom(room_id, version, "", now_ms()), invite_for=target,
        )
        return {"event": signed}

    async def get_event(self, origin: str, event_id: str) -> dict[str, Any]:
        se = await self._events.get_event(event_id)
        if se is None or se.event.rejected:
            raise not_found("Unknown event")
        head = await self._events.room_head(se.event.room_id)
        if head is not None:
            await self._may_see_room(origin, head)
        return {"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": [se.event.pdu]}

    async def state_at(self, origin: str, room_id: str, event_id: str, ids_only: bool) -> dict[str, Any]:
        """State before `event_id` (our state groups), with its auth chain."""
        head = await self._resident_head(room_id)
        await self._may_see_room(origin, head)
        se = await self._events.get_event(event_id)
        # Outliers and rejected events have no state a peer may rely on (spec: M_NOT_FOUND).
        if (se is None or se.event.room_id != room_id or se.state_before is None
                or se.outlier or se.event.rejected):
            raise not_found("Unknown event")
        state = await self._events.state_at_group(se.state_before)
        if ids_only:
            chain = await self.auth_chain(state.values())
            return {
                "pdu_ids": list(state.values()),
                "auth_chain_ids": [compute_event_id(head.room_version, p) for p in chain],
            }
        events = await self._events.get_events(state.values())
        return {
            "pdus": [s.event.pdu for s in events.values()],
            "auth_chain": await self.auth_chain(state.values()),
        }

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        head = await self._resident_head(room_id)
        await self._may_see_room(origin, head)
        se = await self._events.get_event(event_id)
        if se is None or se.event.room_id != room_id:
            raise not_found("Unknown event")
        return {"auth_chain": await self.auth_chain([event_id])}

    async def backfill(self, origin: str, room_id: str, from_ids: Sequence[str], limit: int) -> dict[str, Any]:
        head = await self._resident_head(room_id)
        await self._may_see_room(origin, head)
        limit = max(1, min(limit, MAX_BACKFILL))
        out: dict[str, dict[str, Any]] = {}
        frontier = list(from_ids)
        while frontier and len(out) < limit:
            got = await self._events.get_events(frontier)
            frontier = []
            for eid, se in sorted(got.items(), key=lambda kv: -kv[1].event.depth):
                # Only events of the room asked about: a peer may name any event id.
                if eid in out or se.outlier or len(out) >= limit or se.event.room_id != room_id:
                    continue
                out[eid] = se.event.pdu
                frontier += [p for p in se.event.prev_event_ids if p not in out]
        return {"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": list(out.values())}

    async def missing_events(
        self, origin: str, room_id: str, earliest: Sequence[str], latest: Sequence[str], limit: int,
    ) -> dict[str, Any]:
        head = await self._resident_head(room_id)
        await self._may_see_room(origin, head)
        stop = set(earliest)
        found: dict[str, Event] = {}
        latest_events = await self._events.get_events(latest)
        frontier = [p for se in latest_events.values() for p in se.event.prev_event_ids]
        while frontier and len(found) < limit:
            got = await self._events.get_events(e for e in frontier if e not in stop and e not in found)
            frontier = []
            for eid, se in got.items():
                if len(found) >= limit or se.outlier:
                    continue
                found[eid] = se.event
                frontier += [p for p in se.event.prev_event_ids if p not in stop]
        ordered = sorted(found.values(), key=lambda e: e.depth)
        return {"events": [e.pdu for e in ordered]}
