"""Shared stream positions over a real Redis (homeserver/outbound/redis_bus.py).

Two RedisBus objects stand for two worker processes: each has its own connections
and subscription, as separate processes would.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from homeserver.outbound.redis_bus import RedisBus
from homeserver.services.notifier import Notifier
from homeserver.services.replication import BlockIds, Replication, Visibility

REDIS_URL = "redis://127.0.0.1:6379/0"


class Heard:
    """What one worker's subscription delivered, in order."""

    def __init__(self) -> None:
        self.notices: list[tuple[str, int, str, str]] = []
        self.changed = asyncio.Event()

    def handle(self, stream: str, position: int, worker: str, payload: str) -> None:
        self.notices.append((stream, position, worker, payload))
        self.changed.set()

    async def gap(self) -> None:
        pass

    async def until(self, check: object, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not check():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def namespace() -> str:
    return f"bus-{secrets.token_hex(6)}.test"


async def _bus(namespace: str, worker: str, heard: Heard | None = None, lease_ms: int = 15_000) -> RedisBus:
    bus = RedisBus(REDIS_URL, namespace, worker, lease_ms=lease_ms)
    if heard is not None:
        bus.start(heard.handle, heard.gap)
        await bus.subscribed()
    return bus


@pytest.fixture
async def pair(namespace: str) -> AsyncIterator[tuple[RedisBus, RedisBus, Heard]]:
    heard = Heard()
    a = await _bus(namespace, "a", heard)
    b = await _bus(namespace, "b")
    try:
        yield a, b, heard
    finally:
        await a.close()
        await b.close()


async def test_the_position_never_passes_an_id_still_in_flight(
    pair: tuple[RedisBus, RedisBus, Heard],
) -> None:
    a, b, heard = pair
    await a.seed("events", 41)
    assert await a.persisted("events") == 41
    (first,) = await a.take("events", 1)
    second = await b.take("events", 2)
    assert (first, second) == (42, [43, 44])
    # b commits first: its notice goes out, but the position stays below a's id.
    assert await b.finish("events", second, "b-commit") == 41
    await a.finish("events", [first], "a-commit")
    await heard.until(lambda: len(heard.notices) == 3)
    assert heard.notices == [
        ("events", 41, "a", ""),  # persisted() above: the position's first notice
        ("events", 41, "b", "b-commit"),
        ("events", 44, "a", "a-commit"),
    ]


async def test_a_failed_commit_releases_its_ids(pair: tuple[RedisBus, RedisBus, Heard]) -> None:
    a, b, heard = pair
    await a.seed("events", 10)
    (lost,) = await a.take("events", 1)
    (kept,) = await b.take("events", 1)
    await b.finish("events", [kept], "b")
    assert await a.finish("events", [lost], "") == kept  # released, nothing to publish but the move
    await heard.until(lambda: heard.notices[-1][1] == kept)
    assert [n[3] for n in heard.notices] == ["b", ""]


async def test_a_dead_workers_ids_stop_holding_positions_back_after_its_lease(namespace: str) -> None:
    heard = Heard()
    watcher = await _bus(namespace, "watcher", heard, lease_ms=200)
    dead = await _bus(namespace, "dead", lease_ms=300)  # never ticks: like a SIGKILLed process
    live = await _bus(namespace, "live")
    try:
        await live.seed("events", 100)
        assert await watcher.persisted("events") == 100  # the watcher now ticks this stream
        await dead.take("events", 1)  # 101, never finished
        (mine,) = await live.take("events", 1)
        assert await live.finish("events", [mine], "live") == 100
        # Within a lease and a tick the watcher's tick drops 101 and the position moves on.
        await heard.until(lambda: any(n[1] == mine for n in heard.notices))
        assert await live.persisted("events") == mine
    finally:
        await dead._redis.aclose()  # its lease is left to expire, as a killed process's is
        await live.close()
        await watcher.close()


async def test_ephemeral_posts_share_one_counter_across_workers(pair: tuple[RedisBus, RedisBus, Heard]) -> None:
    a, b, heard = pair
    await a.seed("typing", 1_000)
    p1 = await a.post("typing", "x")
    p2 = await b.post("typing", "y")
    assert p2 == p1 + 1 > 1_000
    await heard.until(lambda: len(heard.notices) == 2)
    assert heard.notices == [("typing", p1, "a", "x"), ("typing", p2, "b", "y")]


async def test_block_ids_never_collide_between_workers(pair: tuple[RedisBus, RedisBus, Heard]) -> None:
    a, b, _ = pair
    await a.seed_block("groups", 500)
    ga, gb = BlockIds(a, "groups"), BlockIds(b, "groups")
    taken = [*await ga.take(3), *await gb.take(3), *await ga.take(200)]
    assert len(set(taken)) == len(taken) and min(taken) > 500
    await a.seed_block("outliers", -7, step=-1)
    oa, ob = BlockIds(a, "outliers", step=-1), BlockIds(b, "outliers", step=-1)
    down = [*await oa.take(2), *await ob.take(2)]
    assert len(set(down)) == 4 and max(down) < -7


class NoCaches:
    def forget_room(self, room_id: str) -> None:
        pass

    def apply(self, commit: object, moved: bool) -> None:
        pass

    def reset(self, floor: int) -> None:
        pass


async def test_a_commit_wakes_its_users_only_once_the_position_covers_it(
    pair: tuple[RedisBus, RedisBus, Heard],
) -> None:
    """Worker b's commit (id 2) is published before a's (id 1) is durable: b's users must
    not be woken at a position below their event, else they sync, see nothing, and wait on."""
    a, _, _ = pair
    notifier = Notifier()
    replication = Replication(
        bus=a, notifier=notifier, caches=NoCaches(), visibility=Visibility(), ephemeral={}, on_broadcast={},
    )
    waiting = notifier.register("@bob:x")
    replication.handle("events", 0, "b", '{"room":null,"moved":false,"wake":["@bob:x"],"pos":2,'
                       '"members":[],"redactions":[],"events":[]}')
    assert notifier.events_position == 0 and not waiting.done()
    replication.handle("events", 2, "a", '{"room":null,"moved":false,"wake":[],"pos":1,'
                       '"members":[],"redactions":[],"events":[]}')
    assert notifier.events_position == 2 and waiting.done()
