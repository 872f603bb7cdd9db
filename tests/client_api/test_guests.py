"""Guest access (spec "Guest access"): register?kind=guest, the guest-allowed endpoints,
m.room.guest_access, and upgrading a guest to a full account that keeps its rooms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import attrs

from config.schema import HomeserverConfig, RegistrationConfig
from tests.helpers import PASSWORD, Matrix, User, assert_error, bodies, q, timeline

Start = Callable[[HomeserverConfig], Awaitable[Matrix]]


async def guest(hs: Matrix) -> User:
    got = await hs.call("POST", "/register", {}, params={"kind": "guest"})
    return User(hs, got["user_id"], got["access_token"], got["device_id"], "")


async def test_guests_read_and_talk_only_where_guests_may(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    g = await guest(hs)
    assert g.user_id.split(":")[0][1:].isdigit()
    assert (await g.get("/account/whoami"))["user_id"] == g.user_id
    open_room = await alice.create_room(preset="public_chat")
    await alice.put_state(open_room, "m.room.guest_access", {"guest_access": "can_join"})
    closed = await alice.create_room(preset="public_chat")  # guest_access forbidden by the preset
    assert_error(await g.join(closed, expect=403), "M_FORBIDDEN")
    await g.join(open_room)
    await g.send(open_room, "hi from a guest")
    assert "hi from a guest" in bodies((await alice.messages(open_room, limit=10))["chunk"])
    assert (await g.sync())["rooms"]["join"][open_room]
    # Endpoints outside the guest list: refused.
    for method, path, body in (
        ("POST", "/createRoom", {}), ("POST", f"/rooms/{q(open_room)}/invite", {"user_id": alice.user_id}),
        ("PUT", f"/rooms/{q(open_room)}/state/m.room.topic/", {"topic": "x"}),
        ("PUT", f"/rooms/{q(open_room)}/send/m.reaction/t1", {}),
        ("POST", "/user_directory/search", {"search_term": "a"}),
    ):
        r = await hs.raw(method, path, body, token=g.token)
        assert r.status == 403 and r.json["errcode"] == "M_GUEST_ACCESS_FORBIDDEN", (method, path, r.text)


async def test_a_guest_upgrades_and_keeps_its_rooms(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(preset="public_chat")
    await alice.put_state(room, "m.room.guest_access", {"guest_access": "can_join"})
    g = await guest(hs)
    await g.join(room)
    full = await hs.call("POST", "/register", {
        "guest_access_token": g.token, "password": PASSWORD, "auth": {"type": "m.login.dummy"},
    })
    assert full["user_id"] == g.user_id
    user = User(hs, full["user_id"], full["access_token"], full["device_id"], PASSWORD)
    assert await user.joined_rooms() == [room]
    await user.post("/createRoom", {})  # no longer a guest
    localpart = g.user_id.split(":")[0][1:]
    assert (await hs.login(localpart, PASSWORD))["user_id"] == g.user_id


async def test_guest_registration_can_be_disabled(hs_config: HomeserverConfig, start_hs: Start) -> None:
    hs = await start_hs(attrs.evolve(hs_config, registration=RegistrationConfig(allow_guests=False)))
    err = await hs.call("POST", "/register", {}, params={"kind": "guest"}, expect=403)
    assert_error(err, "M_GUEST_ACCESS_FORBIDDEN")


async def test_guests_leave_when_the_room_stops_admitting_them(hs: Matrix) -> None:
    """Spec "Guest access": guest_access other than can_join closes the room to guests; the
    guests in it leave (as Synapse does), full members stay, and the guest cannot come back."""
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await alice.put_state(room, "m.room.guest_access", {"guest_access": "can_join"})
    g = await guest(hs)
    await g.join(room)
    await bob.join(room)
    since = (await alice.sync())["next_batch"]
    await alice.put_state(room, "m.room.guest_access", {"guest_access": "forbidden"})
    left = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while left is None and loop.time() < deadline:
        sync = await alice.sync(since, timeout=2000)
        since = sync["next_batch"]
        left = next((
            e for e in timeline(sync, room)
            if e["type"] == "m.room.member" and e["state_key"] == g.user_id
        ), None)
    assert left is not None, "the guest was not removed"
    assert left["content"]["membership"] == "leave" and left["sender"] == g.user_id
    members = await alice.get(f"/rooms/{q(room)}/joined_members")
    assert set(members["joined"]) == {alice.user_id, bob.user_id}
    assert_error(await g.join(room, expect=403), "M_FORBIDDEN")
    assert room not in (await g.sync())["rooms"]["join"]
