"""Room summary (MSC3266), mutual rooms (MSC2666) and /admin/whois."""

from __future__ import annotations

import sqlalchemy as sa

from config.schema import HomeserverConfig
from storage.engine import create_engine
from storage.schema import users
from tests.helpers import Matrix, assert_error, q


async def test_room_summary_for_members_and_for_anyone_when_public(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    public = await alice.create_room(preset="public_chat", name="Open", topic="all welcome", room_alias_name="open")
    private = await alice.create_room(preset="private_chat", name="Closed")
    got = await hs.call("GET", f"/_matrix/client/v1/room_summary/{q('#open:hs.test')}")  # no token needed
    assert got["room_id"] == public and got["name"] == "Open" and got["topic"] == "all welcome"
    assert got["join_rule"] == "public" and got["num_joined_members"] == 1 and "membership" not in got
    created = await alice.state(public, "m.room.create")
    assert got["canonical_alias"] == "#open:hs.test" and got["room_version"] == created["room_version"]
    mine = await alice.get(f"/_matrix/client/v1/room_summary/{q(private)}")
    assert mine["membership"] == "join" and mine["name"] == "Closed"
    for who in (bob, None):
        r = await hs.raw("GET", f"/_matrix/client/v1/room_summary/{q(private)}", token=who.token if who else None)
        assert r.status == 404 and r.json["errcode"] == "M_NOT_FOUND"
    await alice.invite(private, bob)
    assert (await bob.get(f"/_matrix/client/v1/room_summary/{q(private)}"))["membership"] == "invite"
    assert_error(await hs.call("GET", f"/_matrix/client/v1/room_summary/{q('!nope:hs.test')}", expect=404), "M_NOT_FOUND")


async def test_mutual_rooms(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    shared = sorted([await alice.create_room(preset="public_chat") for _ in range(2)])
    for room in shared:
        await bob.join(room)
    await alice.create_room()  # alice alone
    got = await alice.get("/_matrix/client/v1/mutual_rooms", params={"user_id": bob.user_id})
    assert got == {"joined": shared, "count": 2}
    assert (await alice.get("/_matrix/client/v1/mutual_rooms", params={"user_id": carol.user_id}))["joined"] == []
    for bad in ({}, {"user_id": alice.user_id}, {"user_id": "bob"}, {"user_id": bob.user_id, "from": "x"}):
        err = await alice.get("/_matrix/client/v1/mutual_rooms", params=bad, expect=400)
        assert_error(err, "M_INVALID_PARAM")


async def test_whois_for_admins_and_oneself(hs: Matrix, hs_config: HomeserverConfig) -> None:
    alice, bob = await hs.users("alice", "bob")
    admin = await hs.register("admin")
    engine = create_engine(hs_config.database.url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.update(users).where(users.c.user_id == admin.user_id).values(is_admin=True))
    finally:
        await engine.dispose()
    mine = await alice.get(f"/admin/whois/{q(alice.user_id)}")
    assert mine["user_id"] == alice.user_id and alice.device_id in mine["devices"]
    assert mine["devices"][alice.device_id]["sessions"][0]["connections"][0]["last_seen"] > 0
    assert_error(await bob.get(f"/admin/whois/{q(alice.user_id)}", expect=403), "M_FORBIDDEN")
    assert (await admin.get(f"/admin/whois/{q(alice.user_id)}"))["user_id"] == alice.user_id
    assert_error(await admin.get(f"/admin/whois/{q('@ghost:hs.test')}", expect=404), "M_NOT_FOUND")
