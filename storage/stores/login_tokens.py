"""Single-use login tokens (spec "POST /_matrix/client/v1/login/get_token"). Only the
token's SHA-256 is stored, so a database dump holds nothing to log in with."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import login_tokens as t


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LoginTokenStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, token: str, user_id: str, expires_ts: int, now_ms: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(t.delete().where(t.c.expires_ts <= now_ms))  # expired ones go on the way
            await conn.execute(t.insert().values(token_sha256=_digest(token), user_id=user_id, expires_ts=expires_ts))

    async def consume(self, token: str, now_ms: int) -> str | None:
        """The user the token logs in, once: the row is deleted in the same transaction, so
        two logins racing with one token cannot both win. None if unknown or expired."""
        digest = _digest(token)
        async with self._engine.begin() as conn:
            row = (await conn.execute(
                sa.select(t.c.user_id, t.c.expires_ts).where(t.c.token_sha256 == digest),
            )).first()
            if row is None:
                return None
            gone = await conn.execute(t.delete().where(t.c.token_sha256 == digest))
            if gone.rowcount != 1 or row.expires_ts <= now_ms:
                return None
            return str(row.user_id)
