"""Per-device acknowledged sync positions (the WebSocket transport's resume points)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import sync_acks


class SyncAckStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, user_id: str, device_id: str) -> str | None:
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(sync_acks.c.position).where(
                sync_acks.c.user_id == user_id, sync_acks.c.device_id == device_id,
            ))).scalar()

    async def put(self, user_id: str, device_id: str, position: str, ts: int) -> None:
        """Replace the device's position (delete + insert: one statement set on both dialects)."""
        c = sync_acks.c
        async with self._engine.begin() as conn:
            await conn.execute(sync_acks.delete().where(c.user_id == user_id, c.device_id == device_id))
            await conn.execute(sync_acks.insert().values(
                user_id=user_id, device_id=device_id, position=position, updated_ts=ts,
            ))

    async def put_many(self, rows: list[tuple[str, str, str]], ts: int) -> None:
        """Several devices' positions (user, device, position) in one transaction."""
        if not rows:
            return
        c = sync_acks.c
        async with self._engine.begin() as conn:
            for user_id, device_id, _ in rows:
                await conn.execute(sync_acks.delete().where(c.user_id == user_id, c.device_id == device_id))
            await conn.execute(sync_acks.insert(), [
                {"user_id": u, "device_id": d, "position": p, "updated_ts": ts} for u, d, p in rows
            ])

    async def delete(self, user_id: str, device_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sync_acks.delete().where(
                sync_acks.c.user_id == user_id, sync_acks.c.device_id == device_id,
            ))
