"""Simplified sliding sync (MSC4186) in process, on SQLite and MariaDB. The requests are
written from the MSC (matrix-rust-sdk's Python bindings are not on PyPI as wheels), in
the shape matrix-rust-sdk sends them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from config.schema import HomeserverConfig
from tests.helpers import Matrix, User, assert_error, q

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def ss(user: User, body: dict, pos: str | None = None, timeout: int = 0, expect: int = 200) -> dict:
    params = {"timeout": str(timeout)}
    if pos:
        params["pos"] = pos
    return await user.post(SS, body, params=params, expect=expect)


def timeline_bodies(room: dict) -> list[str]:
    return [e["content"].get("body") for e in room.get("timeline", []) if e["type"] == "m.room.message"]


async def test_versions_advertise_simplified_sliding_sync(hs: Matrix) -> None:
    versions = await hs.call("GET", "/_matrix/client/versions")
    assert versions["unstable_features"]["org.matrix.simplified_msc3575"] is True


async def test_a_list_window_sorted_by_recent_activity_with_names_and_heroes(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    named = await alice.create_room(name="Named", preset="public_chat")
    unnamed = await alice.create_room(preset="public_chat")
    quiet = await alice.create_room(name="Quiet", preset="public_chat")
    await alice.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice"})
    await bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob"})
    await bob.join(unnamed)
    await alice.send(named, "older")
    await alice.send(unnamed, "newest")
    got = await ss(alice, {"lists": {"all": {
        "ranges": [[0, 1]], "timeline_limit": 1,
        "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"], ["m.room.create", ""]],
    }}})
    listed = got["lists"]["all"]
    assert listed["count"] == 3
    assert listed["ops"] == [{"op": "SYNC", "range": [0, 1], "room_ids": [unnamed, named]}]
    assert quiet not in got["rooms"]  # outside the window
    room = got["rooms"][unnamed]
    assert room["initial"] is True and "name" not in room
    assert room["heroes"] == [{"user_id": bob.user_id, "displayname": "Bob"}]
    assert timeline_bodies(room) == ["newest"] and room["limited"] is True and room["prev_batch"]
    assert room["joined_count"] == 2 and room["invited_count"] == 0
    assert room["bump_stamp"] > got["rooms"][named]["bump_stamp"]
    state_keys = {(e["type"], e["state_key"]) for e in room["required_state"]}
    assert ("m.room.create", "") in state_keys and ("m.room.member", alice.user_id) in state_keys
    assert ("m.room.member", bob.user_id) not in state_keys  # $LAZY: only the timeline's senders
    assert got["rooms"][named]["name"] == "Named"
    assert room["notification_count"] == 0


async def test_incremental_pos_gives_only_changes_with_num_live(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(name="R", preset="public_chat")
    await bob.join(room)
    body = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 5, "required_state": [["*", "*"]]}}}
    first = await ss(bob, body)
    await alice.send(room, "new one")
    second = await ss(bob, body, pos=first["pos"])
    section = second["rooms"][room]
    assert "initial" not in section
    assert timeline_bodies(section) == ["new one"] and section["num_live"] == 1
    assert section["limited"] is False
    assert "required_state" not in section  # nothing in the state changed
    third = await ss(bob, body, pos=second["pos"])
    assert third["rooms"] == {}


async def test_me_and_wildcards_in_required_state(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    got = await ss(bob, {"room_subscriptions": {room: {
        "timeline_limit": 0, "required_state": [["m.room.member", "$ME"], ["m.room.join_rules", "*"]],
    }}})
    keys = {(e["type"], e["state_key"]) for e in got["rooms"][room]["required_state"]}
    assert keys == {("m.room.member", bob.user_id), ("m.room.join_rules", "")}
    assert "timeline" not in got["rooms"][room]


async def test_room_subscription_and_extensions(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    event = await alice.send(room, "read me")
    await alice.post(f"/rooms/{q(room)}/receipt/m.read/{q(event)}", {})
    await alice.put(f"/rooms/{q(room)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000})
    await bob.put(f"/user/{q(bob.user_id)}/account_data/m.test", {"x": 1})
    await bob.put(f"/user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.tag.test", {"y": 2})
    await alice.put("/sendToDevice/m.test/t1", {"messages": {bob.user_id: {bob.device_id: {"hi": 1}}}})
    body = {
        "room_subscriptions": {room: {"timeline_limit": 10, "required_state": []}},
        "extensions": {
            "to_device": {"enabled": True}, "e2ee": {"enabled": True},
            "account_data": {"enabled": True}, "receipts": {"enabled": True},
            "typing": {"enabled": True},
        },
    }
    got = await ss(bob, body)
    assert timeline_bodies(got["rooms"][room]) == ["read me"]
    ext = got["extensions"]
    assert [e["content"] for e in ext["to_device"]["events"]] == [{"hi": 1}]
    assert "signed_curve25519" in ext["e2ee"]["device_one_time_keys_count"]
    assert {"type": "m.test", "content": {"x": 1}} in ext["account_data"]["global"]
    assert ext["account_data"]["rooms"][room] == [{"type": "m.tag.test", "content": {"y": 2}}]
    receipt = ext["receipts"]["rooms"][room]
    assert receipt["type"] == "m.receipt" and alice.user_id in receipt["content"][event]["m.read"]
    assert ext["typing"]["rooms"][room]["content"]["user_ids"] == [alice.user_id]
    # the next request (to_device since = the given next_batch) no longer carries them
    body["extensions"]["to_device"]["since"] = ext["to_device"]["next_batch"]
    later = await ss(bob, body, pos=got["pos"])
    assert later["extensions"]["to_device"]["events"] == []


async def test_a_waiting_request_returns_when_a_message_arrives(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    body = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 3, "required_state": []}}}
    first = await ss(bob, body)
    waiting = asyncio.create_task(ss(bob, body, pos=first["pos"], timeout=20_000))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await alice.send(room, "wake up")
    got = await asyncio.wait_for(waiting, 15)
    assert timeline_bodies(got["rooms"][room]) == ["wake up"]


async def test_unknown_pos_and_bad_bodies(hs: Matrix) -> None:
    (bob,) = await hs.users("bob")
    assert_error(await ss(bob, {}, pos="s1_0_0_0_0_0_0.999999", expect=400), "M_UNKNOWN_POS")
    assert_error(await ss(bob, {"lists": {"a": {"ranges": "all"}}}, expect=400), "M_BAD_JSON")
    assert_error(await ss(bob, {}, pos="garbage", expect=400), "M_INVALID_PARAM")


async def test_invites_appear_with_invite_state(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(name="Invite me", preset="private_chat", invite=[bob.user_id])
    got = await ss(bob, {"lists": {"invites": {
        "ranges": [[0, 9]], "timeline_limit": 1, "filters": {"is_invite": True},
    }}})
    assert got["lists"]["invites"]["count"] == 1
    state = got["rooms"][room]["invite_state"]
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "Invite me" for e in state)


async def test_pos_survives_a_restart(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    """Element X keeps its `pos` across a server restart (or a request reaching another
    worker): the connection state is stored, so the answer is incremental, not initial."""
    first_hs = await start_hs(hs_config)
    alice, bob = await first_hs.users("alice", "bob")
    room = await alice.create_room(name="R", preset="public_chat")
    await bob.join(room)
    await alice.send(room, "before")
    body = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 5, "required_state": [["m.room.name", ""]]}},
            "conn_id": "room-list"}
    first = await ss(bob, body)
    assert first["rooms"][room]["initial"] is True
    quiet = await ss(bob, body, pos=first["pos"])  # nothing new: the state is not written again
    assert quiet["rooms"] == {} and quiet["pos"].rsplit(".", 1)[1] == first["pos"].rsplit(".", 1)[1]
    await alice.send(room, "while down")
    await first_hs.client.close()

    second_hs = await start_hs(hs_config)
    bob2 = User(second_hs, bob.user_id, bob.token, bob.device_id)  # the same session
    got = await ss(bob2, body, pos=quiet["pos"])
    section = got["rooms"][room]
    assert "initial" not in section
    assert timeline_bodies(section) == ["while down"]
    # Another connection of the device (another conn_id) has no such state.
    other = {**body, "conn_id": "encryption"}
    assert_error(await ss(bob2, other, pos=quiet["pos"], expect=400), "M_UNKNOWN_POS")
