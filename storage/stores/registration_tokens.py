"""Registration tokens (spec "Token-authenticated registration"): checked and spent here;
created, listed and deleted by the admin API."""

from __future__ import annotations

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import registration_tokens as t


@attrs.frozen
class RegistrationToken:
    token: str
    uses_allowed: int | None = None
    pending: int = 0
    completed: int = 0
    expiry_time: int | None = None


def _usable(now_ms: int) -> list[sa.ColumnElement[bool]]:
    return [
        sa.or_(t.c.expiry_time.is_(None), t.c.expiry_time > now_ms),
        sa.or_(t.c.uses_allowed.is_(None), t.c.pending + t.c.completed < t.c.uses_allowed),
    ]


class RegistrationTokenStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, token: RegistrationToken) -> bool:
        """False when the token exists already."""
        async with self._engine.begin() as conn:
            if (await conn.execute(sa.select(t.c.token).where(t.c.token == token.token))).first():
                return False
            await conn.execute(t.insert().values(**attrs.asdict(token)))
        return True

    async def get(self, token: str) -> RegistrationToken | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(sa.select(t).where(t.c.token == token))).first()
        return RegistrationToken(r.token, r.uses_allowed, r.pending, r.completed, r.expiry_time) if r else None

    async def is_valid(self, token: str, now_ms: int) -> bool:
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(t.c.token).where(t.c.token == token, *_usable(now_ms)))).first() is not None

    async def spend(self, token: str, now_ms: int) -> bool:
        """Count one registration against the token, if it is still usable: one UPDATE, so
        two registrations racing for the last use cannot both get it."""
        async with self._engine.begin() as conn:
            res = await conn.execute(
                t.update().where(t.c.token == token, *_usable(now_ms)).values(completed=t.c.completed + 1)
            )
        return res.rowcount == 1

    async def refund(self, token: str) -> None:
        """A registration that spent the token and then failed gives the use back."""
        async with self._engine.begin() as conn:
            await conn.execute(t.update().where(t.c.token == token, t.c.completed > 0).values(completed=t.c.completed - 1))
