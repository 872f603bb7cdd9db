"""What the admin API lists and keeps: users and rooms paged, rate-limit overrides,
registration tokens, blocked rooms and quarantined media (event reports: reports.py)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import (
    blocked_rooms,
    current_state,
    events,
    ratelimit_overrides,
    registration_tokens,
    room_members,
    rooms,
    users,
)
from storage.stores.sql import like_pattern

# The state a room listing shows (Synapse's room details), read from current state.
_DETAIL_TYPES = (
    "m.room.name", "m.room.canonical_alias", "m.room.join_rules", "m.room.history_visibility",
    "m.room.guest_access", "m.room.encryption", "m.room.create", "m.room.avatar", "m.room.topic",
)





class AdminStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- users ------------------------------------------------------------------

    async def list_users(
        self, *, offset: int, limit: int, name: str | None, guests: bool, deactivated: bool,
        admins: bool | None, order_by: str, backwards: bool,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of local users (Synapse's GET /v2/users rows) and the filtered total."""
        where: list[Any] = []
        if name:
            where.append(sa.or_(
                sa.func.lower(users.c.user_id).like(like_pattern(name), escape="\\"),
                sa.func.lower(users.c.displayname).like(like_pattern(name), escape="\\"),
            ))
        if not guests:
            where.append(users.c.is_guest.is_(False))
        if not deactivated:
            where.append(users.c.deactivated.is_(False))
        if admins is not None:
            where.append(users.c.is_admin.is_(admins))
        column = {
            "name": users.c.user_id, "displayname": users.c.displayname, "admin": users.c.is_admin,
            "deactivated": users.c.deactivated, "creation_ts": users.c.created_ts,
        }.get(order_by, users.c.user_id)
        order = [column.desc() if backwards else column.asc(), users.c.user_id]
        async with self._engine.connect() as conn:
            total = int((await conn.execute(
                sa.select(sa.func.count()).select_from(users).where(*where)
            )).scalar() or 0)
            rows = await conn.execute(
                sa.select(users).where(*where).order_by(*order).offset(offset).limit(limit)
            )
            return [_user_row(r) for r in rows], total

    async def user_ids_after(self, cursor: str | None, limit: int, admins_only: bool) -> list[str]:
        """Active local users after ``cursor`` in id order: a broadcast's next batch."""
        q = sa.select(users.c.user_id).where(users.c.deactivated.is_(False))
        if cursor is not None:
            q = q.where(users.c.user_id > cursor)
        if admins_only:
            q = q.where(users.c.is_admin.is_(True))
        async with self._engine.connect() as conn:
            return [r.user_id for r in await conn.execute(q.order_by(users.c.user_id).limit(limit))]

    async def count_active_users(self, admins_only: bool) -> int:
        q = sa.select(sa.func.count()).select_from(users).where(users.c.deactivated.is_(False))
        if admins_only:
            q = q.where(users.c.is_admin.is_(True))
        async with self._engine.connect() as conn:
            return int((await conn.execute(q)).scalar() or 0)

    async def set_admin(self, user_id: str, admin: bool) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(users.update().where(users.c.user_id == user_id).values(is_admin=admin))

    async def reactivate(self, user_id: str, password_hash: str | None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(users.update().where(users.c.user_id == user_id).values(
                deactivated=False, password_hash=password_hash,
            ))

    # -- rate-limit overrides ------------------------------------------------------

    async def get_override(self, user_id: str) -> tuple[float, int] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(ratelimit_overrides).where(
                ratelimit_overrides.c.user_id == user_id,
            ))).first()
        return (float(row.messages_per_second), int(row.burst_count)) if row else None

    async def set_override(self, user_id: str, per_second: float, burst: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(ratelimit_overrides.delete().where(ratelimit_overrides.c.user_id == user_id))
            await conn.execute(ratelimit_overrides.insert().values(
                user_id=user_id, messages_per_second=per_second, burst_count=burst,
            ))

    async def delete_override(self, user_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(ratelimit_overrides.delete().where(ratelimit_overrides.c.user_id == user_id))

    # -- rooms ----------------------------------------------------------------------

    async def room_details(self, room_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Synapse's room list entries for the given rooms (every room when None)."""
        async with self._engine.connect() as conn:
            q = sa.select(rooms)
            if room_ids is not None:
                q = q.where(rooms.c.room_id.in_(room_ids))
            room_rows = list(await conn.execute(q))
            if not room_rows:
                return []
            ids = [r.room_id for r in room_rows]
            state: dict[str, dict[str, Any]] = {rid: {} for rid in ids}
            counts: dict[str, int] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                rows = await conn.execute(
                    sa.select(current_state.c.room_id, current_state.c.type, events.c.json)
                    .join(events, events.c.event_id == current_state.c.event_id)
                    .where(current_state.c.room_id.in_(chunk), current_state.c.state_key == "",
                           current_state.c.type.in_(_DETAIL_TYPES))
                )
                for r in rows:
                    state[r.room_id][r.type] = json.loads(r.json).get("content", {})
                rows = await conn.execute(
                    sa.select(current_state.c.room_id, sa.func.count())
                    .where(current_state.c.room_id.in_(chunk))
                    .group_by(current_state.c.room_id)
                )
                counts.update({r[0]: int(r[1]) for r in rows})
                members = await conn.execute(
                    sa.select(room_members.c.room_id, room_members.c.user_id)
                    .where(room_members.c.room_id.in_(chunk), room_members.c.membership == "join")
                )
                joined: dict[str, list[str]] = {}
                for r in members:
                    joined.setdefault(r.room_id, []).append(r.user_id)
                for rid in chunk:
                    state[rid]["_joined"] = joined.get(rid, [])
            blocked = {r.room_id for r in await conn.execute(
                sa.select(blocked_rooms.c.room_id).where(blocked_rooms.c.room_id.in_(ids))
            )}
        return [_room_entry(r, state[r.room_id], counts.get(r.room_id, 0), r.room_id in blocked) for r in room_rows]

    async def block_room(self, room_id: str, user_id: str, now: int) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(blocked_rooms.insert().values(room_id=room_id, user_id=user_id, ts=now))
        except IntegrityError:
            pass  # blocking twice is one block

    async def unblock_room(self, room_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(blocked_rooms.delete().where(blocked_rooms.c.room_id == room_id))

    async def room_block(self, room_id: str) -> str | None:
        """Who blocked the room, or None."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(blocked_rooms.c.user_id).where(blocked_rooms.c.room_id == room_id)
            )).first()
        return row.user_id if row else None

    # -- registration tokens --------------------------------------------------------

    async def list_tokens(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(registration_tokens).order_by(registration_tokens.c.token))
            return [dict(r._mapping) for r in rows]

    async def get_token(self, token: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(registration_tokens).where(registration_tokens.c.token == token)
            )).first()
        return dict(row._mapping) if row else None

    async def add_token(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(registration_tokens.insert().values(
                    token=token, uses_allowed=uses_allowed, pending=0, completed=0, expiry_time=expiry_time,
                ))
        except IntegrityError:
            return False
        return True

    async def update_token(self, token: str, values: dict[str, Any]) -> bool:
        if not values:
            return await self.get_token(token) is not None
        async with self._engine.begin() as conn:
            res = await conn.execute(
                registration_tokens.update().where(registration_tokens.c.token == token).values(**values)
            )
        return res.rowcount > 0

    async def delete_token(self, token: str) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(registration_tokens.delete().where(registration_tokens.c.token == token))
        return res.rowcount > 0


def _user_row(r: Any) -> dict[str, Any]:
    return {
        "name": r.user_id, "user_type": None, "is_guest": bool(r.is_guest), "admin": bool(r.is_admin),
        "deactivated": bool(r.deactivated), "shadow_banned": False, "locked": False,
        "displayname": r.displayname, "avatar_url": r.avatar_url, "creation_ts": int(r.created_ts),
    }


def _room_entry(r: Any, state: dict[str, Any], state_events: int, blocked: bool) -> dict[str, Any]:
    joined = state.get("_joined", [])
    local_suffix = None
    create = state.get("m.room.create", {})
    return {
        "room_id": r.room_id,
        "name": state.get("m.room.name", {}).get("name"),
        "topic": state.get("m.room.topic", {}).get("topic"),
        "avatar": state.get("m.room.avatar", {}).get("url"),
        "canonical_alias": state.get("m.room.canonical_alias", {}).get("alias"),
        "joined_members": len(joined),
        "joined_local_members": local_suffix,
        "version": r.room_version,
        "creator": r.creator,
        "encryption": state.get("m.room.encryption", {}).get("algorithm"),
        "federatable": create.get("m.federate", True),
        "public": bool(r.is_public),
        "join_rules": state.get("m.room.join_rules", {}).get("join_rule"),
        "guest_access": state.get("m.room.guest_access", {}).get("guest_access"),
        "history_visibility": state.get("m.room.history_visibility", {}).get("history_visibility"),
        "state_events": state_events,
        "room_type": create.get("type"),
        "blocked": blocked,
        "_joined": joined,
    }
