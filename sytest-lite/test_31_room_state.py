"""Room state, aliases and joined_rooms."""

import asyncio
import copy
import time

from sltools import CS, quote, rand_localpart


async def test_get_entire_room_state(user):
    """SyTest: GET /rooms/:room_id/state fetches entire room state."""
    room = await user.create_room(preset="public_chat", name="stately")
    state = (await user.get(f"rooms/{quote(room)}/state")).expect(200)
    assert isinstance(state, list)
    by_key = {(e["type"], e["state_key"]): e for e in state}
    for key in (
        ("m.room.create", ""),
        ("m.room.member", user.user_id),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.name", ""),
    ):
        assert key in by_key, f"{key} missing from {sorted(by_key)}"
    for e in state:
        assert e["event_id"].startswith("$") and e["sender"] and "content" in e
    assert by_key[("m.room.member", user.user_id)]["content"]["membership"] == "join"
    assert by_key[("m.room.name", "")]["content"]["name"] == "stately"


async def test_get_state_event_returns_content(user):
    room = await user.create_room(preset="public_chat")
    j = (await user.get_state(room, "m.room.member", user.user_id)).expect(200)
    assert j["membership"] == "join"
    assert "event_id" not in j and "sender" not in j  # content only


async def test_put_state_name_sets_name(user):
    """SyTest: PUT /rooms/:room_id/state/m.room.name sets name."""
    room = await user.create_room()
    j = (await user.put_state(room, "m.room.name", {"name": "A new name"})).expect(200)
    assert j["event_id"].startswith("$")
    assert (await user.get_state(room, "m.room.name")).expect(200)["name"] == "A new name"
    # The trailing-slash form (empty state key) is the same state.
    r = await user.get(f"rooms/{quote(room)}/state/m.room.name/")
    assert r.expect(200)["name"] == "A new name"


async def test_put_state_with_state_key(user):
    room = await user.create_room()
    (await user.put_state(room, "org.sytest.thing", {"v": 1}, state_key="k1")).expect(200)
    assert (await user.get_state(room, "org.sytest.thing", "k1")).expect(200) == {"v": 1}


async def test_unset_state_is_404(user):
    room = await user.create_room()
    r = await user.get_state(room, "m.room.topic")
    r.expect_error(404, "M_NOT_FOUND")


async def test_power_levels_can_be_set(user, make_user):
    """Complement TestPowerLevels: PUT /rooms/:room_id/state/m.room.power_levels can set levels."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    pl = (await user.get_state(room, "m.room.power_levels")).expect(200)
    created = (await user.get_state(room, "m.room.create")).expect(200)
    if created.get("room_version") == "12":
        assert user.user_id not in pl.get("users", {})  # rooms/v12: creators are never listed
    else:
        assert pl["users"][user.user_id] == 100
    new = copy.deepcopy(pl)
    new["users"][bob.user_id] = 50
    new.setdefault("events", {})["org.sytest.custom"] = 75
    (await user.put_state(room, "m.room.power_levels", new)).expect(200)
    got = (await user.get_state(room, "m.room.power_levels")).expect(200)
    assert got["users"][bob.user_id] == 50
    assert got["events"]["org.sytest.custom"] == 75
    # And the new levels are enforced: bob (50) cannot send the 75-level state event.
    r = await bob.put_state(room, "org.sytest.custom", {"x": 1})
    r.expect_error(403, "M_FORBIDDEN")
    # ...but can now change the name (state_default / m.room.name is 50).
    (await bob.put_state(room, "m.room.name", {"name": "by bob"})).expect(200)


async def test_non_privileged_user_cannot_set_state(user, make_user):
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    r = await bob.put_state(room, "m.room.name", {"name": "nope"})
    r.expect_error(403, "M_FORBIDDEN")


async def test_joined_rooms_lists_new_room(user):
    """SyTest: GET /joined_rooms lists newly-created room."""
    room = await user.create_room()
    j = (await user.get("joined_rooms")).expect(200)
    assert room in j["joined_rooms"]


async def test_room_alias_create_and_resolve(hs, user):
    """SyTest: PUT /directory/room/:room_alias creates alias; GET yields room ID."""
    room = await user.create_room(preset="public_chat")
    alias = f"#{rand_localpart('al')}:{hs.server_name}"
    (await user.put(f"directory/room/{quote(alias)}", {"room_id": room})).expect(200)
    j = (await hs.request("GET", f"{CS}/directory/room/{quote(alias)}")).expect(200)
    assert j["room_id"] == room
    assert isinstance(j["servers"], list)
    missing = f"#{rand_localpart('none')}:{hs.server_name}"
    r = await hs.request("GET", f"{CS}/directory/room/{quote(missing)}")
    r.expect_error(404, "M_NOT_FOUND")


async def test_public_room_list_search_finds_new_room(user):
    """SyTest: GET /publicRooms lists newly-created room; Can search public room list."""
    name = rand_localpart("pubroom")
    room = await user.create_room(visibility="public", preset="public_chat", name=name, topic="t")
    vis = (await user.get(f"directory/list/room/{quote(room)}")).expect(200)
    assert vis["visibility"] == "public"
    deadline = time.monotonic() + 10
    while True:  # servers may cache the directory briefly
        j = (
            await user.post("publicRooms", {"limit": 10, "filter": {"generic_search_term": name}})
        ).expect(200)
        hit = next((c for c in j["chunk"] if c["room_id"] == room), None)
        if hit or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert hit is not None, j
    assert hit["name"] == name
    assert hit["num_joined_members"] == 1
    assert hit["world_readable"] is False
    assert hit["guest_can_join"] is False
    # A private room is not listed.
    private = await user.create_room(visibility="private", name=name + "x")
    j = (await user.post("publicRooms", {"filter": {"generic_search_term": name}})).expect(200)
    assert private not in [c["room_id"] for c in j["chunk"]]
