"""Sync filters and account data: small per-user JSON documents."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import account_data, filters

# Concurrent uploads by one user beyond this many at once are not a client's behaviour.
_ID_ATTEMPTS = 50


class FilterStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Filters never change once created: every /sync names one, so keep them.
        self._cache: dict[tuple[str, int], dict[str, Any]] = {}

    async def add_filter(self, user_id: str, body: dict[str, Any]) -> int:
        """The user's next filter id. Two concurrent uploads may read the same maximum: the
        (user, id) primary key lets one insert win and the other tries the next id."""
        for _ in range(_ID_ATTEMPTS):
            try:
                async with self._engine.begin() as conn:
                    top = (await conn.execute(
                        sa.select(sa.func.max(filters.c.filter_id)).where(filters.c.user_id == user_id)
                    )).scalar()
                    fid = int(top if top is not None else -1) + 1
                    await conn.execute(filters.insert().values(
                        user_id=user_id, filter_id=fid, json=json.dumps(body),
                    ))
                return fid
            except IntegrityError:
                continue
        raise RuntimeError(f"could not allocate a filter id for {user_id}")

    async def get_filter(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        hit = self._cache.get((user_id, filter_id))
        if hit is not None:
            return hit
        async with self._engine.connect() as conn:
            raw = (await conn.execute(sa.select(filters.c.json).where(
                filters.c.user_id == user_id, filters.c.filter_id == filter_id,
            ))).scalar()
        if raw is None:
            return None
        if len(self._cache) > 50_000:
            self._cache.clear()
        body = self._cache[(user_id, filter_id)] = json.loads(raw)
        return body


class AccountDataStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def max_stream_id(self) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.max(account_data.c.stream_id)))).scalar() or 0)

    async def put(self, user_id: str, room_id: str, type_: str, content: dict[str, Any], stream_id: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(account_data.delete().where(
                account_data.c.user_id == user_id, account_data.c.room_id == room_id,
                account_data.c.type == type_,
            ))
            await conn.execute(account_data.insert().values(
                user_id=user_id, room_id=room_id, type=type_, content=json.dumps(content),
                stream_id=stream_id,
            ))

    async def get(self, user_id: str, room_id: str, type_: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            raw = (await conn.execute(sa.select(account_data.c.content).where(
                account_data.c.user_id == user_id, account_data.c.room_id == room_id,
                account_data.c.type == type_,
            ))).scalar()
        return json.loads(raw) if raw is not None else None

    async def changed_since(self, user_id: str, since: int) -> list[tuple[str, str, dict[str, Any]]]:
        """(room_id, type, content) changed after `since`; room_id "" is global."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(account_data).where(
                account_data.c.user_id == user_id, account_data.c.stream_id > since,
            ))
            return [(r.room_id, r.type, json.loads(r.content)) for r in rows]
