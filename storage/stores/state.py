"""State groups: the room state at any event without replaying the room.

How a group is planned (snapshot or delta) is homeserver.core.state_groups;
this store writes and reads them. Most events (messages) add no group at all.
Groups never change once written, so they are cached in memory.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.state_groups import NewStateGroup, StateKey, StateMap
from storage.schema import state_group_entries, state_groups


class StateStore:
    def __init__(self, engine: AsyncEngine, cache_entries: int = 200_000) -> None:
        self._engine = engine
        self._cache: OrderedDict[int, tuple[StateMap, int]] = OrderedDict()
        # Bounded by state entries, not groups: one group of a 10,000-member room
        # weighs as much as a thousand groups of small rooms.
        self._cache_entries = cache_entries
        self._cached = 0

    def remember(self, group: NewStateGroup, full_state: StateMap) -> None:
        """Seed the cache with a group just written, so the next read is free."""
        self._put(group.id, dict(full_state), group.chain_length)

    def _put(self, group_id: int, state: StateMap, chain: int) -> None:
        old = self._cache.pop(group_id, None)
        if old is not None:
            self._cached -= len(old[0])
        self._cache[group_id] = (state, chain)
        self._cached += len(state)
        while self._cached > self._cache_entries and len(self._cache) > 1:
            _, (evicted, _) = self._cache.popitem(last=False)
            self._cached -= len(evicted)

    async def get_state(self, group_id: int) -> StateMap:
        """The full state map of a group (a fresh dict the caller may modify)."""
        state, _ = await self.get_state_and_chain(group_id)
        return dict(state)

    async def get_state_and_chain(self, group_id: int) -> tuple[StateMap, int]:
        cached = self._cache.get(group_id)
        if cached is not None:
            self._cache.move_to_end(group_id)
            return cached
        async with self._engine.connect() as conn:
            chain: list[tuple[int, int | None, int]] = []
            # The whole chain in one query (recursive CTE: SQLite and MariaDB both have it).
            links = await self._chain_links(conn, group_id)
            gid: int | None = group_id
            base: StateMap | None = None
            while gid is not None:
                hit = self._cache.get(gid)
                if hit is not None:
                    base = dict(hit[0])
                    break
                if gid not in links:
                    raise KeyError(f"unknown state group {gid}")
                prev, length = links[gid]
                chain.append((gid, prev, length))
                gid = prev
            ids = [c[0] for c in chain]
            rows = (await conn.execute(
                sa.select(state_group_entries).where(state_group_entries.c.group_id.in_(ids))
            )).all() if ids else []
        by_group: dict[int, list[tuple[StateKey, str | None]]] = {}
        for r in rows:
            by_group.setdefault(r.group_id, []).append(((r.type, r.state_key), r.event_id))
        state: StateMap = base or {}
        for gid_, _prev, _len in reversed(chain):
            for key, ev in by_group.get(gid_, ()):
                if ev is None:
                    state.pop(key, None)
                else:
                    state[key] = ev
        length = chain[0][2] if chain else self._cache[group_id][1]
        self._put(group_id, dict(state), length)
        return state, length

    @staticmethod
    async def _chain_links(conn: Any, group_id: int) -> dict[int, tuple[int | None, int]]:
        """group id -> (prev group, chain length) for the group and all it builds on."""
        g = state_groups
        chain = (
            sa.select(g.c.id, g.c.prev_group, g.c.chain_length).where(g.c.id == group_id)
            .cte("chain", recursive=True)
        )
        chain = chain.union_all(
            sa.select(g.c.id, g.c.prev_group, g.c.chain_length).join(chain, g.c.id == chain.c.prev_group)
        )
        rows = await conn.execute(sa.select(chain.c.id, chain.c.prev_group, chain.c.chain_length))
        return {r.id: (r.prev_group, r.chain_length) for r in rows}
