"""Rooms across servers, the part that acts for our users: joining and leaving rooms
held by other servers, countersigned invites, backfill, profile and alias queries
(spec: Server-Server API, "Joining Rooms", "Inviting to a room", "Querying for
information"). The room, profile and timeline services receive it as RemoteRoomsPort;
with federation off they get NullRemoteRooms, which refuses as Matrix errors."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from homeserver.core import auth_rules
from homeserver.core.errors import AuthError, MatrixError, forbidden, not_found
from homeserver.core.events import (
    Event,
    event_from_pdu,
    hash_and_sign_pdu,
    with_legacy_event_id,
)
from homeserver.core.ids import server_of
from homeserver.core.records import NewRoom
from homeserver.core.redaction import redact_pdu
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from homeserver.core.signing import SigningKey
from homeserver.services.clock import now_ms
from homeserver.services.federation_events import FederationEventHandler, PduRejected
from homeserver.services.formatting import stripped_state
from homeserver.services.ports import FederationClientPort, FederationRequestError, KeyringPort
from homeserver.services.reader import EventReader
from homeserver.services.writer import RoomWriterPort

log = logging.getLogger(__name__)
# A dead server must not hold a rejection for the client's whole request timeout.
_LEAVE_TIMEOUT_S = 10.0
_DIRECTORY_TIMEOUT_S = 15.0

INVITE_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.topic",
    "m.room.canonical_alias", "m.room.encryption",
)


class RemoteRoomsPort(Protocol):
    @property
    def enabled(self) -> bool:
        """Federation is on: rooms may live on other servers."""

    async def join_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any],
    ) -> None: ...

    async def leave_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], invite_event_id: str | None = None,
    ) -> None:
        """Leave (reject an invite) through a resident server; with ``invite_event_id``, a
        rejection no server could carry is made locally instead (as Synapse does)."""

    async def knock_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any],
    ) -> None:
        """Knock through a resident server (make_knock / send_knock)."""

    async def invite_countersign(self, event: Event, room_version: str) -> dict[str, Any]:
        """The invite PDU with the invitee's server's signature added."""

    async def backfill_from_peers(self, room_id: str, earliest: Sequence[str], limit: int) -> int:
        """How many older events the room's other servers gave us."""

    async def query_profile(self, user_id: str) -> dict[str, Any]: ...

    async def query_alias(self, alias: str) -> dict[str, Any]: ...

    async def public_rooms(
        self, server: str, limit: int | None, since: str | None, search: str | None,
        include_all_networks: bool, third_party_instance_id: str | None,
    ) -> dict[str, Any]:
        """Another server's public room directory (federation /publicRooms)."""


class NullRemoteRooms:
    """Federation is off: every room and user is local; asking for others is refused."""

    enabled = False

    async def join_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any],
    ) -> None:
        raise not_found("Unknown room")

    async def leave_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], invite_event_id: str | None = None,
    ) -> None:
        raise forbidden("You are not in this room")

    async def knock_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any],
    ) -> None:
        raise not_found("Unknown room")

    async def invite_countersign(self, event: Event, room_version: str) -> dict[str, Any]:
        raise forbidden("Federation is disabled on this server")

    async def backfill_from_peers(self, room_id: str, earliest: Sequence[str], limit: int) -> int:
        return 0

    async def query_profile(self, user_id: str) -> dict[str, Any]:
        raise not_found("Profile not found")

    async def query_alias(self, alias: str) -> dict[str, Any]:
        raise not_found("Room alias not found")

    async def public_rooms(
        self, server: str, limit: int | None, since: str | None, search: str | None,
        include_all_networks: bool, third_party_instance_id: str | None,
    ) -> dict[str, Any]:
        raise not_found("Federation is disabled on this server")


class RemoteRooms:
    enabled = True

    def __init__(
        self, *, server_name: str, signing_key: SigningKey, events: EventReader,
        writer: RoomWriterPort, handler: FederationEventHandler, client: FederationClientPort,
        keyring: KeyringPort,
    ) -> None:
        self.server_name = server_name
        self._key = signing_key
        self._events = events
        self._writer = writer
        self._handler = handler
        self._client = client
        self._keyring = keyring

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
        template = with_legacy_event_id(version, template, self.server_name)
        signed = hash_and_sign_pdu(version, template, self.server_name, self._key)
        join = event_from_pdu(version, signed)
        resp = await self._client.request(
            "PUT", server, f"/_matrix/federation/v2/send_join/{room_id}/{join.event_id}", body=signed,
        )
        if not isinstance(resp, dict):
            raise PduRejected("bad send_join response")
        # Spec "send_join" `event`: a restricted join comes back signed by the authorising
        # server too; the same event (same id), which the room then holds.
        theirs = resp.get("event")
        if isinstance(theirs, dict) and signed["content"].get("join_authorised_via_users_server"):
            countersigned = event_from_pdu(version, theirs)
            if countersigned.event_id == join.event_id:
                join = countersigned
        await self._handler.store_outliers(version, resp.get("auth_chain", []))
        state_events = await self._handler.store_outliers(version, resp.get("state", []))
        state = {e.state_tuple: e.event_id for e in state_events if e.is_state}
        keys = auth_rules.auth_types_for_event(version, join.type, join.sender, join.state_key, join.content)
        auth_state = await self._events.state_events({k: state[k] for k in keys if k in state})
        try:
            auth_rules.check_auth_rules(version, join, auth_state)
        except AuthError as e:
            raise PduRejected(f"our join does not pass auth against the room state: {e.error}") from None
        async with self._writer.lock(room_id):
            if await self._events.get_event(join.event_id) is None:
                creator = ""
                create = state.get(("m.room.create", ""))
                if create:
                    ce = await self._events.get_event(create)
                    creator = ce.event.sender if ce else ""
                await self._writer.append_received(
                    room_id, join, state, before_group=None,
                    new_room=NewRoom(room_id, version, creator, now_ms()),
                )

    async def knock_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any],
    ) -> None:
        errors: list[str] = []
        for server in dict.fromkeys(s for s in servers if s != self.server_name):
            try:
                made = await self._client.request(
                    "GET", server, f"/_matrix/federation/v1/make_knock/{room_id}/{user_id}",
                    query={"ver": [v for v in KNOWN_ROOM_VERSIONS if get_room_version(v).knock_join_rule]},
                )
                version = made.get("room_version", "1") if isinstance(made, dict) else "1"
                if version not in KNOWN_ROOM_VERSIONS or not isinstance(made.get("event"), dict):
                    raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", f"Unsupported room version {version}")
                template = dict(made["event"])
                template.update({
                    "origin_server_ts": now_ms(), "sender": user_id, "state_key": user_id,
                    "type": "m.room.member", "room_id": room_id,
                    "content": {**template.get("content", {}), **content, "membership": "knock"},
                })
                for key in ("hashes", "signatures", "unsigned", "event_id"):
                    template.pop(key, None)
                signed = hash_and_sign_pdu(version, template, self.server_name, self._key)
                knock = event_from_pdu(version, signed)
                resp = await self._client.request(
                    "PUT", server, f"/_matrix/federation/v1/send_knock/{room_id}/{knock.event_id}", body=signed,
                )
                stripped = resp.get("knock_room_state") if isinstance(resp, dict) else None
                kept = dict(signed, unsigned={"knock_room_state": stripped if isinstance(stripped, list) else []})
                await self._writer.append_outliers(
                    [event_from_pdu(version, kept)], NewRoom(room_id, version, "", now_ms()), invite_for=user_id,
                )
                return
            except FederationRequestError as e:
                if e.status in (400, 403, 404) and e.errcode != "M_UNRECOGNIZED":
                    raise MatrixError(e.status, e.errcode, e.message) from None
                errors.append(f"{server}: {e}")
            except (KeyError, TypeError, ValueError) as e:
                errors.append(f"{server}: {e}")
        raise MatrixError(404, "M_NOT_FOUND", "No server could take the knock: " + "; ".join(errors))

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

    async def leave_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], invite_event_id: str | None = None,
    ) -> None:
        """Reject an invite (or leave a room we hold no state for) through a resident server.
        When none answers and this rejects an invite we hold, the rejection is made here:
        the invitee must be able to get rid of an invite to a room that is gone."""
        last: Exception | None = None
        for server in dict.fromkeys(s for s in servers if s != self.server_name):
            try:
                made = await self._client.request(
                    "GET", server, f"/_matrix/federation/v1/make_leave/{room_id}/{user_id}",
                    timeout=_LEAVE_TIMEOUT_S,
                )
                version = made.get("room_version", "10")
                template = dict(made["event"])
                template.update({"origin_server_ts": now_ms(), "sender": user_id, "state_key": user_id})
                for key in ("hashes", "signatures", "unsigned", "event_id"):
                    template.pop(key, None)
                template = with_legacy_event_id(version, template, self.server_name)
                signed = hash_and_sign_pdu(version, template, self.server_name, self._key)
                leave = event_from_pdu(version, signed)
                await self._client.request(
                    "PUT", server, f"/_matrix/federation/v2/send_leave/{room_id}/{leave.event_id}", body=signed,
                    timeout=_LEAVE_TIMEOUT_S,
                )
                await self._writer.append_outliers([leave], NewRoom(room_id, version, "", now_ms()), invite_for=user_id)
                return
            except (FederationRequestError, KeyError, TypeError, ValueError) as e:
                log.info("leave of %s through %s failed: %s", room_id, server, e)
                last = e
        if invite_event_id is not None and await self._reject_locally(user_id, room_id, invite_event_id):
            return
        raise MatrixError(502, "M_UNKNOWN", f"Could not leave the room: {last or 'no server to ask'}")

    async def _reject_locally(self, user_id: str, room_id: str, invite_event_id: str) -> bool:
        """An out-of-band leave after the invite, signed by us and kept as an outlier: the
        invite leaves /sync; the room's servers learn of it if they ever ask."""
        invite = await self._events.get_event(invite_event_id)
        if invite is None:
            return False
        record = invite.event.room_version
        template: dict[str, Any] = {
            "room_id": room_id, "type": "m.room.member", "sender": user_id, "state_key": user_id,
            "content": {"membership": "leave"}, "origin_server_ts": now_ms(),
            "prev_events": [invite_event_id], "auth_events": [invite_event_id],
            "depth": invite.event.depth + 1,
        }
        signed = hash_and_sign_pdu(record, template, self.server_name, self._key)
        leave = event_from_pdu(record, signed)
        await self._writer.append_outliers([leave], invite_for=user_id)
        return True

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
                # A v12 create event has no room_id: its id names the room instead.
                if isinstance(pdu, dict) and pdu.get("room_id", room_id) == room_id:
                    try:
                        event = await self._handler.check_pdu(head.room_version, pdu)
                    except PduRejected:
                        continue
                    if event.room_id == room_id:
                        good.append(event)
            stored = await self._writer.append_backfill(good)
            if stored:
                return len(stored)
        return 0

    async def _query(self, kind: str, subject: str, param: str, missing: str) -> dict[str, Any]:
        """GET /query/{kind} on the subject's own server; 404 there is 404 here, and so is a
        server we cannot reach or that answers with an error: the spec's profile and
        directory lookups answer 404 for what cannot be found (issue 18: never a 5xx for a
        remote failure)."""
        server = server_of(subject)
        try:
            resp = await self._client.request(
                "GET", server, f"/_matrix/federation/v1/query/{kind}", query={param: subject},
            )
        except FederationRequestError as e:
            if e.status == 404:
                raise not_found(missing) from None
            raise not_found(f"{missing}: could not reach {server or 'its server'} ({e})") from None
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

    async def public_rooms(
        self, server: str, limit: int | None, since: str | None, search: str | None,
        include_all_networks: bool, third_party_instance_id: str | None,
    ) -> dict[str, Any]:
        """POST /publicRooms when there is a search term (GET cannot carry one), else GET."""
        try:
            if search:
                body: dict[str, Any] = {"filter": {"generic_search_term": search}}
                if limit is not None:
                    body["limit"] = limit
                if since:
                    body["since"] = since
                if include_all_networks:
                    body["include_all_networks"] = True
                if third_party_instance_id:
                    body["third_party_instance_id"] = third_party_instance_id
                resp = await self._client.request(
                    "POST", server, "/_matrix/federation/v1/publicRooms", body=body, timeout=_DIRECTORY_TIMEOUT_S,
                )
            else:
                query: dict[str, str] = {}
                if limit is not None:
                    query["limit"] = str(limit)
                if since:
                    query["since"] = since
                if include_all_networks:
                    query["include_all_networks"] = "true"
                if third_party_instance_id:
                    query["third_party_instance_id"] = third_party_instance_id
                resp = await self._client.request(
                    "GET", server, "/_matrix/federation/v1/publicRooms", query=query, timeout=_DIRECTORY_TIMEOUT_S,
                )
        except FederationRequestError as e:
            if e.status == 404:
                raise not_found(f"{server} has no public room directory") from None
            # The spec's publicRooms documents no failure statuses; a directory that cannot be
            # had is "not found", as for a server without one (never a 5xx, issue 18).
            raise not_found(f"Could not get the room directory of {server} ({e})") from None
        if not isinstance(resp, dict) or not isinstance(resp.get("chunk"), list):
            raise not_found(f"{server} sent a malformed room directory")
        out: dict[str, Any] = {"chunk": [r for r in resp["chunk"] if isinstance(r, dict) and isinstance(r.get("room_id"), str)]}
        for key in ("next_batch", "prev_batch"):
            if isinstance(resp.get(key), str):
                out[key] = resp[key]
        if isinstance(resp.get("total_room_count_estimate"), int):
            out["total_room_count_estimate"] = resp["total_room_count_estimate"]
        return out
