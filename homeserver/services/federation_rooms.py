"""Rooms across servers: what we serve to peers (make/send join and leave, invites,
state, backfill, missing events, queries) and what our users ask of peers."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.core import auth_rules
from homeserver.core.errors import AuthError, MatrixError, forbidden, not_found
from homeserver.core.events import Event, compute_event_id, event_from_pdu, hash_and_sign_pdu
from homeserver.core.ids import server_of
from homeserver.core.redaction import redact_pdu
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.core.signing import SigningKey, sign_json
from homeserver.services.clock import now_ms
from homeserver.services.events import EventService
from homeserver.services.federation_events import FederationEventHandler, PduRejected
from homeserver.services.formatting import stripped_state
from homeserver.services.ports import FederationClientPort, FederationRequestError, KeyringPort
from homeserver.services.remote_events import RemoteEvents, RoomHead
from storage.stores.events import NewRoom
from storage.stores.rooms import RoomStore
from storage.stores.users import UserStore

log = logging.getLogger(__name__)

INVITE_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.topic",
    "m.room.canonical_alias", "m.room.encryption",
)
MAX_BACKFILL = 100


class FederationRooms:
    def __init__(
        self, *, server_name: str, signing_key: SigningKey, events: EventService, remote: RemoteEvents,
        rooms: RoomStore,
        users: UserStore, handler: FederationEventHandler, client: FederationClientPort,
        keyring: KeyringPort,
    ) -> None:
        self.server_name = server_name
        self._key = signing_key
        self._events = events
        self._remote = remote
        self._rooms = rooms
        self._users = users
        self._handler = handler
        self._client = client
        self._keyring = keyring

    # == serving other servers ====================================================

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
        if membership == "join" and head.room_version not in versions:
            raise MatrixError(
                400, "M_INCOMPATIBLE_ROOM_VERSION", "Your server does not support this room version",
                room_version=head.room_version,
            )
        content = {"membership": membership}
        keys = auth_rules.auth_types_for_event(head.room_version, "m.room.member", user_id, user_id, content)
        template = {
            "room_id": room_id, "sender": user_id, "state_key": user_id, "type": "m.room.member",
            "content": content, "origin_server_ts": now_ms(), "depth": head.max_depth + 1,
            "prev_events": list(head.extremities), "auth_events": [head.state[k] for k in keys if k in head.state],
        }
        if membership == "join":
            # Refuse early what the join itself would fail (banned, invite-only...).
            probe = Event("$probe", template, head.room_version)
            state = await self._events.state_events({k: head.state[k] for k in keys if k in head.state})
            try:
                auth_rules.check_auth_rules(head.room_version, probe, state)
            except AuthError as e:
                raise forbidden(e.error) from None
        return {"event": template, "room_version": head.room_version}

    async def send_membership(
        self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str,
    ) -> dict[str, Any]:
        """send_join / send_leave (v2): accept the signed event, answer with the room state."""
        head = await self._resident_head(room_id)
        await self._check_acl(origin, room_id)
        if not isinstance(pdu, dict):
            raise MatrixError(400, "M_BAD_JSON", "Event must be an object")
        try:
            event = await self._handler.check_pdu(head.room_version, pdu)
        except PduRejected as e:
            raise forbidden(str(e)) from None
        if event.event_id != event_id:
            raise MatrixError(400, "M_BAD_JSON", "Event id does not match the event")
        if (event.type != "m.room.member" or event.membership != membership or event.room_id != room_id
                or event.state_key != event.sender or server_of(event.sender) != origin):
            raise forbidden(f"Not a {membership} event of a user of {origin}")
        async with self._events.lock(room_id):
            before = (await self._events.room_head(room_id) or head).state
            try:
                await self._handler._process_locked(origin, head.room_version, event, fetch_missing=True)
            except PduRejected as e:
                raise forbidden(str(e)) from None
        stored = await self._events.get_event(event_id)
        if stored is None or stored.soft_failed:
            raise forbidden("The event was not accepted")
        if membership == "leave":
            return {}
        state_pdus = [se.event.pdu for se in (await self._events.get_events(before.values())).values()]
        chain = await self.auth_chain([*before.values(), event_id])
        return {
            "origin": self.server_name, "state": state_pdus, "auth_chain": chain,
            "event": stored.event.pdu, "members_omitted": False,
            "servers_in_room": sorted({server_of(u) for u, m in head.members.items() if m == "join"}),
        }

    async def auth_chain(self, event_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Every event reachable through auth_events, as PDUs."""
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
            frontier = nxt - set(seen)
            start = set()
        return list(seen.values())

    async def on_invite(self, origin: str, room_id: str, event_id: str, body: Any) -> dict[str, Any]:
        """PUT /v2/invite: countersign an invite for one of our users and keep it."""
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
        signed = sign_json(event.pdu, self.server_name, self._key)
        stripped = body.get("invite_room_state") or []
        kept = dict(signed, unsigned={**signed.get("unsigned", {}), "invite_room_state": stripped})
        await self._remote.persist_outliers(
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
        if se is None or se.event.room_id != room_id or se.state_before is None:
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
                if eid in out or se.outlier or len(out) >= limit:
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

    # == our users acting in rooms on other servers =================================

    async def join_remote(self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]) -> None:
        errors: list[str] = []
        for server in dict.fromkeys(s for s in servers if s != self.server_name):
            try:
                await self._join_via(server, user_id, room_id, content)
                return
            except FederationRequestError as e:
                if e.status in (400, 403, 404) and e.errcode != "M_UNRECOGNIZED":
                    raise MatrixError(e.status, e.errcode, e.message) from None
                errors.append(f"{server}: {e}")
            except PduRejected as e:
                errors.append(f"{server}: {e}")
        raise MatrixError(404, "M_NOT_FOUND", "No server could join us to the room: " + "; ".join(errors) if errors else "No server to join the room through")

    async def _join_via(self, server: str, user_id: str, room_id: str, content: dict[str, Any]) -> None:
        made = await self._client.request(
            "GET", server, f"/_matrix/federation/v1/make_join/{room_id}/{user_id}",
            query={"ver": list(KNOWN_ROOM_VERSIONS)},
        )
        version = made.get("room_version", "1") if isinstance(made, dict) else "1"
        if version not in KNOWN_ROOM_VERSIONS or not isinstance(made.get("event"), dict):
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", f"Unsupported room version {version}")
        template = dict(made["event"])
        template.update({
            "origin_server_ts": now_ms(), "sender": user_id, "state_key": user_id,
            "type": "m.room.member", "room_id": room_id,
            "content": {**template.get("content", {}), **content, "membership": "join"},
        })
        for key in ("hashes", "signatures", "unsigned", "event_id"):
            template.pop(key, None)
        signed = hash_and_sign_pdu(version, template, self.server_name, self._key)
        join = event_from_pdu(version, signed)
        resp = await self._client.request(
            "PUT", server, f"/_matrix/federation/v2/send_join/{room_id}/{join.event_id}", body=signed,
        )
        if not isinstance(resp, dict):
            raise PduRejected("bad send_join response")
        await self._handler.store_outliers(version, resp.get("auth_chain", []))
        state_events = await self._handler.store_outliers(version, resp.get("state", []))
        state = {e.state_tuple: e.event_id for e in state_events if e.is_state}
        keys = auth_rules.auth_types_for_event(version, join.type, join.sender, join.state_key, join.content)
        auth_state = await self._events.state_events({k: state[k] for k in keys if k in state})
        try:
            auth_rules.check_auth_rules(version, join, auth_state)
        except AuthError as e:
            raise PduRejected(f"our join does not pass auth against the room state: {e.error}") from None
        async with self._events.lock(room_id):
            if await self._events.get_event(join.event_id) is None:
                creator = ""
                create = state.get(("m.room.create", ""))
                if create:
                    ce = await self._events.get_event(create)
                    creator = ce.event.sender if ce else ""
                await self._remote.persist_received(
                    room_id, join, state, before_group=None,
                    new_room=NewRoom(room_id, version, creator, now_ms()),
                )

    async def invite_countersign(self, event: Event, room_version: str) -> dict[str, Any]:
        """Ask the invitee's server to sign our invite (PUT /v2/invite)."""
        head = await self._events.room_head(event.room_id)
        stripped: list[dict[str, Any]] = []
        if head is not None:
            wanted = {k: v for k, v in head.state.items() if k[0] in INVITE_STATE_TYPES and k[1] == ""}
            stripped = stripped_state(list((await self._events.state_events(wanted)).values()))
        target = event.state_key or ""
        try:
            resp = await self._client.request(
                "PUT", server_of(target), f"/_matrix/federation/v2/invite/{event.room_id}/{event.event_id}",
                body={"event": event.pdu, "room_version": room_version, "invite_room_state": stripped},
            )
        except FederationRequestError as e:
            raise MatrixError(e.status if e.status >= 400 else 502, e.errcode or "M_UNKNOWN", f"Invite refused: {e.message}") from None
        signed = resp.get("event") if isinstance(resp, dict) else None
        if not isinstance(signed, dict):
            raise MatrixError(502, "M_UNKNOWN", "Bad invite response")
        # Keep our event exactly, adding only the invitee server's signature.
        theirs = signed.get("signatures", {}).get(server_of(target))
        if not theirs:
            raise MatrixError(502, "M_UNKNOWN", "The invitee's server did not sign the invite")
        merged = dict(event.pdu)
        merged["signatures"] = {**event.pdu.get("signatures", {}), server_of(target): theirs}
        await self._keyring.verify_json(redact_pdu(room_version, merged), server_of(target), event.origin_server_ts)
        return merged

    async def leave_remote(self, user_id: str, room_id: str, servers: Sequence[str]) -> None:
        """Reject an invite (or leave a room we hold no state for) through a resident server."""
        last: Exception | None = None
        for server in dict.fromkeys(s for s in servers if s != self.server_name):
            try:
                made = await self._client.request(
                    "GET", server, f"/_matrix/federation/v1/make_leave/{room_id}/{user_id}",
                )
                version = made.get("room_version", "10")
                template = dict(made["event"])
                template.update({"origin_server_ts": now_ms(), "sender": user_id, "state_key": user_id})
                for key in ("hashes", "signatures", "unsigned", "event_id"):
                    template.pop(key, None)
                signed = hash_and_sign_pdu(version, template, self.server_name, self._key)
                leave = event_from_pdu(version, signed)
                await self._client.request(
                    "PUT", server, f"/_matrix/federation/v2/send_leave/{room_id}/{leave.event_id}", body=signed,
                )
                await self._remote.persist_outliers([leave], NewRoom(room_id, version, "", now_ms()), invite_for=user_id)
                return
            except (FederationRequestError, KeyError, TypeError) as e:
                last = e
        raise MatrixError(502, "M_UNKNOWN", f"Could not leave the room: {last}")

    async def backfill_from_peers(self, room_id: str, earliest: Sequence[str], limit: int) -> int:
        head = await self._events.room_head(room_id)
        if head is None:
            return 0
        servers = sorted({server_of(u) for u, m in head.members.items() if m == "join"} - {self.server_name})
        for server in servers:
            try:
                resp = await self._client.request(
                    "GET", server, f"/_matrix/federation/v1/backfill/{room_id}",
                    query={"v": list(earliest), "limit": str(limit)},
                )
            except FederationRequestError as e:
                log.info("backfill from %s failed: %s", server, e)
                continue
            good = []
            for pdu in resp.get("pdus", []) if isinstance(resp, dict) else []:
                if isinstance(pdu, dict) and pdu.get("room_id") == room_id:
                    try:
                        good.append(await self._handler.check_pdu(head.room_version, pdu))
                    except PduRejected:
                        continue
            stored = await self._remote.persist_backfilled(good)
            if stored:
                return len(stored)
        return 0

    async def _query(self, kind: str, subject: str, param: str, missing: str) -> dict[str, Any]:
        """GET /query/{kind} on the subject's own server; 404 there is 404 here."""
        server = server_of(subject)
        try:
            resp = await self._client.request(
                "GET", server, f"/_matrix/federation/v1/query/{kind}", query={param: subject},
            )
        except FederationRequestError as e:
            if e.status == 404:
                raise not_found(missing) from None
            raise MatrixError(502, "M_UNKNOWN", f"Could not reach {server}") from None
        if not isinstance(resp, dict):
            raise not_found(missing)
        return resp

    async def query_profile(self, user_id: str) -> dict[str, Any]:
        resp = await self._query("profile", user_id, "user_id", "Profile not found")
        return {k: resp[k] for k in ("displayname", "avatar_url") if isinstance(resp.get(k), str)}

    async def query_alias(self, alias: str) -> dict[str, Any]:
        resp = await self._query("directory", alias, "room_alias", "Room alias not found")
        if not isinstance(resp.get("room_id"), str):
            raise not_found("Room alias not found")
        return {"room_id": resp["room_id"], "servers": list(resp.get("servers") or [server_of(alias)])}

