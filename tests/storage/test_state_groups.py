"""State groups: any event's state is read back exactly, from deltas and snapshots,
without replaying the room, on both databases."""

from __future__ import annotations

import random

from homeserver.core.records import PersistBatch
from homeserver.core.state_groups import MAX_CHAIN, plan_state_group
from storage.engine import create_engine
from storage.migrate import migrate
from storage.stores.events import EventStore
from storage.stores.state import StateStore


async def test_every_group_reads_back_exactly_from_a_cold_cache(db_url: str) -> None:
    engine = create_engine(db_url)
    await migrate(engine)
    try:
        writer, rng = EventStore(engine), random.Random(7)
        truth: dict[int, dict[tuple[str, str], str]] = {}
        state: dict[tuple[str, str], str] = {}
        prev, chain = None, 0
        groups = []
        for gid in range(1, 3 * MAX_CHAIN + 20):
            before = dict(state)
            key = ("m.room.member", f"@u{rng.randrange(40)}:hs") if gid % 7 else ("m.room.topic", "")
            if rng.random() < 0.1 and key in state:
                del state[key]  # state resolution can drop a key
            else:
                state[key] = f"$e{gid}"
            group = plan_state_group(gid, "!r:hs", prev, chain, before, state)
            groups.append(group)
            truth[gid] = dict(state)
            prev, chain = group.id, group.chain_length
        await writer.persist(PersistBatch(state_groups=groups))
        assert any(g.prev_group is None for g in groups[1:]), "long chains must be cut by snapshots"

        cold = StateStore(engine)  # nothing cached: every read walks the chain in the database
        for gid in (1, MAX_CHAIN, MAX_CHAIN + 1, 2 * MAX_CHAIN + 3, len(groups)):
            assert await cold.get_state(gid) == truth[gid]
        for gid in range(1, len(groups) + 1):  # and again, now partly cached
            assert await cold.get_state(gid) == truth[gid]
    finally:
        await engine.dispose()


def test_big_rooms_get_longer_chains() -> None:
    big = {("m.room.member", f"@u{i}:hs"): f"$e{i}" for i in range(10_000)}
    more = {**big, ("m.room.member", "@new:hs"): "$new"}
    delta = plan_state_group(2, "!r:hs", 1, 500, big, more)
    assert delta.prev_group == 1 and delta.entries == {("m.room.member", "@new:hs"): "$new"}
    snapshot = plan_state_group(3, "!r:hs", 2, 1000, more, more)
    assert snapshot.prev_group is None and len(snapshot.entries) == 10_001
