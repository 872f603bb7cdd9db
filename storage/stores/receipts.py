"""Read receipts: the latest receipt per (room, type, user, thread)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.records import Receipt
from storage.schema import receipts


class ReceiptStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def max_stream_id(self) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.max(receipts.c.stream_id)))).scalar() or 0)

    async def put(self, r: Receipt) -> None:
        key = (
            receipts.c.room_id == r.room_id, receipts.c.receipt_type == r.receipt_type,
            receipts.c.user_id == r.user_id, receipts.c.thread_id == r.thread_id,
        )
        async with self._engine.begin() as conn:
            await conn.execute(receipts.delete().where(*key))
            await conn.execute(receipts.insert().values(attrs.asdict(r)))

    async def since(self, room_ids: Sequence[str], after: int, upto: int) -> list[Receipt]:
        if not room_ids:
            return []
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(receipts).where(
                receipts.c.room_id.in_(list(room_ids)), receipts.c.stream_id > after,
                receipts.c.stream_id <= upto,
            ))
            return [Receipt(**r._mapping) for r in rows]
