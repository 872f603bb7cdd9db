"""Two workers of one homeserver in one test process: each its own app, database pool,
Redis connections and subscription, sharing the database and Redis (docs/workers.md).
The multi-process drills (SIGKILL, three workers) are in tests/integration/test_workers.py.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from config.schema import HomeserverConfig, RedisConfig, WorkersConfig
from tests.helpers import Matrix, User, bodies, timeline

REDIS_URL = "redis://127.0.0.1:6379/0"


def on(hs: Matrix, user: User) -> User:
    """The same user (same access token) talking to another worker."""
    return User(hs, user.user_id, user.token, user.device_id)


@pytest.fixture
async def workers(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> tuple[Matrix, Matrix]:
    # A server name of its own: tests running side by side never share keys or channel.
    cfg = attrs.evolve(
        hs_config, server_name=f"w{secrets.token_hex(4)}.test", redis=RedisConfig(url=REDIS_URL),
    )
    a = await start_hs(attrs.evolve(cfg, workers=WorkersConfig(name="a")))
    b = await start_hs(attrs.evolve(cfg, workers=WorkersConfig(name="b")))
    return a, b


async def sync_until(
    user: User, since: str, done: Callable[[list[dict[str, Any]]], bool], room: str,
) -> tuple[list[dict[str, Any]], str]:
    """Long-poll (30 s each) until `done(timeline so far)`; bounded overall."""
    seen: list[dict[str, Any]] = []

    async def loop() -> str:
        nonlocal since
        while not done(seen):
            got = await user.sync(since, timeout=30_000)
            seen.extend(timeline(got, room))
            since = got["next_batch"]
        return since

    return seen, await asyncio.wait_for(loop(), 60)


async def test_a_long_poll_on_one_worker_wakes_for_a_send_on_another(workers: tuple[Matrix, Matrix]) -> None:
    a, b = workers
    alice = await a.register("alice")
    bob_b = await b.register("bob")
    room = await alice.create_room(preset="public_chat")
    await on(a, bob_b).join(room)
    since = (await bob_b.sync())["next_batch"]
    waiting = asyncio.create_task(bob_b.sync(since, timeout=30_000))
    await asyncio.sleep(0)  # the poll is on its way; whether it is parked yet does not matter
    await alice.send(room, "across workers")
    got = await asyncio.wait_for(waiting, 30)
    assert bodies(timeline(got, room)) == ["across workers"]


async def test_a_burst_reaches_the_other_worker_once_each_and_in_order(workers: tuple[Matrix, Matrix]) -> None:
    a, b = workers
    alice = await a.register("alice")
    bob = await a.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    since = (await on(b, bob).sync())["next_batch"]
    sent = [f"m{i}" for i in range(30)]

    async def send_all() -> None:
        for text in sent:
            await alice.send(room, text)

    sender = asyncio.create_task(send_all())
    seen, _ = await sync_until(on(b, bob), since, lambda s: len(bodies(s)) >= len(sent), room)
    await sender
    assert bodies(seen) == sent
    assert len({e["event_id"] for e in seen}) == len(seen)


async def test_state_written_on_one_worker_is_read_on_the_other(workers: tuple[Matrix, Matrix]) -> None:
    """Room heads other workers had cached are dropped when a notice names the room."""
    a, b = workers
    alice = await a.register("alice")
    room = await alice.create_room(name="before")
    assert (await on(b, alice).state(room, "m.room.name"))["name"] == "before"  # cached on b now
    since = (await on(b, alice).sync())["next_batch"]
    await alice.put_state(room, "m.room.name", {"name": "after"})
    await sync_until(on(b, alice), since, lambda s: any(e["type"] == "m.room.name" for e in s), room)
    assert (await on(b, alice).state(room, "m.room.name"))["name"] == "after"
