"""Reports of events, rooms and users (spec: "Reporting content"), for admins to read."""

from __future__ import annotations

from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.records import Report
from storage.schema import reports


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
