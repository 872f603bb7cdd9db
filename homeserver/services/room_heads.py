"""A room's head: current state, forward extremities, depth and members, in memory.

Building a local event needs no database read. The room writer is the only one
that moves a head (RoomHeads.put, after commit); readers load a head once from
the database and then see the writer's updates.
"""

from __future__ import annotations

import attrs

from homeserver.core.ids import server_of
from homeserver.core.state_groups import StateMap
from storage.stores.rooms import RoomStore
from storage.stores.state import StateStore


@attrs.define
class RoomHead:
    room_id: str
    room_version: str
    state: StateMap
    state_group: int
    chain_length: int
    extremities: list[str]
    max_depth: int
    members: dict[str, str]  # user id -> membership

    def copy(self) -> RoomHead:
        return attrs.evolve(
            self, state=dict(self.state), extremities=list(self.extremities),
            members=dict(self.members),
        )

    def joined_local(self, server_name: str) -> list[str]:
        return [u for u, m in self.members.items() if m == "join" and server_of(u) == server_name]


class RoomHeads:
    def __init__(self, rooms: RoomStore, state: StateStore) -> None:
        self._rooms = rooms
        self._state = state
        self._heads: dict[str, RoomHead] = {}

    def cached(self, room_id: str) -> RoomHead | None:
        return self._heads.get(room_id)

    async def get(self, room_id: str) -> RoomHead | None:
        head = self._heads.get(room_id)
        if head is not None:
            return head
        room = await self._rooms.get_room(room_id)
        meta = await self._rooms.get_room_meta(room_id)
        if room is None or meta is None:
            return None
        group, depth, extremities = meta
        state, chain = await self._state.get_state_and_chain(group)
        members = {
            m.user_id: m.membership for m in await self._rooms.members_of_room(room_id)
        }
        head = RoomHead(room_id, room.room_version, dict(state), group, chain, extremities, depth, members)
        # The writer may have moved the room while we read: its head wins.
        return self._heads.setdefault(room_id, head)

    def put(self, head: RoomHead) -> None:
        """The room writer's, after a commit: the room's new head."""
        self._heads[head.room_id] = head

    def forget(self, room_id: str) -> None:
        """Read the room's head again when next asked: another worker moved the room, or it
        was purged from storage and has no head any more."""
        self._heads.pop(room_id, None)

    def clear(self) -> None:
        self._heads.clear()
