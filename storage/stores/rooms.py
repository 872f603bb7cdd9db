"""Rooms, their membership index, forward extremities, aliases and directory."""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from homeserver.core.records import Membership
from storage.schema import current_state, events, room_aliases, room_members, room_state_meta, rooms


@attrs.frozen
class RoomRecord:
    room_id: str
    room_version: str
    creator: str | None
    is_public: bool


class RoomStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get_room(self, room_id: str) -> RoomRecord | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(sa.select(rooms).where(rooms.c.room_id == room_id))).first()
        return RoomRecord(r.room_id, r.room_version, r.creator, bool(r.is_public)) if r else None

    async def get_room_meta(self, room_id: str) -> tuple[int, int, list[str]] | None:
        """(current state group, max depth, forward extremities) of a room we hold."""
        async with self._engine.connect() as conn:
            meta = (await conn.execute(
                sa.select(room_state_meta).where(room_state_meta.c.room_id == room_id)
            )).first()
        if meta is None:
            return None
        return meta.current_group, meta.max_depth, json.loads(meta.extremities)

    async def set_public(self, room_id: str, public: bool) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(rooms.update().where(rooms.c.room_id == room_id).values(is_public=public))

    async def public_room_ids(self) -> list[str]:
        async with self._engine.connect() as conn:
            return [r.room_id for r in await conn.execute(
                sa.select(rooms.c.room_id).where(rooms.c.is_public.is_(True))
            )]

    async def current_state_of_type(self, event_type: str) -> list[tuple[str, str]]:
        """(room_id, event_id) of every room's current state event of this type (state key "")."""
        async with self._engine.connect() as conn:
            return [(r.room_id, r.event_id) for r in await conn.execute(
                sa.select(current_state.c.room_id, current_state.c.event_id).where(
                    current_state.c.type == event_type, current_state.c.state_key == "",
                )
            )]

    # -- membership index --------------------------------------------------

    async def memberships_for_user(
        self, user_id: str, memberships: Sequence[str] | None = None, include_forgotten: bool = False,
    ) -> list[Membership]:
        q = sa.select(room_members).where(room_members.c.user_id == user_id)
        if memberships is not None:
            q = q.where(room_members.c.membership.in_(list(memberships)))
        if not include_forgotten:
            q = q.where(room_members.c.forgotten.is_(False))
        async with self._engine.connect() as conn:
            return [_member(r) for r in await conn.execute(q)]

    async def membership_changes_since(self, user_id: str, since_stream: int) -> list[Membership]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(room_members).where(
                room_members.c.user_id == user_id,
                room_members.c.stream_ordering > since_stream,
                room_members.c.forgotten.is_(False),
            ))
            return [_member(r) for r in rows]

    async def users_departed(self, user_id: str, after: int, upto: int) -> set[str]:
        """Users who may have stopped sharing a room with `user_id` between the stream
        positions, from the membership events in that range: those who left or were banned
        from a room the user was in, and every member of a room the user left or was
        banned from (the caller keeps those who share no room as of `upto`)."""
        async with self._engine.connect() as conn:
            rooms_of_user = list((await conn.execute(
                sa.select(room_members.c.room_id).where(room_members.c.user_id == user_id)
            )).scalars())
            if not rooms_of_user:
                return set()
            gone = (await conn.execute(
                sa.select(events.c.room_id, events.c.state_key, events.c.json).where(
                    events.c.type == "m.room.member", events.c.room_id.in_(rooms_of_user),
                    events.c.stream_ordering > after, events.c.stream_ordering <= upto,
                    *_TIMELINE,
                )
            )).all()
            out: set[str] = set()
            left_rooms: set[str] = set()
            for room_id, state_key, raw in gone:
                if _membership_of(raw) in ("leave", "ban"):
                    out.add(state_key)
                    if state_key == user_id:
                        left_rooms.add(room_id)
            if left_rooms:
                out.update((await conn.execute(sa.select(room_members.c.user_id).where(
                    room_members.c.room_id.in_(sorted(left_rooms))))).scalars())
        out.discard(user_id)
        return out

    async def users_sharing_at(self, user_id: str, position: int) -> set[str]:
        """Users joined to a room `user_id` was joined to as of the stream position: the
        current membership rows, with those changed after `position` taken back to the
        membership event in force then."""
        async with self._engine.connect() as conn:
            mine = (await conn.execute(sa.select(room_members).where(room_members.c.user_id == user_id))).all()
            mine_then = await _memberships_at(conn, mine, position)
            rooms_then = sorted(room for (room, _), m in mine_then.items() if m == "join")
            if not rooms_then:
                return set()
            members = (await conn.execute(
                sa.select(room_members).where(room_members.c.room_id.in_(rooms_then))
            )).all()
            then = await _memberships_at(conn, members, position)
        return {u for (_, u), m in then.items() if m == "join" and u != user_id}

    async def get_membership(self, room_id: str, user_id: str) -> Membership | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(sa.select(room_members).where(
                room_members.c.room_id == room_id, room_members.c.user_id == user_id,
            ))).first()
        return _member(r) if r else None

    async def members_of_room(self, room_id: str, membership: str | None = None) -> list[Membership]:
        q = sa.select(room_members).where(room_members.c.room_id == room_id)
        if membership is not None:
            q = q.where(room_members.c.membership == membership)
        async with self._engine.connect() as conn:
            return [_member(r) for r in await conn.execute(q)]

    async def forget(self, room_id: str, user_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(room_members.update().where(
                room_members.c.room_id == room_id, room_members.c.user_id == user_id,
            ).values(forgotten=True))

    # -- aliases -----------------------------------------------------------

    async def create_alias(self, alias: str, room_id: str, creator: str) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(room_aliases.insert().values(
                    alias=alias, room_id=room_id, creator=creator,
                ))
        except IntegrityError:
            return False
        return True

    async def get_alias(self, alias: str) -> tuple[str, str | None] | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(
                sa.select(room_aliases).where(room_aliases.c.alias == alias)
            )).first()
        return (r.room_id, r.creator) if r else None

    async def delete_alias(self, alias: str) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(room_aliases.delete().where(room_aliases.c.alias == alias))
        return res.rowcount > 0

    async def aliases_of_room(self, room_id: str) -> list[str]:
        async with self._engine.connect() as conn:
            return [r.alias for r in await conn.execute(
                sa.select(room_aliases.c.alias).where(room_aliases.c.room_id == room_id)
            )]


# Timeline events only: an outlier, a rejected or a soft-failed membership never applied.
_TIMELINE = (events.c.outlier.is_(False), events.c.rejected.is_(False), events.c.soft_failed.is_(False))


def _membership_of(raw: str) -> str | None:
    membership = json.loads(raw).get("content", {}).get("membership")
    return membership if isinstance(membership, str) else None


async def _memberships_at(conn: AsyncConnection, rows: Sequence[sa.Row], position: int) -> dict[tuple[str, str], str]:
    """(room, user) -> membership as of `position`, from current rows: a row written after
    `position` is replaced by the newest membership event at or before it (none: no
    membership then)."""
    out = {(r.room_id, r.user_id): r.membership for r in rows if r.stream_ordering <= position}
    later = [(r.room_id, r.user_id) for r in rows if r.stream_ordering > position]
    for room_id in sorted({room for room, _ in later}):
        users = [u for room, u in later if room == room_id]
        found = (await conn.execute(
            sa.select(events.c.state_key, events.c.json).where(
                events.c.type == "m.room.member", events.c.room_id == room_id,
                events.c.state_key.in_(users), events.c.stream_ordering <= position, *_TIMELINE,
            ).order_by(events.c.stream_ordering)
        )).all()
        for state_key, raw in found:  # oldest first: the last one wins
            membership = _membership_of(raw)
            if membership is not None:
                out[(room_id, state_key)] = membership
    return out


def _member(r: sa.Row) -> Membership:
    return Membership(r.room_id, r.user_id, r.membership, r.event_id, r.sender, r.stream_ordering)
