"""Reads of event_relations (rows are written with their events by EventStore)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.records import Relation
from storage.schema import event_relations as rel


@attrs.frozen
class ThreadSummary:
    count: int
    latest_stream: int
    participated: bool


def _relation(r: sa.Row) -> Relation:
    return Relation(r.event_id, r.relates_to_id, r.rel_type, r.type, r.sender, r.room_id, r.stream_ordering)


class RelationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def children(
        self, parent_ids: Sequence[str], rel_types: Sequence[str] | None = None,
    ) -> list[Relation]:
        """Every child of these events (of these relation types), oldest first."""
        if not parent_ids:
            return []
        q = sa.select(rel).where(rel.c.relates_to_id.in_(list(parent_ids)))
        if rel_types is not None:
            q = q.where(rel.c.rel_type.in_(list(rel_types)))
        async with self._engine.connect() as conn:
            return [_relation(r) for r in await conn.execute(q.order_by(rel.c.stream_ordering))]

    async def thread_summaries(self, root_ids: Sequence[str], user_id: str, thread: str) -> dict[str, ThreadSummary]:
        if not root_ids:
            return {}
        q = sa.select(
            rel.c.relates_to_id, sa.func.count().label("n"),
            sa.func.max(rel.c.stream_ordering).label("latest"),
            sa.func.max(sa.case((rel.c.sender == user_id, 1), else_=0)).label("mine"),
        ).where(rel.c.relates_to_id.in_(list(root_ids)), rel.c.rel_type == thread).group_by(rel.c.relates_to_id)
        async with self._engine.connect() as conn:
            return {
                r.relates_to_id: ThreadSummary(int(r.n), int(r.latest), bool(r.mine))
                for r in await conn.execute(q)
            }

    async def event_at_stream(self, streams: Sequence[int]) -> dict[int, str]:
        """The related events at these stream positions (a thread's latest reply)."""
        if not streams:
            return {}
        async with self._engine.connect() as conn:
            return {r.stream_ordering: r.event_id for r in await conn.execute(
                sa.select(rel.c.event_id, rel.c.stream_ordering).where(rel.c.stream_ordering.in_(list(streams)))
            )}

    async def threads(self, room_id: str, thread: str, before: int | None, limit: int) -> list[tuple[str, int]]:
        """(root id, latest reply's stream position) of the room's threads, most recently
        active first, active before `before`."""
        latest = sa.func.max(rel.c.stream_ordering).label("latest")
        q = sa.select(rel.c.relates_to_id, latest).where(
            rel.c.room_id == room_id, rel.c.rel_type == thread,
        ).group_by(rel.c.relates_to_id)
        if before is not None:
            q = q.having(sa.func.max(rel.c.stream_ordering) < before)
        q = q.order_by(latest.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [(r.relates_to_id, int(r.latest)) for r in await conn.execute(q)]
