"""Rooms of old and new versions between two Tricolor servers (in process, over TLS):
create on hs1, join from hs2, messages both ways, and a state fork (both servers
change the topic at once) that both servers resolve to the same state.
hs2 runs on each test database, hs1 on SQLite (see test_media_federation.py).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.federation.test_media_federation import pair  # noqa: F401  (the fixture)
from tests.helpers import Matrix, User, q

WAIT_S = 20.0


async def _until(check, what: str) -> None:
    """Poll ``check`` (bounded): federation delivery is asynchronous."""
    async with asyncio.timeout(WAIT_S):
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)
    raise AssertionError(what)  # pragma: no cover - timeout raises first


async def _bodies(user: User, room: str) -> list[str]:
    chunk = (await user.messages(room, "b", limit=50))["chunk"]
    return [e["content"].get("body") for e in reversed(chunk) if e["type"] == "m.room.message"]


@pytest.mark.parametrize("version", ["1", "6", "9", "11", "12"])
async def test_room_version_across_servers(pair: dict[str, Matrix], version: str) -> None:  # noqa: F811
    hs1, hs2 = pair["hs1.test"], pair["hs2.test"]
    alice = await hs1.register("alice")
    bob = await hs2.register("bob")
    room = await alice.create_room(room_version=version, preset="public_chat")
    assert (":" in room) is (version != "12")
    # A v12 room id names no server: hs2 must be told where to join.
    assert await bob.post(f"/join/{q(room)}?server_name=hs1.test", {}) == {"room_id": room}
    create = await bob.state(room, "m.room.create")
    assert create["room_version"] == version

    await alice.send(room, "from alice")
    await bob.send(room, "from bob")
    want = {"from alice", "from bob"}
    await _until(lambda: _has(alice, room, want), "hs1 never saw bob's message")
    await _until(lambda: _has(bob, room, want), "hs2 never saw alice's message")
    # hs2 backfills the room's start, create event included (v12: it has no room_id).
    chunk = (await bob.messages(room, "b", limit=50))["chunk"]
    assert [e["room_id"] for e in chunk if e["type"] == "m.room.create"] == [room]

    # Give bob the power to change the topic, then both change it at once.
    if version == "12":
        pl = {"users": {bob.user_id: 100}}
    else:
        pl = {"users": {alice.user_id: 100, bob.user_id: 100}}
    await alice.put_state(room, "m.room.power_levels", pl)
    await _until(
        lambda: _state_is(bob, room, "m.room.power_levels", "users", pl["users"]), "no PL on hs2"
    )
    await asyncio.gather(
        alice.put_state(room, "m.room.topic", {"topic": "alice's"}),
        bob.put_state(room, "m.room.topic", {"topic": "bob's"}),
    )
    # A message from each side merges the forks; then both must agree.
    await alice.send(room, "after a")
    await bob.send(room, "after b")
    await _until(lambda: _has(alice, room, {"after b"}), "hs1 never merged")
    await _until(lambda: _has(bob, room, {"after a"}), "hs2 never merged")

    async def agree() -> bool:
        a = (await alice.state(room, "m.room.topic"))["topic"]
        b = (await bob.state(room, "m.room.topic"))["topic"]
        return a == b

    await _until(agree, "the servers resolved the topic differently")
    assert (await alice.state(room, "m.room.topic"))["topic"] in ("alice's", "bob's")
    members_a = await alice.get(f"/rooms/{q(room)}/joined_members")
    members_b = await bob.get(f"/rooms/{q(room)}/joined_members")
    assert set(members_a["joined"]) == set(members_b["joined"]) == {alice.user_id, bob.user_id}


async def _has(user: User, room: str, bodies: set[str]) -> bool:
    return bodies <= set(await _bodies(user, room))


async def _state_is(user: User, room: str, event_type: str, key: str, value: object) -> bool:
    got = await user.state(room, event_type, expect=200)
    return got.get(key) == value
