"""One writer per room across workers (docs/workers.md).

Rooms fall into shards (homeserver/core/shards.py); a shard is written by the worker
that holds its claim in Redis, renewed with the worker's lease. `RoutedWriter` is the
RoomWriterPort every service is given: for a room whose shard this worker holds (or
claims, being the live worker ranked first for a free shard) it calls the local
RoomWriter; otherwise it forwards the call to the holder over internal HTTP
(`WriterRpcPort`; served by client_api/internal.py through `WriterEndpoint`) and
answers with the stored events once they are durable and visible here. A worker that
dies keeps its shards until its lease lapses; then the next write claims them, and a
retried send (same transaction id) finds the event if it had been stored.

Room creation is the exception: a new room's id is only known once its create event
is built, and nobody can write to a room before its id is known, so the worker that
creates it writes its first events and then leaves the room to its shard's writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from homeserver.core.errors import MatrixError
from homeserver.core.events import Event, StoredEvent
from homeserver.core.records import NewRoom
from homeserver.core.shards import NotOwner, Unreachable, preferred_writer, shard_of
from homeserver.core.state_groups import StateMap
from homeserver.services.local_events import Countersign, EventSpec, InviteCountersign
from homeserver.services.remote_rooms import RemoteRoomsPort
from homeserver.services.replication import EVENTS, Visibility, event_from_json, event_json
from homeserver.services.room_heads import RoomHeads
from homeserver.services.writer import RoomWriter

log = logging.getLogger(__name__)

class ShardClaimsPort(Protocol):
    worker: str

    async def live_workers(self) -> dict[str, str]: ...

    async def claim(self, shard: int) -> str | None: ...

    async def holder(self, shard: int) -> str | None: ...

    def holds(self, shard: int) -> bool: ...


class WriterRpcPort(Protocol):
    async def call(self, url: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer; raises MatrixError (the target's), NotOwner or Unreachable."""


# -- what crosses the wire ------------------------------------------------------


def spec_json(spec: EventSpec) -> dict[str, Any]:
    return {
        "type": spec.type, "sender": spec.sender, "content": spec.content, "state_key": spec.state_key,
        "redacts": spec.redacts, "txn": list(spec.txn) if spec.txn else None,
    }


def spec_from_json(d: dict[str, Any]) -> EventSpec:
    txn = d["txn"]
    return EventSpec(d["type"], d["sender"], d["content"], d["state_key"], d["redacts"],
                     (txn[0], txn[1]) if txn else None)


def _raw_event(e: Event) -> dict[str, Any]:
    return {"event_id": e.event_id, "pdu": e.pdu, "room_version": e.room_version, "rejected": e.rejected}


def _raw_from(d: dict[str, Any]) -> Event:
    return Event(d["event_id"], d["pdu"], d["room_version"], d["rejected"])


def _new_room_json(r: NewRoom | None) -> dict[str, Any] | None:
    return None if r is None else attrs.asdict(r)


def _new_room_from(d: dict[str, Any] | None) -> NewRoom | None:
    return None if d is None else NewRoom(**d)


def _stored_answer(stored: Sequence[StoredEvent]) -> dict[str, Any]:
    return {"events": [event_json(se) for se in stored]}


# -- the port every service is given -----------------------------------------------


class RoutedWriter:
    """RoomWriterPort over the local writer and the other workers' (see module docstring)."""

    def __init__(
        self, *, local: RoomWriter, claims: ShardClaimsPort, rpc: WriterRpcPort, heads: RoomHeads,
        visibility: Visibility, retry_for_s: float,
    ) -> None:
        self.server_name = local.server_name
        self._local = local
        self._claims = claims
        self._rpc = rpc
        self._heads = heads
        self._visibility = visibility
        self._retry_for_s = retry_for_s  # about a lease: a dead writer's shards move by then

    def owns(self, room_id: str) -> bool:
        return self._claims.holds(shard_of(room_id))

    def lock(self, room_id: str) -> asyncio.Lock:
        return self._local.lock(room_id)

    async def _writer_of(self, room_id: str) -> str | None:
        """None: this worker writes the room; else the URL of the worker that does."""
        shard = shard_of(room_id)
        me = self._claims.worker
        if self._claims.holds(shard):
            return None
        live = await self._claims.live_workers()
        holder = await self._claims.holder(shard)
        if holder is None:  # free: the live worker ranked first claims it (on its first write)
            holder = preferred_writer(shard, live)
            if holder == me:
                holder = await self._claims.claim(shard)
        if holder == me and await self._claims.claim(shard) == me:
            self._heads.forget(room_id)  # others may have written it: read its head afresh
            return None
        url = live.get(holder or "")
        if not url:  # a dead holder's claim lapses with its lease
            raise Unreachable(f"shard {shard}: writer {holder!r} is not alive")
        return url

    async def _forward(self, room_id: str, method: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The writer's answer, or None when this worker writes the room itself."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_for_s
        delay = 0.1
        while True:
            try:
                url = await self._writer_of(room_id)
                if url is None:
                    return None
                return await self._rpc.call(url, method, {"room_id": room_id, **body})
            except (NotOwner, Unreachable) as exc:
                if loop.time() > deadline:
                    raise MatrixError(503, "M_UNKNOWN", "The room's writer is unavailable; retry") from exc
                log.info("forwarding %s for %s: %s; routing again", method, room_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _stored(self, answer: dict[str, Any]) -> list[StoredEvent]:
        stored = [event_from_json(d) for d in answer["events"]]
        positions = [se.stream_ordering for se in stored if se.stream_ordering > 0]
        if positions:  # this worker's readers see it before the client is answered
            await self._visibility.reached(EVENTS, max(positions))
        return stored

    async def create_room(
        self, room_id: str, room_version: str, creator: str, specs: Sequence[EventSpec],
    ) -> list[StoredEvent]:
        stored = await self._local.create_room(room_id, room_version, creator, specs)
        if stored and await self._writer_of(stored[0].event.room_id) is not None:
            self._heads.forget(stored[0].event.room_id)  # its shard's writer takes it from here
        return stored

    async def send_events(
        self, room_id: str, specs: Sequence[EventSpec], countersign: Countersign | None = None,
    ) -> list[StoredEvent]:
        invite_version = None
        if countersign is not None:
            if not isinstance(countersign, InviteCountersign):
                raise TypeError("only InviteCountersign can be forwarded")
            invite_version = countersign.room_version
        answer = await self._forward(room_id, "send_events", {
            "specs": [spec_json(s) for s in specs], "invite_version": invite_version,
        })
        if answer is None:
            return await self._local.send_events(room_id, specs, countersign)
        return await self._stored(answer)

    async def send_event(
        self, room_id: str, spec: EventSpec, countersign: Countersign | None = None,
    ) -> StoredEvent:
        return (await self.send_events(room_id, [spec], countersign))[0]

    async def append_received(
        self, room_id: str, event: Event, state_before: StateMap, *, before_group: int | None,
        soft_failed: bool = False, new_room: NewRoom | None = None, apply_redaction: bool = True,
        forward_from: str | None = None,
    ) -> StoredEvent:
        answer = await self._forward(room_id, "append_received", {
            "event": _raw_event(event), "state_before": [[t, k, v] for (t, k), v in state_before.items()],
            "before_group": before_group, "soft_failed": soft_failed, "new_room": _new_room_json(new_room),
            "apply_redaction": apply_redaction, "forward_from": forward_from,
        })
        if answer is None:
            return await self._local.append_received(
                room_id, event, state_before, before_group=before_group, soft_failed=soft_failed,
                new_room=new_room, apply_redaction=apply_redaction, forward_from=forward_from,
            )
        return (await self._stored(answer))[0]

    async def append_outliers(
        self, events: Sequence[Event], new_room: NewRoom | None = None, invite_for: str | None = None,
    ) -> list[StoredEvent]:
        room_id = new_room.room_id if new_room is not None else events[0].room_id if events else None
        if room_id is None:
            return []
        answer = await self._forward(room_id, "append_outliers", {
            "events": [_raw_event(e) for e in events], "new_room": _new_room_json(new_room),
            "invite_for": invite_for,
        })
        if answer is None:
            return await self._local.append_outliers(events, new_room, invite_for)
        return await self._stored(answer)

    async def append_backfill(self, events: Sequence[Event]) -> list[StoredEvent]:
        if not events:
            return []
        answer = await self._forward(events[0].room_id, "append_backfill", {"events": [_raw_event(e) for e in events]})
        if answer is None:
            return await self._local.append_backfill(events)
        return await self._stored(answer)

    async def purge_room(self, room_id: str) -> int:
        """Erased by the room's writer, under its lock, so its head and cache go with the rows."""
        answer = await self._forward(room_id, "purge_room", {})
        if answer is None:
            return await self._local.purge_room(room_id)
        return int(answer["purged"])


class WriterEndpoint:
    """What the internal HTTP API calls with a write another worker forwarded."""

    def __init__(self, *, local: RoomWriter, claims: ShardClaimsPort, remote: RemoteRoomsPort) -> None:
        self._local = local
        self._claims = claims
        self._remote = remote

    async def handle(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        room_id = body["room_id"]
        shard = shard_of(room_id)
        if not self._claims.holds(shard) and await self._claims.claim(shard) != self._claims.worker:
            raise NotOwner(room_id)
        w = self._local
        if method == "send_events":
            version = body["invite_version"]
            countersign = InviteCountersign(self._remote, version) if version is not None else None
            return _stored_answer(await w.send_events(room_id, [spec_from_json(s) for s in body["specs"]], countersign))
        if method == "append_received":
            async with w.lock(room_id):
                se = await w.append_received(
                    room_id, _raw_from(body["event"]), {(t, k): v for t, k, v in body["state_before"]},
                    before_group=body["before_group"], soft_failed=body["soft_failed"],
                    new_room=_new_room_from(body["new_room"]), apply_redaction=body["apply_redaction"],
                    forward_from=body["forward_from"],
                )
            return _stored_answer([se])
        if method == "append_outliers":
            return _stored_answer(await w.append_outliers(
                [_raw_from(e) for e in body["events"]], _new_room_from(body["new_room"]), body["invite_for"],
            ))
        if method == "append_backfill":
            return _stored_answer(await w.append_backfill([_raw_from(e) for e in body["events"]]))
        if method == "purge_room":
            return {"purged": await w.purge_room(room_id)}
        raise MatrixError(404, "M_UNRECOGNIZED", f"Unknown writer method {method}")
