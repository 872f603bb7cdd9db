"""The event write path (one transaction per batch) and event reads.

This store owns event and state truth: an event, its state group, the
room's current state, membership index, forward extremities and stream
position are written together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from homeserver.core.events import Event, StoredEvent
from homeserver.core.records import Membership, PersistBatch, RoomUpdate, StoreConflict
from homeserver.core.redaction import redact_pdu
from homeserver.core.relations import relation_of
from storage.schema import (
    current_state,
    event_edges,
    event_relations,
    events,
    federation_outbox,
    pending_purges,
    redactions,
    room_members,
    room_state_meta,
    rooms,
    state_group_entries,
    state_groups,
)


class EventStore:
    def __init__(self, engine: AsyncEngine, content_retention_ms: int = 0) -> None:
        self._engine = engine
        # How long a redacted event's original content stays stored (0: it goes in the
        # redaction's own commit). Serving strips it at once either way.
        self._retention = content_retention_ms

    async def max_ids(self) -> tuple[int, int, int]:
        """(max stream_ordering, max state group id, min stream_ordering) for the id generators.

        Outliers and backfilled history take negative stream orderings, so they
        never appear in a sync window.
        """
        async with self._engine.connect() as conn:
            s = (await conn.execute(sa.select(sa.func.max(events.c.stream_ordering)))).scalar()
            g = (await conn.execute(sa.select(sa.func.max(state_groups.c.id)))).scalar()
            m = (await conn.execute(sa.select(sa.func.min(events.c.stream_ordering)))).scalar()
        return int(s or 0), int(g or 0), min(int(m or 0), 0)

    async def persist(self, batch: PersistBatch) -> None:
        try:
            async with self._engine.begin() as conn:
                await self._write(conn, batch)
        except IntegrityError as e:
            raise StoreConflict(str(e.orig)) from e

    async def _write(self, conn: AsyncConnection, b: PersistBatch) -> None:
        for r in b.new_rooms:
            known = (await conn.execute(
                sa.select(rooms.c.room_id).where(rooms.c.room_id == r.room_id)
            )).first()
            if known is None:
                await conn.execute(rooms.insert().values(
                    room_id=r.room_id, room_version=r.room_version, creator=r.creator,
                    is_public=False, created_ts=r.created_ts,
                ))
        if b.state_groups:
            await conn.execute(state_groups.insert(), [
                {"id": g.id, "room_id": g.room_id, "prev_group": g.prev_group,
                 "chain_length": g.chain_length} for g in b.state_groups
            ])
            entries = [
                {"group_id": g.id, "type": k[0], "state_key": k[1], "event_id": v}
                for g in b.state_groups for k, v in g.entries.items()
            ]
            if entries:
                await conn.execute(state_group_entries.insert(), entries)
        if b.events:
            await conn.execute(events.insert(), [_event_row(se, b.received_ts) for se in b.events])
        for u in b.room_updates:
            await _apply_room_update(conn, u)
        if b.memberships:
            latest: dict[tuple[str, str], Membership] = {}
            for m in b.memberships:
                latest[(m.room_id, m.user_id)] = m
            for (room_id, user_id) in latest:
                await conn.execute(room_members.delete().where(
                    room_members.c.room_id == room_id, room_members.c.user_id == user_id,
                ))
            await conn.execute(room_members.insert(), [
                {"room_id": m.room_id, "user_id": m.user_id, "membership": m.membership,
                 "event_id": m.event_id, "sender": m.sender,
                 "stream_ordering": m.stream_ordering, "forgotten": False}
                for m in latest.values()
            ])
        relations = [_relation_row(se) for se in b.events if not se.outlier and not se.soft_failed]
        if any(relations):
            await conn.execute(event_relations.insert(), [r for r in relations if r])
        if b.redactions:
            await conn.execute(redactions.insert(), [
                {"event_id": r, "redacts": t} for r, t in b.redactions
            ])
            # A redacted child no longer relates to anything (spec: "Redactions" of relations).
            await conn.execute(event_relations.delete().where(
                event_relations.c.event_id.in_([t for _, t in b.redactions])
            ))
            targets = list(dict.fromkeys(t for _, t in b.redactions))
            if self._retention == 0:
                await _purge_content(conn, targets)
            else:
                known = await conn.execute(sa.select(pending_purges.c.event_id).where(
                    pending_purges.c.event_id.in_(targets)))
                fresh = set(targets) - {r.event_id for r in known}
                if fresh:
                    await conn.execute(pending_purges.insert(), [
                        {"event_id": t, "purge_ts": b.received_ts + self._retention} for t in fresh
                    ])
        if b.edges:
            await conn.execute(event_edges.insert(), [
                {"event_id": e, "prev_event_id": p} for e, p in b.edges
            ])
        if b.outbox:
            await conn.execute(federation_outbox.insert(), [
                {"destination": d, "pdu_json": j, "created_ts": b.received_ts} for d, j in b.outbox
            ])

    async def next_purge_ts(self) -> int | None:
        """When the next redacted event's original content is due to go."""
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.min(pending_purges.c.purge_ts)))).scalar()

    async def purge_due(self, now_ms: int, limit: int = 500) -> int:
        """Replace the stored JSON of redacted events whose retention has passed by their
        redacted form (the room version's redaction algorithm); returns how many."""
        async with self._engine.begin() as conn:
            due = [r.event_id for r in await conn.execute(
                sa.select(pending_purges.c.event_id).where(pending_purges.c.purge_ts <= now_ms)
                .order_by(pending_purges.c.purge_ts).limit(limit)
            )]
            if due:
                await _purge_content(conn, due)
                await conn.execute(pending_purges.delete().where(pending_purges.c.event_id.in_(due)))
        return len(due)

    # -- reads -------------------------------------------------------------

    async def known_event_ids(self, event_ids: Iterable[str], include_outliers: bool = True) -> set[str]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return set()
        q = sa.select(events.c.event_id).where(events.c.event_id.in_(ids))
        if not include_outliers:
            q = q.where(events.c.outlier.is_(False))
        async with self._engine.connect() as conn:
            return {r.event_id for r in await conn.execute(q)}

    async def has_children(self, event_id: str) -> bool:
        """Some received event already names this one as a prev event."""
        async with self._engine.connect() as conn:
            return (await conn.execute(
                sa.select(event_edges.c.event_id).where(event_edges.c.prev_event_id == event_id).limit(1)
            )).first() is not None

    async def mark_in_timeline(self, event_ids: Iterable[str]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                events.update().where(events.c.event_id.in_(list(event_ids))).values(outlier=False)
            )

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        out: dict[str, StoredEvent] = {}
        async with self._engine.connect() as conn:
            for i in range(0, len(ids), 500):
                rows = await conn.execute(
                    _select_events().where(events.c.event_id.in_(ids[i:i + 500]))
                )
                for r in rows:
                    out[r.event_id] = _stored(r)
        return out

    async def get_redactions_of(self, event_ids: Sequence[str]) -> dict[str, str]:
        """target event id -> id of the (applied) redaction event."""
        if not event_ids:
            return {}
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(redactions.c.event_id, redactions.c.redacts)
                .where(redactions.c.redacts.in_(list(event_ids)))
            )
            return {r.redacts: r.event_id for r in rows}

    async def find_by_txn(self, sender: str, device_id: str, txn_id: str) -> str | None:
        async with self._engine.connect() as conn:
            return (await conn.execute(
                sa.select(events.c.event_id).where(
                    events.c.sender == sender, events.c.txn_device == device_id,
                    events.c.txn_id == txn_id,
                )
            )).scalar()

    async def room_events_after(
        self, room_ids: Sequence[str], after_stream: int, upto_stream: int, limit: int,
    ) -> list[StoredEvent]:
        """Events in these rooms with after < stream <= upto, newest first."""
        if not room_ids:
            return []
        q = (
            _select_events()
            .where(events.c.room_id.in_(list(room_ids)))
            .where(events.c.stream_ordering > after_stream)
            .where(events.c.stream_ordering <= upto_stream)
            .where(events.c.outlier.is_(False), events.c.soft_failed.is_(False))
            .order_by(events.c.stream_ordering.desc()).limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_stored(r) for r in await conn.execute(q)]

    async def latest_of_types(
        self, room_ids: Sequence[str], types: Sequence[str], upto_stream: int,
    ) -> dict[str, int]:
        """Per room, the stream position of its newest event of one of `types` (sliding
        sync's `bump_stamp`); rooms with none are absent."""
        if not room_ids:
            return {}
        q = (
            sa.select(events.c.room_id, sa.func.max(events.c.stream_ordering))
            .where(events.c.room_id.in_(list(room_ids)), events.c.type.in_(list(types)))
            .where(events.c.stream_ordering <= upto_stream, events.c.stream_ordering > 0)
            .where(events.c.outlier.is_(False), events.c.soft_failed.is_(False))
            .group_by(events.c.room_id)
        )
        async with self._engine.connect() as conn:
            return {r[0]: int(r[1]) for r in await conn.execute(q)}

    async def room_stream_window(
        self, room_id: str, upto_stream: int, limit: int, after_stream: int = 0,
    ) -> list[StoredEvent]:
        """The newest `limit` events of one room at or before upto_stream, newest first."""
        return await self.room_events_after([room_id], after_stream, upto_stream, limit)

    async def paginate(
        self, room_id: str, from_topo: tuple[int, int], backwards: bool, limit: int,
        to_topo: tuple[int, int] | None = None,
    ) -> list[StoredEvent]:
        """Topological pagination; a token (d, s) is the position just after event (d, s)."""
        q = _select_events().where(
            events.c.room_id == room_id, events.c.outlier.is_(False),
            events.c.soft_failed.is_(False),
        )
        if backwards:
            q = q.where(_topo_at_most(from_topo))
            if to_topo is not None:
                q = q.where(_topo_after(to_topo))
            q = q.order_by(events.c.depth.desc(), events.c.stream_ordering.desc())
        else:
            q = q.where(_topo_after(from_topo))
            if to_topo is not None:
                q = q.where(_topo_at_most(to_topo))
            q = q.order_by(events.c.depth.asc(), events.c.stream_ordering.asc())
        # MariaDB, left to itself, walks the room's whole (room, depth, stream) index from
        # one end for ORDER BY ... LIMIT (hundreds of ms on a 100,000-event room, for every
        # /messages page and search context); told to use it, it seeks to the position.
        q = q.with_hint(events, "FORCE INDEX (events_room_topo)", dialect_name="mysql")
        async with self._engine.connect() as conn:
            return [_stored(r) for r in await conn.execute(q.limit(limit))]

    async def event_near_ts(self, room_id: str, ts: int, forwards: bool) -> StoredEvent | None:
        """The room's first timeline event sent at or after `ts` (forwards), or the last at
        or before it (spec: "GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event")."""
        q = _select_events().where(
            events.c.room_id == room_id, events.c.outlier.is_(False), events.c.soft_failed.is_(False),
            events.c.rejected.is_(False),
        )
        if forwards:
            q = q.where(events.c.origin_server_ts >= ts).order_by(
                events.c.origin_server_ts.asc(), events.c.stream_ordering.asc())
        else:
            q = q.where(events.c.origin_server_ts <= ts).order_by(
                events.c.origin_server_ts.desc(), events.c.stream_ordering.desc())
        async with self._engine.connect() as conn:
            row = (await conn.execute(q.limit(1))).first()
        return _stored(row) if row else None

    async def oldest_event(self, room_id: str) -> StoredEvent | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                _select_events().where(events.c.room_id == room_id, events.c.outlier.is_(False))
                .order_by(events.c.depth.asc(), events.c.stream_ordering.asc()).limit(1)
            )).first()
        return _stored(row) if row else None

    async def topo_at_stream(self, room_id: str, stream: int) -> tuple[int, int] | None:
        """The topologically last (depth, stream) among the room's events at or before a
        stream position: where backwards pagination from that position starts. (The
        newest by stream is not enough: an older event can arrive after its child.)"""
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(events.c.depth, events.c.stream_ordering).where(
                    events.c.room_id == room_id, events.c.stream_ordering <= stream,
                    events.c.outlier.is_(False),
                ).order_by(events.c.depth.desc(), events.c.stream_ordering.desc()).limit(1)
            )).first()
        return (row.depth, row.stream_ordering) if row else None

    async def state_group_at_stream(self, room_id: str, stream: int) -> int | None:
        """State group after the room's last event at or before a stream position."""
        async with self._engine.connect() as conn:
            return (await conn.execute(
                sa.select(events.c.state_after).where(
                    events.c.room_id == room_id, events.c.stream_ordering <= stream,
                    events.c.outlier.is_(False), events.c.soft_failed.is_(False),
                ).order_by(events.c.stream_ordering.desc()).limit(1)
            )).scalar()


async def _apply_room_update(conn: AsyncConnection, u: RoomUpdate) -> None:
    for (typ, sk), _ev in u.current_state_delta.items():
        await conn.execute(current_state.delete().where(
            current_state.c.room_id == u.room_id, current_state.c.type == typ,
            current_state.c.state_key == sk,
        ))
    inserts = [
        {"room_id": u.room_id, "type": k[0], "state_key": k[1], "event_id": v}
        for k, v in u.current_state_delta.items() if v is not None
    ]
    if inserts:
        await conn.execute(current_state.insert(), inserts)
    head = {
        "current_group": u.current_group, "max_depth": u.max_depth,
        "extremities": json.dumps(list(u.forward_extremities)),
    }
    res = await conn.execute(
        room_state_meta.update().where(room_state_meta.c.room_id == u.room_id).values(head)
    )
    if res.rowcount == 0:
        await conn.execute(room_state_meta.insert().values(room_id=u.room_id, **head))


async def _purge_content(conn: AsyncConnection, event_ids: list[str]) -> None:
    """Keep only what the redaction algorithm keeps of these events (spec "Redactions"):
    the original content is gone from storage; ids, hashes and signatures still verify."""
    rows = await conn.execute(
        sa.select(events.c.event_id, events.c.json, rooms.c.room_version)
        .join(rooms, rooms.c.room_id == events.c.room_id).where(events.c.event_id.in_(event_ids))
    )
    for r in list(rows):
        pruned = redact_pdu(r.room_version, json.loads(r.json))
        await conn.execute(events.update().where(events.c.event_id == r.event_id).values(
            json=json.dumps(pruned, ensure_ascii=False, separators=(",", ":")),
        ))


def _topo_at_most(topo: tuple[int, int]) -> sa.ColumnElement[bool]:
    """(depth, stream_ordering) <= topo, spelled so MariaDB's range optimizer sees the
    bound on depth (it does not for a row-value comparison)."""
    depth, stream = topo
    return sa.and_(
        events.c.depth <= depth,
        sa.or_(events.c.depth < depth, events.c.stream_ordering <= stream),
    )


def _topo_after(topo: tuple[int, int]) -> sa.ColumnElement[bool]:
    """(depth, stream_ordering) > topo, spelled as _topo_at_most is."""
    depth, stream = topo
    return sa.and_(
        events.c.depth >= depth,
        sa.or_(events.c.depth > depth, events.c.stream_ordering > stream),
    )


def _select_events() -> sa.Select[Any]:
    return sa.select(
        events.c.event_id, events.c.json, events.c.stream_ordering, events.c.state_before,
        events.c.state_after, events.c.txn_device, events.c.txn_id, events.c.rejected,
        events.c.outlier, events.c.soft_failed, events.c.room_id, events.c.replaces_state,
    ).join(rooms, rooms.c.room_id == events.c.room_id).add_columns(rooms.c.room_version)


def _stored(r: Any) -> StoredEvent:
    ev = Event(r.event_id, json.loads(r.json), r.room_version, bool(r.rejected))
    return StoredEvent(
        ev, r.stream_ordering, r.state_before, r.state_after, r.txn_device, r.txn_id,
        bool(r.outlier), bool(r.soft_failed), r.replaces_state,
    )


def _relation_row(se: StoredEvent) -> dict[str, Any] | None:
    rel = relation_of(se.event)
    if rel is None:
        return None
    return {
        "event_id": se.event.event_id, "relates_to_id": rel[0], "rel_type": rel[1],
        "type": se.event.type, "sender": se.event.sender, "room_id": se.event.room_id,
        "stream_ordering": se.stream_ordering,
    }


def _event_row(se: StoredEvent, received_ts: int) -> dict[str, Any]:
    e = se.event
    return {
        "stream_ordering": se.stream_ordering, "event_id": e.event_id, "room_id": e.room_id,
        "type": e.type, "state_key": e.state_key, "sender": e.sender, "depth": e.depth,
        "origin_server_ts": e.origin_server_ts, "received_ts": received_ts,
        "json": json.dumps(e.pdu, ensure_ascii=False, separators=(",", ":")),
        "state_before": se.state_before, "state_after": se.state_after,
        "rejected": e.rejected, "outlier": se.outlier, "soft_failed": se.soft_failed,
        "txn_id": se.txn_id, "txn_device": se.txn_device, "replaces_state": se.replaces_state,
    }
