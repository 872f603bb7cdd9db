"""Sliding sync connection state (MSC4186 `pos`), so a position survives a restart and
is understood by every worker: which rooms the connection was given, and the lists' last
windows. Kept per (user, device, conn_id, state id); only the newest few per connection."""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import sliding_sync_states


class SlidingSyncStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(
        self, user_id: str, device_id: str, conn_id: str, state_id: str,
    ) -> tuple[frozenset[str], tuple[tuple[str, int, tuple[str, ...]], ...]] | None:
        c = sliding_sync_states.c
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(c.sent, c.lists).where(
                c.user_id == user_id, c.device_id == device_id, c.conn_id == conn_id, c.state_id == state_id,
            ))).first()
        if row is None:
            return None
        lists = tuple((str(n), int(count), tuple(ids)) for n, count, ids in json.loads(row.lists))
        return frozenset(json.loads(row.sent)), lists

    async def put(
        self, user_id: str, device_id: str, conn_id: str, state_id: str, sent: Sequence[str],
        lists: Sequence[tuple[str, int, tuple[str, ...]]], now: int, keep: int,
    ) -> None:
        """Store a state; the connection's states older than its newest `keep` go."""
        c = sliding_sync_states.c
        async with self._engine.begin() as conn:
            await conn.execute(sliding_sync_states.insert().values(
                user_id=user_id, device_id=device_id, conn_id=conn_id, state_id=state_id,
                sent=json.dumps(sorted(sent)), lists=json.dumps([list(x) for x in lists]), created_ts=now,
            ))
            ids = list((await conn.execute(sa.select(c.id).where(
                c.user_id == user_id, c.device_id == device_id, c.conn_id == conn_id,
            ).order_by(c.id.desc()))).scalars())
            if len(ids) > keep:
                await conn.execute(sliding_sync_states.delete().where(c.id.in_(ids[keep:])))
