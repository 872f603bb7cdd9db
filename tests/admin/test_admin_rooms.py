"""The admin API's rooms: list, details, members, state, block, make_room_admin."""

from __future__ import annotations

from tests.admin.conftest import ADMIN
from tests.helpers import Matrix, User, assert_error, q


async def test_list_rooms_orders_searches_and_pages(hs: Matrix, admin: User) -> None:
    alice, bob = await hs.users("alice", "bob")
    lunch = await alice.create_room(name="Lunch", preset="public_chat")
    await bob.join(lunch)
    work = await alice.create_room(name="Work")
    got = await admin.get(f"{ADMIN}/v1/rooms")
    assert got["total_rooms"] == 2 and got["offset"] == 0
    assert [r["name"] for r in got["rooms"]] == ["Lunch", "Work"]
    first = got["rooms"][0]
    assert first["room_id"] == lunch and first["joined_members"] == 2 and first["joined_local_members"] == 2
    assert first["join_rules"] == "public" and first["creator"] == alice.user_id
    by_size = await admin.get(f"{ADMIN}/v1/rooms", params={"order_by": "joined_members"})
    assert [r["room_id"] for r in by_size["rooms"]] == [lunch, work]
    searched = await admin.get(f"{ADMIN}/v1/rooms", params={"search_term": "wor"})
    assert [r["room_id"] for r in searched["rooms"]] == [work]
    paged = await admin.get(f"{ADMIN}/v1/rooms", params={"limit": 1})
    assert len(paged["rooms"]) == 1 and paged["next_batch"] == 1

    detail = await admin.get(f"{ADMIN}/v1/rooms/{q(work)}")
    assert detail["name"] == "Work" and detail["joined_members"] == 1
    members = await admin.get(f"{ADMIN}/v1/rooms/{q(lunch)}/members")
    assert members == {"members": sorted([alice.user_id, bob.user_id]), "total": 2}
    state = await admin.get(f"{ADMIN}/v1/rooms/{q(lunch)}/state")
    assert ("m.room.name", "") in {(e["type"], e["state_key"]) for e in state["state"]}
    err = await admin.get(f"{ADMIN}/v1/rooms/{q('!nope:hs.test')}", expect=404)
    assert_error(err, "M_NOT_FOUND")


async def test_block_a_room(hs: Matrix, admin: User) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    assert await admin.get(f"{ADMIN}/v1/rooms/{q(room)}/block") == {"block": False}
    assert await admin.put(f"{ADMIN}/v1/rooms/{q(room)}/block", {"block": True}) == {"block": True}
    assert await admin.get(f"{ADMIN}/v1/rooms/{q(room)}/block") == {"block": True, "user_id": admin.user_id}
    err = await bob.join(room, expect=403)
    assert_error(err, "M_FORBIDDEN")
    await admin.put(f"{ADMIN}/v1/rooms/{q(room)}/block", {"block": False})
    await bob.join(room)
    err = await admin.put(f"{ADMIN}/v1/rooms/{q(room)}/block", {"block": "yes"}, expect=400)
    assert_error(err, "M_BAD_JSON")


async def test_make_room_admin_invites_and_promotes(hs: Matrix, admin: User) -> None:
    alice, carol = await hs.users("alice", "carol")
    room = await alice.create_room()  # private: carol is invited in alice's name
    await admin.post(f"{ADMIN}/v1/rooms/{q(room)}/make_room_admin", {"user_id": carol.user_id})
    assert room in (await carol.sync())["rooms"]["invite"]
    await carol.join(room)
    levels = await carol.state(room, "m.room.power_levels")
    assert levels["users"][carol.user_id] == 100
    await carol.put_state(room, "m.room.topic", {"topic": "mine now"})


async def test_admin_reads_any_rooms_messages(hs: Matrix, admin: User) -> None:
    alice = await hs.register("alice")
    room = await alice.create_room()
    for text in ("one", "two", "three"):
        await alice.send(room, text)
    page = await admin.get(f"{ADMIN}/v1/rooms/{q(room)}/messages", params={"limit": 2})
    assert [e["content"]["body"] for e in page["chunk"]] == ["three", "two"]
    rest = await admin.get(f"{ADMIN}/v1/rooms/{q(room)}/messages", params={"from": page["end"], "limit": 10})
    assert "one" in [e["content"].get("body") for e in rest["chunk"]]
    err = await alice.get(f"{ADMIN}/v1/rooms/{q(room)}/messages", expect=403)
    assert_error(err, "M_FORBIDDEN")
    assert_error(await admin.get(f"{ADMIN}/v1/rooms/{q('!x:hs.test')}/messages", expect=404), "M_NOT_FOUND")
