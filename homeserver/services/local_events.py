"""Local events before they are written: build, authorise, sign.

The room writer calls this under the room's lock with a working copy of the
room head, which moves forward as each event is built (so several events sent
together, e.g. a new room's initial state, each see the ones before).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from homeserver.core import auth_rules
from homeserver.core.errors import AuthError, MatrixError, forbidden
from homeserver.core.events import (
    Event,
    event_from_pdu,
    hash_and_sign_pdu,
    validate_pdu,
    with_legacy_event_id,
)
from homeserver.core.room_versions import EventFormat, get_room_version
from homeserver.core.signing import SigningKey
from homeserver.core.state_groups import StateKey
from homeserver.services.reader import EventReader
from homeserver.services.room_heads import RoomHead


@attrs.frozen
class EventSpec:
    """What a client asks for; the service fills in everything a PDU needs."""

    type: str
    sender: str
    content: dict[str, Any]
    state_key: str | None = None
    redacts: str | None = None
    txn: tuple[str, str] | None = None  # (device_id, txn_id)


Countersign = Callable[[Event], Awaitable[dict[str, Any]]]


class InviteSigner(Protocol):
    async def invite_countersign(self, event: Event, room_version: str) -> dict[str, Any]: ...


@attrs.frozen
class InviteCountersign:
    """The countersign of an invite to a user of another server: a value rather than a
    closure, so the room's writer on another worker can ask the invitee's server itself."""

    remote: InviteSigner
    room_version: str

    async def __call__(self, event: Event) -> dict[str, Any]:
        return await self.remote.invite_countersign(event, self.room_version)


@attrs.frozen
class Built:
    event: Event
    spec: EventSpec
    replaces: str | None  # the state event it replaces


class LocalEventBuilder:
    def __init__(
        self, *, server_name: str, signing_key: SigningKey, reader: EventReader,
        recall_window_ms: int = 120_000, recall_windows_ms: Mapping[str, int] | None = None,
    ) -> None:
        self._last_create_ts = 0
        self.server_name = server_name
        self._key = signing_key
        self._reader = reader
        self.recall_window_ms = recall_window_ms
        # msgtype -> its own window (files may be recalled for longer than text).
        self.recall_windows_ms = dict(recall_windows_ms or {})

    async def build_all(
        self, work: RoomHead, specs: Sequence[EventSpec], now: int,
        countersign: Countersign | None = None,
    ) -> list[Built]:
        """Build, authorise and sign each event in turn, moving `work` past it."""
        rv = get_room_version(work.room_version)
        built: list[Built] = []
        state_cache: dict[str, Event] = {}
        hashes: dict[str, dict[str, Any]] = {}  # v1-v2 references carry the events' hashes
        for spec in specs:
            if rv.event_format is EventFormat.V1:
                await self._load_hashes(work, spec, hashes)
            event = self._build(work, spec, now, hashes)
            if event.type == "m.room.create" and rv.room_id_is_create_hash:
                work.room_id = event.room_id  # v12: the create event names the room
            hashes[event.event_id] = dict(event.pdu.get("hashes") or {})
            auth_state = await self._auth_state(work, event, state_cache)
            auth_rules.check_auth_rules(rv, event, auth_state)
            if event.type == "m.room.redaction":
                await self._check_redaction(work, event, auth_state)
            if countersign is not None:
                event = attrs.evolve(event, pdu=await countersign(event))
            replaces = work.state.get(event.state_tuple) if event.is_state else None
            if event.is_state:
                work.state[event.state_tuple] = event.event_id
                state_cache[event.event_id] = event
                if event.type == "m.room.member":
                    work.members[event.state_key or ""] = event.membership or "leave"
            work.extremities = [event.event_id]
            work.max_depth = event.depth
            built.append(Built(event, spec, replaces))
        return built

    async def _load_hashes(
        self, work: RoomHead, spec: EventSpec, hashes: dict[str, dict[str, Any]],
    ) -> None:
        rv = get_room_version(work.room_version)
        keys = auth_rules.auth_event_selection(rv, spec.type, spec.sender, spec.state_key, spec.content)
        wanted = [*work.extremities[-20:], *(work.state[k] for k in keys if k in work.state)]
        missing = [i for i in wanted if i not in hashes]
        for event_id, stored in (await self._reader.get_events(missing)).items():
            hashes[event_id] = dict(stored.event.pdu.get("hashes") or {})

    def _build(
        self, work: RoomHead, spec: EventSpec, now: int, hashes: dict[str, dict[str, Any]],
    ) -> Event:
        rv = get_room_version(work.room_version)
        prev = list(work.extremities[-20:])
        auth_keys = auth_rules.auth_event_selection(
            rv, spec.type, spec.sender, spec.state_key, spec.content,
        )
        auth_ids = [work.state[k] for k in auth_keys if k in work.state]
        pdu: dict[str, Any] = {
            "room_id": work.room_id, "sender": spec.sender, "type": spec.type,
            "content": spec.content, "origin_server_ts": now,
            "depth": min(work.max_depth + 1, 2**53 - 1),
            "prev_events": prev, "auth_events": auth_ids,
        }
        if spec.type == "m.room.create" and rv.room_id_is_create_hash:
            del pdu["room_id"]  # rooms/v12: the room id is derived from this event
            # Two rooms made alike in one millisecond (server notices, bulk creation) would
            # hash to one room id: this process's create events get distinct timestamps.
            pdu["origin_server_ts"] = self._last_create_ts = max(now, self._last_create_ts + 1)
        if rv.event_format is EventFormat.V1:
            # rooms/v1 event format: [id, hashes] references and a sender-chosen id.
            pdu["prev_events"] = [[i, hashes.get(i, {})] for i in prev]
            pdu["auth_events"] = [[i, hashes.get(i, {})] for i in auth_ids]
            pdu = with_legacy_event_id(rv, pdu, self.server_name)
        if spec.state_key is not None:
            pdu["state_key"] = spec.state_key
        if spec.redacts is not None:
            if rv.redacts_in_content:
                pdu["content"] = {**spec.content, "redacts": spec.redacts}
            else:
                pdu["redacts"] = spec.redacts
        signed = hash_and_sign_pdu(rv, pdu, self.server_name, self._key)
        validate_pdu(rv, signed)
        return event_from_pdu(rv.identifier, signed)

    async def _auth_state(
        self, work: RoomHead, event: Event, local: dict[str, Event],
    ) -> dict[StateKey, Event]:
        """The current state entries the auth rules may look at for this event."""
        keys = auth_rules.auth_types_for_event(
            get_room_version(work.room_version), event.type, event.sender, event.state_key,
            event.content,
        )
        wanted = {k: work.state[k] for k in keys if k in work.state}
        fetch = [eid for eid in wanted.values() if eid not in local]
        got = await self._reader.get_events(fetch) if fetch else {}
        out: dict[StateKey, Event] = {}
        for k, eid in wanted.items():
            if eid in local:
                out[k] = local[eid]
            elif eid in got:
                out[k] = got[eid].event
        return out

    async def _check_redaction(
        self, work: RoomHead, event: Event, auth_state: dict[StateKey, Event],
    ) -> None:
        """A local user may recall their own event within the window, or any with the redact level."""
        target_id = event.redacts
        if not target_id:
            raise MatrixError(400, "M_BAD_JSON", "A redaction needs a target")
        target = await self._reader.get_event(target_id)
        if target is None or target.event.room_id != work.room_id:
            raise MatrixError(404, "M_NOT_FOUND", "Cannot find the event to redact in this room")
        level = auth_rules.user_power_level(auth_state, event.sender)
        if level >= auth_rules.named_power_level(auth_state, "redact"):
            return
        if target.event.sender != event.sender:
            raise AuthError("You don't have permission to redact this event")
        msgtype = target.event.content.get("msgtype")
        window = self.recall_windows_ms.get(msgtype, self.recall_window_ms) if isinstance(msgtype, str) else self.recall_window_ms
        if event.origin_server_ts - target.event.origin_server_ts > window:
            raise forbidden(f"Messages can only be recalled within {_duration(window)} of sending them")


def _duration(ms: int) -> str:
    """2 minutes, 3 hours, 90 seconds: how the recall window reads in an error."""
    for unit, size in (("hour", 3_600_000), ("minute", 60_000), ("second", 1000)):
        if ms >= size and ms % size == 0:
            n = ms // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{ms} ms"
