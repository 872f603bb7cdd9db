"""Federation outbox: PDUs accepted for sending, per destination, and per-destination retry state.

A row stays in ``federation_outbox`` until the destination answered 200 to a transaction that
carried it (or the sender gave up on it). Rows are read in id order and deleted by id, never
"up to an id": with concurrent writers (MariaDB) a smaller id can commit after a larger one
was already sent, and deleting a range would lose it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.records import RetryState
from storage.schema import federation_destinations, federation_edu_outbox, federation_outbox

# Keep `IN (...)` lists well under every engine's bound-parameter limit.
_CHUNK = 500


class OutboxStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- PDUs --------------------------------------------------------------------------

    async def append(self, destinations: Sequence[str], pdu_json: str, now_ts: int) -> None:
        """Queue one serialised PDU for each destination, in one transaction (executemany)."""
        if not destinations:
            return
        rows = [{"destination": d, "pdu_json": pdu_json, "created_ts": now_ts} for d in destinations]
        async with self._engine.begin() as conn:
            await conn.execute(federation_outbox.insert(), rows)

    async def next_batch(self, destination: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The oldest ``limit`` queued PDUs of a destination, as (outbox id, pdu)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(federation_outbox.c.id, federation_outbox.c.pdu_json)
                .where(federation_outbox.c.destination == destination)
                .order_by(federation_outbox.c.id)
                .limit(limit)
            )
            return [(int(r.id), json.loads(r.pdu_json)) for r in rows]

    async def delete(self, destination: str, ids: Iterable[int]) -> None:
        """Forget the given rows of a destination (delivered, or given up on)."""
        id_list = list(ids)
        if not id_list:
            return
        async with self._engine.begin() as conn:
            for i in range(0, len(id_list), _CHUNK):
                await conn.execute(federation_outbox.delete().where(
                    federation_outbox.c.destination == destination,
                    federation_outbox.c.id.in_(id_list[i:i + _CHUNK]),
                ))

    async def collapse(self, destination: str, page: int = _CHUNK) -> int:
        """Catch-up after a long outage: keep, of a destination's queued PDUs, the newest
        of each room and every state event (memberships among them), delete the rest;
        return how many rows went. The peer fetches what it lacks before the kept events
        with /get_missing_events (and /state across a wider gap), as the spec's receipt
        checks say. Reads a page at a time, newest first, so memory stays bounded by the
        page size and the number of rooms, however long the queue grew."""
        seen_rooms: set[str] = set()
        removed = 0
        before: int | None = None
        while True:
            query = (
                sa.select(federation_outbox.c.id, federation_outbox.c.pdu_json)
                .where(federation_outbox.c.destination == destination)
                .order_by(federation_outbox.c.id.desc()).limit(page)
            )
            if before is not None:
                query = query.where(federation_outbox.c.id < before)
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            if not rows:
                return removed
            doomed: list[int] = []
            for row in rows:
                pdu = json.loads(row.pdu_json)
                room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
                if not isinstance(room_id, str) or "state_key" in pdu:
                    continue  # state (and anything odd) is always kept
                if room_id in seen_rooms:
                    doomed.append(int(row.id))
                else:
                    seen_rooms.add(room_id)
            await self.delete(destination, doomed)
            removed += len(doomed)
            before = int(rows[-1].id)

    async def pending_destinations(self) -> list[str]:
        """Every destination with at least one queued PDU or durable EDU."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.union(
                sa.select(federation_outbox.c.destination), sa.select(federation_edu_outbox.c.destination),
            ))
            return sorted(r.destination for r in rows)

    # -- durable EDUs ------------------------------------------------------------------

    async def append_edu(self, destinations: Sequence[str], edu: dict[str, Any], now_ts: int) -> None:
        """Queue one EDU ({edu_type, content}) for each destination, in one transaction."""
        if not destinations:
            return
        edu_json = json.dumps(edu, separators=(",", ":"), ensure_ascii=False)
        rows = [{"destination": d, "edu_json": edu_json, "created_ts": now_ts} for d in destinations]
        async with self._engine.begin() as conn:
            await conn.execute(federation_edu_outbox.insert(), rows)

    async def next_edus(self, destination: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(federation_edu_outbox.c.id, federation_edu_outbox.c.edu_json)
                .where(federation_edu_outbox.c.destination == destination)
                .order_by(federation_edu_outbox.c.id).limit(limit)
            )
            return [(int(r.id), json.loads(r.edu_json)) for r in rows]

    async def delete_edus(self, destination: str, ids: Iterable[int]) -> None:
        id_list = list(ids)
        if not id_list:
            return
        async with self._engine.begin() as conn:
            for i in range(0, len(id_list), _CHUNK):
                await conn.execute(federation_edu_outbox.delete().where(
                    federation_edu_outbox.c.destination == destination,
                    federation_edu_outbox.c.id.in_(id_list[i:i + _CHUNK]),
                ))

    async def pending_count(self, destination: str) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(
                sa.select(sa.func.count()).select_from(federation_outbox)
                .where(federation_outbox.c.destination == destination)
            )).scalar() or 0)

    # -- retry state -------------------------------------------------------------------

    async def get_retry(self, destination: str) -> RetryState | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(federation_destinations).where(
                federation_destinations.c.destination == destination,
            ))).first()
        return _retry_state(row) if row is not None else None

    async def failing_destinations(self) -> dict[str, RetryState]:
        """Retry state of every destination currently backing off (failure_count > 0)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(federation_destinations).where(
                federation_destinations.c.failure_count > 0,
            ))
            return {r.destination: _retry_state(r) for r in rows}

    async def set_retry(self, destination: str, state: RetryState) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(federation_destinations.delete().where(
                federation_destinations.c.destination == destination,
            ))
            await conn.execute(federation_destinations.insert().values(
                destination=destination, failure_count=state.failure_count,
                retry_after_ts=state.retry_after_ts, last_success_ts=state.last_success_ts,
            ))


def _retry_state(row: Any) -> RetryState:
    return RetryState(
        failure_count=int(row.failure_count), retry_after_ts=int(row.retry_after_ts),
        last_success_ts=None if row.last_success_ts is None else int(row.last_success_ts),
    )
