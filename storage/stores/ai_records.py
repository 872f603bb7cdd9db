"""AI interaction records: one row per patient message handed to an AI service."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import ai_interaction_records as records

_FIELDS = (
    "id", "room_id", "user_id", "user_event_id", "reply_event_id", "provider", "request", "response",
    "status", "duration_ms", "error", "created_ts", "updated_ts",
)


def _row(r: Any) -> dict[str, Any]:
    return {k: getattr(r, k) for k in _FIELDS}


class AiRecordStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self, *, room_id: str, user_id: str, user_event_id: str, provider: str, request: str, now: int,
    ) -> tuple[dict[str, Any], bool]:
        """The record for this message, created pending unless it exists: (row, created).
        One message is one record, so a transaction delivered twice is answered once."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(records.insert().values(
                    room_id=room_id, user_id=user_id, user_event_id=user_event_id, provider=provider,
                    request=request, status="pending", created_ts=now, updated_ts=now,
                ))
            created = True
        except IntegrityError:
            created = False
        found = await self.by_message(room_id, user_event_id)
        assert found is not None
        return found, created

    async def by_message(self, room_id: str, user_event_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(sa.select(records).where(
                records.c.room_id == room_id, records.c.user_event_id == user_event_id,
            ))).first()
        return None if r is None else _row(r)

    async def get(self, record_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(sa.select(records).where(records.c.id == record_id))).first()
        return None if r is None else _row(r)

    async def update(self, record_id: int, values: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(records.update().where(records.c.id == record_id).values(**values))

    async def page(
        self, *, room_id: str | None, status: str | None, before: int | None, limit: int,
    ) -> list[dict[str, Any]]:
        """Newest first; ``before`` is the id the previous page ended at."""
        q = sa.select(records).order_by(records.c.id.desc()).limit(limit)
        if room_id is not None:
            q = q.where(records.c.room_id == room_id)
        if status is not None:
            q = q.where(records.c.status == status)
        if before is not None:
            q = q.where(records.c.id < before)
        async with self._engine.connect() as conn:
            return [_row(r) for r in await conn.execute(q)]
