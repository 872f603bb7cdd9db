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


async def test_upgrade_from_version_10_to_12_across_servers(pair: dict[str, Matrix]) -> None:  # noqa: F811
    """alice (hs1) upgrades a v10 room bob (hs2) is in to v12 (spec "Room Upgrades"): hs2
    sees the tombstone, bob follows it into the new room (a v12 id: the server is named),
    whose create event points back, with bob's power carried over; messages flow both ways."""
    hs1, hs2 = pair["hs1.test"], pair["hs2.test"]
    alice = await hs1.register("alice")
    bob = await hs2.register("bob")
    old = await alice.create_room(room_version="10", preset="public_chat", name="Before")
    assert await bob.join(old) == {"room_id": old}
    await alice.put_state(old, "m.room.power_levels", {"users": {alice.user_id: 100, bob.user_id: 50}})
    await _until(lambda: _state_is(bob, old, "m.room.power_levels", "users",
                                   {alice.user_id: 100, bob.user_id: 50}), "no PL on hs2")

    new = (await alice.post(f"/rooms/{q(old)}/upgrade", {"new_version": "12"}))["replacement_room"]
    assert ":" not in new  # a v12 room id

    async def tombstoned() -> bool:
        got = await hs2.raw("GET", f"/_matrix/client/v3/rooms/{q(old)}/state/m.room.tombstone/", token=bob.token)
        return got.status == 200 and got.json.get("replacement_room") == new

    await _until(tombstoned, "no tombstone on hs2")
    assert await bob.post(f"/join/{q(new)}?server_name=hs1.test", {}) == {"room_id": new}
    create = await bob.state(new, "m.room.create")
    assert create["room_version"] == "12"
    assert create["predecessor"]["room_id"] == old
    assert (await bob.state(new, "m.room.name"))["name"] == "Before"
    assert (await bob.state(new, "m.room.power_levels"))["users"].get(bob.user_id) == 50

    await alice.send(new, "upgraded, from alice")
    await bob.send(new, "upgraded, from bob")
    want = {"upgraded, from alice", "upgraded, from bob"}
    await _until(lambda: _has(alice, new, want), "hs1 never saw bob's message in the new room")
    await _until(lambda: _has(bob, new, want), "hs2 never saw alice's message in the new room")
    # The old room's power levels are raised (spec: "restrict the old room"), on hs2 too.
    await _until(lambda: _state_is(bob, old, "m.room.power_levels", "events_default", 50), "old room not restricted")
