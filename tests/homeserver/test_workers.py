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
    # Long-polls on b (each may also end early for presence); the send happens on a.
    waiting = asyncio.create_task(sync_until(bob_b, since, lambda s: bool(bodies(s)), room))
    await asyncio.sleep(0)
    await alice.send(room, "across workers")
    seen, _ = await waiting
    assert bodies(seen) == ["across workers"]


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


async def test_typing_and_presence_set_on_one_worker_are_seen_on_the_other(
    workers: tuple[Matrix, Matrix],
) -> None:
    a, b = workers
    alice = await a.register("alice")
    bob = await b.register("bob")
    room = await alice.create_room(preset="public_chat")
    await on(a, bob).join(room)
    since = (await bob.sync())["next_batch"]
    await alice.put(f"/rooms/{room}/typing/{alice.user_id}", {"typing": True, "timeout": 30_000})

    async def typing_seen() -> list[str]:
        nonlocal since
        while True:
            got = await bob.sync(since, timeout=30_000)
            since = got["next_batch"]
            for e in got["rooms"]["join"].get(room, {}).get("ephemeral", {}).get("events", []):
                if e["type"] == "m.typing" and e["content"]["user_ids"]:
                    return list(e["content"]["user_ids"])

    assert await asyncio.wait_for(typing_seen(), 60) == [alice.user_id]
    await alice.put(f"/presence/{alice.user_id}/status", {"presence": "unavailable", "status_msg": "lunch"})

    async def presence_seen() -> dict[str, Any]:
        nonlocal since
        while True:
            got = await bob.sync(since, timeout=30_000)
            since = got["next_batch"]
            for e in got.get("presence", {}).get("events", []):
                if e["sender"] == alice.user_id and e["content"].get("status_msg") == "lunch":
                    return dict(e["content"])

    assert (await asyncio.wait_for(presence_seen(), 60))["presence"] == "unavailable"
    status = await on(b, alice).get(f"/presence/{alice.user_id}/status")
    assert (status["presence"], status["status_msg"]) == ("unavailable", "lunch")


async def test_a_token_logged_out_on_one_worker_is_refused_by_the_other(workers: tuple[Matrix, Matrix]) -> None:
    a, b = workers
    alice = await a.register("alice")
    assert (await on(b, alice).get("/account/whoami"))["user_id"] == alice.user_id  # cached on b
    await alice.post("/logout")
    body = await on(b, alice).get("/account/whoami", expect=401)
    assert body["errcode"] == "M_UNKNOWN_TOKEN"


async def test_to_device_and_account_data_written_on_one_worker_reach_the_other(
    workers: tuple[Matrix, Matrix],
) -> None:
    a, b = workers
    alice = await a.register("alice")
    bob = await b.register("bob")
    since = (await bob.sync())["next_batch"]
    await alice.put("/sendToDevice/m.test/t1", {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}})
    await on(a, bob).put(f"/user/{bob.user_id}/account_data/m.test.mine", {"v": 2})
    seen_device: list[Any] = []
    seen_data: list[Any] = []

    async def both() -> None:
        nonlocal since
        while not (seen_device and seen_data):
            got = await bob.sync(since, timeout=30_000)
            since = got["next_batch"]
            seen_device.extend(got.get("to_device", {}).get("events", []))
            seen_data.extend(e for e in got["account_data"]["events"] if e["type"] == "m.test.mine")

    await asyncio.wait_for(both(), 60)
    assert [e["content"] for e in seen_device] == [{"n": 1}]
    assert [e["content"] for e in seen_data] == [{"v": 2}]


async def test_users_on_different_workers_chat_in_one_room(workers: tuple[Matrix, Matrix]) -> None:
    """Both workers write to the room: one holds its shard, the other forwards its sends
    (and joins) there. Each user sees every message once, in one order."""
    a, b = workers
    alice = await a.register("alice")
    bob = await b.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)  # on b
    a_since = (await alice.sync())["next_batch"]
    b_since = (await bob.sync())["next_batch"]
    turns = [(alice, "hello from a"), (bob, "hello from b"), (alice, "a again"), (bob, "b again")]
    for user, text in turns:
        await user.send(room, text)
    want = [text for _, text in turns]
    seen_a, _ = await sync_until(alice, a_since, lambda s: len(bodies(s)) >= 4, room)
    seen_b, _ = await sync_until(bob, b_since, lambda s: len(bodies(s)) >= 4, room)
    assert bodies(seen_a) == bodies(seen_b) == want
    # The stored history has the same one order.
    history = [e for e in (await bob.messages(room, "b", limit=10))["chunk"] if e["type"] == "m.room.message"]
    assert [e["content"]["body"] for e in reversed(history)] == want
