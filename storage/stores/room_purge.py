"""Erasing a room from the database: the admin API's ``DELETE /v2/rooms/{roomId}`` with
``purge`` (Synapse's "purge room").

Every row that belongs to the room goes in one transaction: its events (timeline and
outliers) with their edges, redactions, relations, search rows and pending purges, its
state groups and current state, memberships, room account data, receipts, aliases,
notifications and pending pushes, the room directory entries, AI records and the
server-notices mapping. Afterwards the server knows nothing of the room.

Kept on purpose: the deletion's own status row (``delete_status`` must still answer),
the block (a purged room stays blocked if it was), event reports (the moderation record
outlives the room, as in Synapse), users' encrypted key backups (the user's data, not the
room's), and the federation outbox (its PDUs are stored whole and are the removals the
other servers must still hear of). Media rows are not linked to rooms here, so uploads
are not touched; the media admin API deletes or quarantines them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.schema import (
    account_data,
    ai_interaction_records,
    appservice_room_list,
    current_state,
    event_edges,
    event_relations,
    event_search,
    events,
    notifications,
    pending_purges,
    push_queue,
    receipts,
    redactions,
    room_aliases,
    room_members,
    room_state_meta,
    rooms,
    server_notice_rooms,
    state_group_entries,
    state_groups,
)

_CHUNK = 500  # ids per IN (...) list: well under every driver's parameter limit

# Tables keyed by the room id itself.
_BY_ROOM: Sequence[sa.Table] = (
    event_relations, event_search, notifications, push_queue, receipts, current_state,
    room_members, room_state_meta, room_aliases, appservice_room_list, ai_interaction_records,
    server_notice_rooms,
)


class RoomPurgeStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def purge_room(self, room_id: str) -> list[str]:
        """Delete everything stored for ``room_id``; the ids of the events removed (so
        caches can drop them). Purging a room that is not stored removes nothing."""
        async with self._engine.begin() as conn:
            event_ids = list((await conn.execute(
                sa.select(events.c.event_id).where(events.c.room_id == room_id)
            )).scalars())
            # The events first: tasks writing rows derived from events lock the events
            # first too (still_stored), so both take their locks in one order.
            await conn.execute(events.delete().where(events.c.room_id == room_id))
            for start in range(0, len(event_ids), _CHUNK):
                chunk = event_ids[start:start + _CHUNK]
                await conn.execute(event_edges.delete().where(event_edges.c.event_id.in_(chunk)))
                await conn.execute(redactions.delete().where(
                    sa.or_(redactions.c.event_id.in_(chunk), redactions.c.redacts.in_(chunk))))
                await conn.execute(pending_purges.delete().where(pending_purges.c.event_id.in_(chunk)))
            groups = sa.select(state_groups.c.id).where(state_groups.c.room_id == room_id)
            await conn.execute(state_group_entries.delete().where(state_group_entries.c.group_id.in_(groups)))
            await conn.execute(state_groups.delete().where(state_groups.c.room_id == room_id))
            for table in _BY_ROOM:
                await conn.execute(table.delete().where(table.c.room_id == room_id))
            await conn.execute(account_data.delete().where(account_data.c.room_id == room_id))
            await conn.execute(rooms.delete().where(rooms.c.room_id == room_id))
        return event_ids

    async def room_exists(self, room_id: str) -> bool:
        async with self._engine.connect() as conn:
            return (await conn.execute(
                sa.select(rooms.c.room_id).where(rooms.c.room_id == room_id)
            )).first() is not None


async def still_stored(conn: AsyncConnection, event_ids: Iterable[str]) -> set[str]:
    """Of ``event_ids``, those whose event is stored, read under a shared lock: a task
    that derives rows from events after their commit (search index, notifications) and
    writes in the same transaction cannot resurrect rows of a room purged meanwhile."""
    ids = list(dict.fromkeys(event_ids))
    found: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        found.update((await conn.execute(
            sa.select(events.c.event_id).where(events.c.event_id.in_(ids[start:start + _CHUNK]))
            .with_for_update(read=True)
        )).scalars())
    return found
