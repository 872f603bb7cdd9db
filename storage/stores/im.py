"""The IM features' rows: server-notice rooms, broadcasts and their progress, room
deletions (dissolutions) and their status, and client-reported events."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import broadcasts, client_events, room_deletions, server_notice_rooms


class ImStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- server notices -----------------------------------------------------------

    async def notice_room(self, user_id: str) -> str | None:
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(server_notice_rooms.c.room_id).where(
                server_notice_rooms.c.user_id == user_id))).scalar()

    async def set_notice_room(self, user_id: str, room_id: str) -> None:
        # Insert, else update: a delete-then-insert takes gap locks that deadlock on InnoDB
        # when a broadcast creates many users' rooms at once.
        try:
            async with self._engine.begin() as conn:
                await conn.execute(server_notice_rooms.insert().values(user_id=user_id, room_id=room_id))
        except IntegrityError:
            async with self._engine.begin() as conn:
                await conn.execute(server_notice_rooms.update().where(
                    server_notice_rooms.c.user_id == user_id).values(room_id=room_id))

    # -- broadcasts ---------------------------------------------------------------

    async def add_broadcast(self, sender: str, content: dict[str, Any], admins_only: bool, total: int, now: int) -> int:
        async with self._engine.begin() as conn:
            res = await conn.execute(broadcasts.insert().values(
                sender=sender, content=json.dumps(content), admins_only=admins_only, status="running",
                total=total, sent=0, failed=0, cursor=None, created_ts=now,
            ))
            return int(res.inserted_primary_key[0])

    async def get_broadcast(self, broadcast_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(broadcasts).where(broadcasts.c.id == broadcast_id))).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["content"] = json.loads(out["content"])
        return out

    async def running_broadcasts(self) -> list[int]:
        async with self._engine.connect() as conn:
            return [r.id for r in await conn.execute(
                sa.select(broadcasts.c.id).where(broadcasts.c.status == "running").order_by(broadcasts.c.id))]

    async def broadcast_progress(
        self, broadcast_id: int, cursor: str, sent: int, failed: int, done: bool, now: int,
    ) -> None:
        """Record one finished batch: where the next starts and the running counts."""
        values: dict[str, Any] = {
            "cursor": cursor, "sent": broadcasts.c.sent + sent, "failed": broadcasts.c.failed + failed,
        }
        if done:
            values.update(status="complete", finished_ts=now)
        async with self._engine.begin() as conn:
            await conn.execute(broadcasts.update().where(broadcasts.c.id == broadcast_id).values(**values))

    async def finish_broadcast(self, broadcast_id: int, now: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(broadcasts.update().where(broadcasts.c.id == broadcast_id).values(
                status="complete", finished_ts=now))

    # -- room deletions -----------------------------------------------------------

    async def add_deletion(self, delete_id: str, room_id: str, params: dict[str, Any], now: int) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(room_deletions.insert().values(
                    delete_id=delete_id, room_id=room_id, status="shutting_down",
                    params=json.dumps(params), created_ts=now,
                ))
        except IntegrityError:
            return False
        return True

    async def deletions_of_room(self, room_id: str) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(room_deletions).where(room_deletions.c.room_id == room_id)
                                      .order_by(room_deletions.c.created_ts))
            return [_deletion(r) for r in rows]

    async def get_deletion(self, delete_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(room_deletions).where(room_deletions.c.delete_id == delete_id))).first()
        return _deletion(row) if row else None

    async def unfinished_deletions(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(room_deletions).where(
                room_deletions.c.status.in_(("scheduled", "active", "shutting_down", "purging"))))
            return [_deletion(r) for r in rows]

    async def set_deletion_status(
        self, delete_id: str, status: str, result: dict[str, Any] | None = None, error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "error": error}
        if result is not None:
            values["result"] = json.dumps(result)
        async with self._engine.begin() as conn:
            await conn.execute(room_deletions.update().where(room_deletions.c.delete_id == delete_id).values(**values))

    # -- client events ------------------------------------------------------------

    async def add_client_event(
        self, user_id: str, device_id: str, event_type: str, payload: str, client_ts: int | None, now: int,
    ) -> int:
        async with self._engine.begin() as conn:
            res = await conn.execute(client_events.insert().values(
                user_id=user_id, device_id=device_id, type=event_type, payload=payload,
                client_ts=client_ts, received_ts=now,
            ))
            return int(res.inserted_primary_key[0])

    async def list_client_events(
        self, *, after: int, limit: int, user_id: str | None, event_type: str | None,
        since_ts: int | None, until_ts: int | None,
    ) -> list[dict[str, Any]]:
        q = sa.select(client_events).where(client_events.c.id > after)
        if user_id:
            q = q.where(client_events.c.user_id == user_id)
        if event_type:
            q = q.where(client_events.c.type == event_type)
        if since_ts is not None:
            q = q.where(client_events.c.received_ts >= since_ts)
        if until_ts is not None:
            q = q.where(client_events.c.received_ts < until_ts)
        async with self._engine.connect() as conn:
            rows = await conn.execute(q.order_by(client_events.c.id).limit(limit))
            out = []
            for r in rows:
                item = dict(r._mapping)
                item["payload"] = json.loads(item["payload"])
                out.append(item)
            return out


def _deletion(r: Any) -> dict[str, Any]:
    return {
        "delete_id": r.delete_id, "room_id": r.room_id, "status": r.status,
        "params": json.loads(r.params), "result": json.loads(r.result) if r.result else None,
        "error": r.error, "created_ts": r.created_ts,
    }
