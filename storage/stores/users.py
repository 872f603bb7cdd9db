"""Accounts, devices and access tokens."""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.records import TokenRecord
from storage.schema import access_tokens, devices, refresh_tokens_spent, users


@attrs.frozen
class UserRecord:
    user_id: str
    password_hash: str | None
    is_admin: bool
    displayname: str | None
    avatar_url: str | None
    deactivated: bool
    is_guest: bool = False


class UserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_user(
        self, user_id: str, password_hash: str | None, now_ms: int, is_admin: bool = False,
        displayname: str | None = None, is_guest: bool = False,
    ) -> bool:
        """Insert a user; False when the id is taken."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(users.insert().values(
                    user_id=user_id, password_hash=password_hash, is_admin=is_admin,
                    displayname=displayname, created_ts=now_ms, deactivated=False, is_guest=is_guest,
                ))
        except IntegrityError:
            return False
        return True

    async def get_user(self, user_id: str) -> UserRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(users).where(users.c.user_id == user_id)
            )).first()
        if row is None:
            return None
        return UserRecord(
            row.user_id, row.password_hash, bool(row.is_admin), row.displayname,
            row.avatar_url, bool(row.deactivated), bool(row.is_guest),
        )

    async def upgrade_guest(self, user_id: str, password_hash: str | None) -> bool:
        """A guest becomes a full account (same user id, so it keeps its rooms)."""
        async with self._engine.begin() as conn:
            res = await conn.execute(users.update().where(
                users.c.user_id == user_id, users.c.is_guest.is_(True),
            ).values(is_guest=False, password_hash=password_hash))
        return res.rowcount == 1

    async def search(self, term: str, limit: int) -> list[UserRecord]:
        """Active users whose id or display name contains `term` (case-insensitive)."""
        pattern = "%" + term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = sa.select(users).where(
            users.c.deactivated.is_(False),
            sa.or_(
                sa.func.lower(users.c.user_id).like(pattern, escape="\\"),
                sa.func.lower(users.c.displayname).like(pattern, escape="\\"),
            ),
        ).order_by(users.c.user_id).limit(limit)
        async with self._engine.connect() as conn:
            return [
                UserRecord(r.user_id, None, bool(r.is_admin), r.displayname, r.avatar_url, False)
                for r in await conn.execute(q)
            ]

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                users.update().where(users.c.user_id == user_id).values(password_hash=password_hash)
            )

    async def set_profile_field(self, user_id: str, field: str, value: str | None) -> None:
        assert field in ("displayname", "avatar_url")
        async with self._engine.begin() as conn:
            await conn.execute(users.update().where(users.c.user_id == user_id).values({field: value}))

    async def set_deactivated(self, user_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(users.update().where(users.c.user_id == user_id).values(
                deactivated=True, password_hash=None,
            ))

    # -- devices and tokens ---------------------------------------------------

    async def upsert_device_with_token(
        self, user_id: str, device_id: str, display_name: str | None, token: TokenRecord, now_ms: int,
    ) -> list[str]:
        """Create the device if new and (re)bind it to one fresh token, in one transaction.

        A login that reuses a device id invalidates that device's older tokens;
        their ids are returned.
        """
        revoked: list[str] = []
        async with self._engine.begin() as conn:
            exists = (await conn.execute(sa.select(devices.c.device_id).where(
                devices.c.user_id == user_id, devices.c.device_id == device_id,
            ))).first()
            if exists is None:
                await conn.execute(devices.insert().values(
                    user_id=user_id, device_id=device_id, display_name=display_name,
                    last_seen_ts=now_ms,
                ))
            else:
                revoked = await self._token_ids(conn, user_id, device_id)
                await conn.execute(access_tokens.delete().where(
                    access_tokens.c.user_id == user_id, access_tokens.c.device_id == device_id,
                ))
            await conn.execute(access_tokens.insert().values(_token_row(token, now_ms)))
        return revoked

    async def rotate_refresh(self, old: TokenRecord, new: TokenRecord, now_ms: int) -> list[str]:
        """Store ``new`` (whose ``previous_token_id`` is ``old``) in one transaction: a
        successor of ``old`` that was never used is dropped (its client did not get it and
        refreshes again), and if ``old`` itself still has a live predecessor, that one is
        spent now. Returns the token ids revoked."""
        async with self._engine.begin() as conn:
            revoked = list((await conn.execute(sa.select(access_tokens.c.token_id).where(
                access_tokens.c.previous_token_id == old.token_id,
            ))).scalars())
            if revoked:
                await conn.execute(access_tokens.delete().where(access_tokens.c.token_id.in_(revoked)))
            if old.previous_token_id is not None:
                revoked += await self._spend(conn, old.previous_token_id, now_ms)
                await conn.execute(access_tokens.update().where(
                    access_tokens.c.token_id == old.token_id,
                ).values(previous_token_id=None))
            await conn.execute(access_tokens.insert().values(_token_row(new, now_ms)))
        return revoked

    async def finish_refresh(self, token_id: str, previous_token_id: str, now_ms: int) -> list[str]:
        """``token_id`` was used: the token it replaced is spent. Returns the revoked ids."""
        async with self._engine.begin() as conn:
            revoked = await self._spend(conn, previous_token_id, now_ms)
            await conn.execute(access_tokens.update().where(
                access_tokens.c.token_id == token_id,
            ).values(previous_token_id=None))
        return revoked

    async def _spend(self, conn: Any, token_id: str, now_ms: int) -> list[str]:
        row = (await conn.execute(sa.select(access_tokens).where(access_tokens.c.token_id == token_id))).first()
        if row is None:
            return []
        await conn.execute(access_tokens.delete().where(access_tokens.c.token_id == token_id))
        if row.refresh_token:
            # Older spent tokens of the device are forgotten after a while: a replay is
            # caught in the window where it matters, and the table does not grow forever.
            await conn.execute(refresh_tokens_spent.delete().where(
                refresh_tokens_spent.c.user_id == row.user_id,
                refresh_tokens_spent.c.device_id == row.device_id,
                refresh_tokens_spent.c.spent_ts < now_ms - SPENT_REFRESH_KEPT_MS,
            ))
            await conn.execute(refresh_tokens_spent.insert().values(
                token_sha256=refresh_digest(row.refresh_token), user_id=row.user_id,
                device_id=row.device_id, spent_ts=now_ms,
            ))
        return [token_id]

    async def spent_refresh_owner(self, refresh_token: str) -> tuple[str, str] | None:
        """(user, device) of a refresh token that was replaced, or None."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(refresh_tokens_spent).where(
                refresh_tokens_spent.c.token_sha256 == refresh_digest(refresh_token),
            ))).first()
        return (row.user_id, row.device_id) if row else None

    async def revoke_device_tokens(self, user_id: str, device_id: str) -> list[str]:
        """Every token of one device (the device and its keys stay): a revoked session."""
        async with self._engine.begin() as conn:
            revoked = await self._token_ids(conn, user_id, device_id)
            await conn.execute(access_tokens.delete().where(
                access_tokens.c.user_id == user_id, access_tokens.c.device_id == device_id,
            ))
        return revoked

    async def get_token(self, token_id: str) -> TokenRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(access_tokens).where(access_tokens.c.token_id == token_id)
            )).first()
        return _token(row) if row else None

    async def get_token_by_refresh(self, refresh_token: str) -> TokenRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(access_tokens).where(access_tokens.c.refresh_token == refresh_token)
            )).first()
        return _token(row) if row else None

    async def delete_device(self, user_id: str, device_id: str) -> list[str]:
        """Remove a device and its tokens; returns the revoked token ids."""
        async with self._engine.begin() as conn:
            revoked = await self._token_ids(conn, user_id, device_id)
            await conn.execute(access_tokens.delete().where(
                access_tokens.c.user_id == user_id, access_tokens.c.device_id == device_id,
            ))
            await conn.execute(devices.delete().where(
                devices.c.user_id == user_id, devices.c.device_id == device_id,
            ))
        return revoked

    async def delete_all_tokens(self, user_id: str, keep_device: str | None = None) -> list[str]:
        """Revoke every token (and device) of a user, optionally keeping one device."""
        async with self._engine.begin() as conn:
            revoked = await self._token_ids(conn, user_id, None, keep_device)
            tok_q = access_tokens.delete().where(access_tokens.c.user_id == user_id)
            dev_q = devices.delete().where(devices.c.user_id == user_id)
            if keep_device is not None:
                tok_q = tok_q.where(access_tokens.c.device_id != keep_device)
                dev_q = dev_q.where(devices.c.device_id != keep_device)
            await conn.execute(tok_q)
            await conn.execute(dev_q)
        return revoked

    async def _token_ids(
        self, conn: Any, user_id: str, device_id: str | None, keep_device: str | None = None,
    ) -> list[str]:
        q = sa.select(access_tokens.c.token_id).where(access_tokens.c.user_id == user_id)
        if device_id is not None:
            q = q.where(access_tokens.c.device_id == device_id)
        if keep_device is not None:
            q = q.where(access_tokens.c.device_id != keep_device)
        return [r.token_id for r in await conn.execute(q)]

    async def list_devices(self, user_id: str) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(devices).where(devices.c.user_id == user_id).order_by(devices.c.device_id)
            )
            # Unknown values are null, not absent: matrix-nio's schema requires the keys.
            return [
                {
                    "device_id": r.device_id, "display_name": r.display_name,
                    "last_seen_ts": r.last_seen_ts, "last_seen_ip": r.last_seen_ip,
                }
                for r in rows
            ]

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        for d in await self.list_devices(user_id):
            if d["device_id"] == device_id:
                return d
        return None

    async def set_device_display_name(self, user_id: str, device_id: str, name: str | None) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(devices.update().where(
                devices.c.user_id == user_id, devices.c.device_id == device_id,
            ).values(display_name=name))
        return res.rowcount > 0


SPENT_REFRESH_KEPT_MS = 30 * 24 * 3600 * 1000


def refresh_digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def _token_row(t: TokenRecord, now_ms: int) -> dict[str, Any]:
    return {
        "token_id": t.token_id, "user_id": t.user_id, "device_id": t.device_id,
        "created_ts": now_ms, "expires_ts": t.expires_ts, "refresh_token": t.refresh_token,
        "previous_token_id": t.previous_token_id,
    }


def _token(row: Any) -> TokenRecord:
    return TokenRecord(
        row.token_id, row.user_id, row.device_id, row.expires_ts, row.refresh_token, row.previous_token_id,
    )
