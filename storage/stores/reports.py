"""Reports of events, rooms and users (spec: "Reporting content"), for admins to read."""

from __future__ import annotations

from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.records import Report
from storage.schema import reports
from storage.stores.sql import like_pattern

# An event report under Synapse's admin field names (`user_id` is the reporter; the spec
# dropped `score` in v1.18, but a score a client sends is kept).
_EVENT_REPORT = (
    reports.c.id, reports.c.received_ts, reports.c.room_id, reports.c.event_id,
    reports.c.reporter.label("user_id"), reports.c.reason, reports.c.score,
)


class ReportStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, report: Report) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(reports.insert().values(**attrs.asdict(report)))

    async def list(self, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
        """Newest first, with their ids (what an admin listing pages through)."""
        q = sa.select(reports).order_by(reports.c.id.desc()).limit(limit)
        if before_id is not None:
            q = q.where(reports.c.id < before_id)
        async with self._engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    # -- the admin API's event reports (Synapse's event_reports) ------------------------

    async def list_event_reports(
        self, *, offset: int, limit: int, backwards: bool, room_id: str | None, user_id: str | None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of event reports (oldest first, or newest with ``backwards``) and how many
        match; ``room_id``/``user_id`` (the reporter) match as substrings, as in Synapse."""
        where: list[Any] = [reports.c.kind == "event"]
        if room_id:
            where.append(reports.c.room_id.like(like_pattern(room_id), escape="\\"))
        if user_id:
            where.append(reports.c.reporter.like(like_pattern(user_id), escape="\\"))
        order = reports.c.id.desc() if backwards else reports.c.id.asc()
        async with self._engine.connect() as conn:
            total = int((await conn.execute(
                sa.select(sa.func.count()).select_from(reports).where(*where)
            )).scalar() or 0)
            rows = await conn.execute(
                sa.select(*_EVENT_REPORT).where(*where).order_by(order).offset(offset).limit(limit)
            )
            return [dict(r._mapping) for r in rows], total

    async def get_event_report(self, report_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(*_EVENT_REPORT).where(reports.c.kind == "event", reports.c.id == report_id)
            )).first()
        return dict(row._mapping) if row else None

    async def delete_event_report(self, report_id: int) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(
                reports.delete().where(reports.c.kind == "event", reports.c.id == report_id)
            )
        return res.rowcount > 0
