"""Synapse's admin API (``/_synapse/admin/...``), the paths the synapse-admin web UI and
operators' scripts use. Needs ``--shared-secret`` (or ``SYTEST_SHARED_SECRET``) to make an
admin; without it every test here is skipped. Only Synapse-compatible paths are tested
here: Tricolor's own extensions (``/_tricolor/...``) are tested in its own suite, since
Synapse has none of them.
"""

from __future__ import annotations

import asyncio
import time

from sltools import HS, User, quote, rand_localpart

A = "/_synapse/admin"


async def test_server_version(hs: HS) -> None:
    j = (await hs.request("GET", f"{A}/v1/server_version")).expect(200)
    assert isinstance(j["server_version"], str)


async def test_admin_api_refuses_non_admins(hs: HS, admin: User, user: User) -> None:
    for path in ("/v2/users", "/v1/rooms", f"/v2/users/{quote(admin.user_id)}", "/v1/event_reports",
                 "/v1/registration_tokens"):
        (await user.get(A + path)).expect_error(403, "M_FORBIDDEN")
    (await hs.request("GET", f"{A}/v2/users")).expect_error(401, "M_MISSING_TOKEN")


async def test_create_list_and_modify_users(hs: HS, admin: User) -> None:
    stem = rand_localpart("adm")
    uid = f"@{stem}x:{hs.server_name}"
    r = await admin.put(f"{A}/v2/users/{quote(uid)}", {"password": "pw-one-1", "displayname": "Xavier"})
    created = r.expect(201)
    assert created["name"] == uid and created["displayname"] == "Xavier" and not created["admin"]
    assert (await hs.login(uid, "pw-one-1")).status == 200
    await admin.put(f"{A}/v2/users/{quote(f'@{stem}y:{hs.server_name}')}", {"password": "pw-two-2"})

    listed = (await admin.get(f"{A}/v2/users", params={"name": stem, "limit": 10})).expect(200)
    assert sorted(u["name"] for u in listed["users"]) == [uid, f"@{stem}y:{hs.server_name}"]
    assert listed["total"] == 2
    paged = (await admin.get(f"{A}/v2/users", params={"name": stem, "limit": 1})).expect(200)
    assert len(paged["users"]) == 1 and "next_token" in paged

    changed = (await admin.put(f"{A}/v2/users/{quote(uid)}", {"displayname": "Xavi", "admin": True})).expect(200)
    assert changed["displayname"] == "Xavi" and changed["admin"]
    got = (await admin.get(f"{A}/v2/users/{quote(uid)}")).expect(200)
    assert got["name"] == uid and got["admin"] and not got["deactivated"]
    (await admin.get(f"{A}/v2/users/{quote(f'@{stem}none:{hs.server_name}')}")).expect_error(404, "M_NOT_FOUND")


async def test_reset_password_and_deactivate(hs: HS, admin: User, make_user) -> None:
    bob = await make_user(prefix="b")
    (await admin.post(f"{A}/v1/reset_password/{quote(bob.user_id)}", {"new_password": "brand-new-9"})).expect(200)
    assert (await hs.login(bob.user_id, bob.password)).status == 403
    assert (await hs.login(bob.user_id, "brand-new-9")).status == 200
    (await bob.get("account/whoami")).expect_error(401, "M_UNKNOWN_TOKEN")

    carol = await make_user(prefix="c")
    j = (await admin.post(f"{A}/v1/deactivate/{quote(carol.user_id)}", {"erase": False})).expect(200)
    assert j["id_server_unbind_result"] == "success"
    assert (await hs.login(carol.user_id, carol.password)).status == 403
    assert (await admin.get(f"{A}/v2/users/{quote(carol.user_id)}")).expect(200)["deactivated"]


async def test_devices_whois_and_joined_rooms(hs: HS, admin: User, user: User) -> None:
    room = await user.create_room()
    devices = (await admin.get(f"{A}/v2/users/{quote(user.user_id)}/devices")).expect(200)
    assert devices["total"] == 1 and devices["devices"][0]["device_id"] == user.device_id
    whois = (await admin.get(f"{A}/v1/whois/{quote(user.user_id)}")).expect(200)
    assert whois["user_id"] == user.user_id and isinstance(whois["devices"], dict)
    joined = (await admin.get(f"{A}/v1/users/{quote(user.user_id)}/joined_rooms")).expect(200)
    assert joined == {"joined_rooms": [room], "total": 1}


async def test_rooms_list_details_members_state(hs: HS, admin: User, make_user) -> None:
    alice, bob = await make_user(prefix="a"), await make_user(prefix="b")
    name = rand_localpart("room")
    room = await alice.create_room(name=name, preset="public_chat")
    (await bob.join(room)).expect(200)
    listed = (await admin.get(f"{A}/v1/rooms", params={"search_term": name})).expect(200)
    assert [r["room_id"] for r in listed["rooms"]] == [room] and listed["total_rooms"] == 1
    entry = listed["rooms"][0]
    assert entry["name"] == name and entry["joined_members"] == 2 and entry["creator"] == alice.user_id
    details = (await admin.get(f"{A}/v1/rooms/{quote(room)}")).expect(200)
    assert details["room_id"] == room and details["join_rules"] == "public"
    members = (await admin.get(f"{A}/v1/rooms/{quote(room)}/members")).expect(200)
    assert sorted(members["members"]) == sorted([alice.user_id, bob.user_id]) and members["total"] == 2
    state = (await admin.get(f"{A}/v1/rooms/{quote(room)}/state")).expect(200)
    assert ("m.room.name", "") in {(e["type"], e["state_key"]) for e in state["state"]}


async def test_block_room_and_make_room_admin(hs: HS, admin: User, make_user) -> None:
    alice, carol = await make_user(prefix="a"), await make_user(prefix="c")
    room = await alice.create_room()
    (await admin.post(f"{A}/v1/rooms/{quote(room)}/make_room_admin", {"user_id": carol.user_id})).expect(200)
    (await carol.join(room)).expect(200)
    levels = (await carol.get_state(room, "m.room.power_levels")).expect(200)
    # The creator's level, or 100 for a version 12 room, whose creators are not listed.
    assert levels["users"][carol.user_id] == levels["users"].get(alice.user_id, 100)

    public = await alice.create_room(preset="public_chat")
    assert (await admin.put(f"{A}/v1/rooms/{quote(public)}/block", {"block": True})).expect(200) == {"block": True}
    got = (await admin.get(f"{A}/v1/rooms/{quote(public)}/block")).expect(200)
    assert got["block"] is True and got["user_id"] == admin.user_id
    # The spec's /join answers a refusal with 403 M_FORBIDDEN; Synapse says M_UNKNOWN here.
    (await carol.join(public)).expect_error(403, ("M_FORBIDDEN", "M_UNKNOWN"))
    (await admin.put(f"{A}/v1/rooms/{quote(public)}/block", {"block": False})).expect(200)
    (await carol.join(public)).expect(200)


async def test_delete_room_v2_with_status(hs: HS, admin: User, make_user) -> None:
    alice, bob = await make_user(prefix="a"), await make_user(prefix="b")
    room = await alice.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    started = (await admin.request("DELETE", f"{A}/v2/rooms/{quote(room)}", json_body={"message": "closing"})).expect(200)
    delete_id = started["delete_id"]
    deadline = time.monotonic() + 30
    status: dict = {}
    while time.monotonic() < deadline:
        status = (await admin.get(f"{A}/v2/rooms/delete_status/{delete_id}")).expect(200)
        if status["status"] in ("complete", "failed"):
            break
        await asyncio.sleep(0.2)
    assert status["status"] == "complete", status
    assert status["room_id"] == room
    assert set(status["shutdown_room"]["kicked_users"]) >= {bob.user_id}
    by_room = (await admin.get(f"{A}/v2/rooms/{quote(room)}/delete_status")).expect(200)
    assert [r["delete_id"] for r in by_room["results"]] == [delete_id]
    assert room not in await bob.joined_rooms()
    assert room not in await alice.joined_rooms()


async def _delete_and_wait(admin: User, room: str, body: dict) -> dict:
    started = (await admin.request("DELETE", f"{A}/v2/rooms/{quote(room)}", json_body=body)).expect(200)
    deadline = time.monotonic() + 30
    status: dict = {}
    while time.monotonic() < deadline:  # bounded poll: the admin API offers no wait
        status = (await admin.get(f"{A}/v2/rooms/delete_status/{started['delete_id']}")).expect(200)
        if status["status"] in ("complete", "failed"):
            break
        await asyncio.sleep(0.2)
    assert status["status"] == "complete", status
    return status


async def test_delete_room_purges_it(hs: HS, admin: User, make_user) -> None:
    """`purge` (the default) erases the room: the admin API no longer knows it."""
    alice = await make_user(prefix="a")
    room = await alice.create_room(preset="public_chat", name="Purged")
    await alice.send_message(room, "gone soon")
    (await admin.get(f"{A}/v1/rooms/{quote(room)}")).expect(200)
    await _delete_and_wait(admin, room, {})
    (await admin.get(f"{A}/v1/rooms/{quote(room)}")).expect_error(404, "M_NOT_FOUND")


async def test_delete_room_moves_members_to_a_new_room(hs: HS, admin: User, make_user) -> None:
    alice, bob = await make_user(prefix="a"), await make_user(prefix="b")
    room = await alice.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    status = await _delete_and_wait(admin, room, {
        "new_room_user_id": admin.user_id, "room_name": "Moved", "message": "This room was closed",
    })
    new_room = status["shutdown_room"]["new_room_id"]
    assert new_room and new_room != room
    for user in (alice, bob):
        joined = await user.joined_rooms()
        assert new_room in joined and room not in joined
    name = (await bob.get_state(new_room, "m.room.name")).expect(200)
    assert name["name"] == "Moved"
    chunk = (await bob.messages(new_room, dir="b", limit=20)).expect(200)["chunk"]
    assert "This room was closed" in [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]


async def test_event_reports(hs: HS, admin: User, make_user) -> None:
    alice, bob = await make_user(prefix="a"), await make_user(prefix="b")
    room = await alice.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    rude = await bob.send_message(room, "rude")
    (await alice.post(f"rooms/{quote(room)}/report/{quote(rude)}", {"reason": "spam"})).expect(200)
    listed = (await admin.get(f"{A}/v1/event_reports", params={"room_id": room})).expect(200)
    assert listed["total"] == 1
    report = listed["event_reports"][0]
    assert report["event_id"] == rude and report["reason"] == "spam" and report["user_id"] == alice.user_id
    one = (await admin.get(f"{A}/v1/event_reports/{report['id']}")).expect(200)
    assert one["event_json"]["content"]["body"] == "rude"
    (await admin.request("DELETE", f"{A}/v1/event_reports/{report['id']}")).expect(200)
    (await admin.get(f"{A}/v1/event_reports/{report['id']}")).expect_error(404, "M_NOT_FOUND")


async def test_registration_tokens(hs: HS, admin: User) -> None:
    token = rand_localpart("tok")[:60]
    made = (await admin.post(f"{A}/v1/registration_tokens/new", {"token": token, "uses_allowed": 3})).expect(200)
    assert made == {"token": token, "uses_allowed": 3, "pending": 0, "completed": 0, "expiry_time": None}
    assert (await admin.get(f"{A}/v1/registration_tokens/{token}")).expect(200) == made
    listed = (await admin.get(f"{A}/v1/registration_tokens")).expect(200)
    assert token in [t["token"] for t in listed["registration_tokens"]]
    changed = (await admin.put(f"{A}/v1/registration_tokens/{token}", {"uses_allowed": None})).expect(200)
    assert changed["uses_allowed"] is None
    (await admin.request("DELETE", f"{A}/v1/registration_tokens/{token}")).expect(200)
    (await admin.get(f"{A}/v1/registration_tokens/{token}")).expect_error(404, "M_NOT_FOUND")
    generated = (await admin.post(f"{A}/v1/registration_tokens/new", {})).expect(200)
    assert len(generated["token"]) == 16
    (await admin.request("DELETE", f"{A}/v1/registration_tokens/{generated['token']}")).expect(200)


async def test_send_server_notice(hs: HS, admin: User, user: User) -> None:
    body = {"user_id": user.user_id, "content": {"msgtype": "m.text", "body": "Read me"}}
    first = (await admin.put(f"{A}/v1/send_server_notice/{rand_localpart('t')}", body)).expect(200)
    _, invites = await user.sync_until(None, lambda s: s.get("rooms", {}).get("invite"))
    room = next(iter(invites))
    (await user.join(room)).expect(200)
    tags = (await user.get(f"user/{quote(user.user_id)}/rooms/{quote(room)}/tags")).expect(200)
    assert "m.server_notice" in tags["tags"]
    page = (await user.messages(room, dir="b", limit=20)).expect(200)
    notices = [e for e in page["chunk"] if e["type"] == "m.room.message"]
    assert [e["content"]["body"] for e in notices] == ["Read me"] and notices[0]["event_id"] == first["event_id"]


async def test_rate_limit_override(hs: HS, admin: User, user: User) -> None:
    path = f"{A}/v1/users/{quote(user.user_id)}/override_ratelimit"
    set_ = (await admin.post(path, {"messages_per_second": 0, "burst_count": 0})).expect(200)
    assert set_ == {"messages_per_second": 0, "burst_count": 0}
    assert (await admin.get(path)).expect(200) == set_
    (await admin.request("DELETE", path)).expect(200)
    assert (await admin.get(path)).expect(200) == {}


async def test_user_media_and_quarantine(hs: HS, admin: User, user: User) -> None:
    r = await user.request("POST", "/_matrix/media/v3/upload", data=b"plain text file",
                           headers={"Content-Type": "text/plain"})
    mxc = r.expect(200)["content_uri"]
    server, media_id = mxc[len("mxc://"):].split("/")
    listed = (await admin.get(f"{A}/v1/users/{quote(user.user_id)}/media")).expect(200)
    assert [m["media_id"] for m in listed["media"]] == [media_id] and listed["total"] == 1
    (await admin.post(f"{A}/v1/media/quarantine/{server}/{media_id}", {})).expect(200)
    got = await user.request("GET", f"/_matrix/client/v1/media/download/{server}/{media_id}")
    assert got.status == 404
    (await admin.post(f"{A}/v1/media/unquarantine/{server}/{media_id}", {})).expect(200)
    (await admin.request("DELETE", f"{A}/v1/media/{server}/{media_id}")).expect(200)
    assert (await admin.get(f"{A}/v1/users/{quote(user.user_id)}/media")).expect(200)["total"] == 0


async def test_room_messages_for_admins(hs: HS, admin: User, user: User) -> None:
    room = await user.create_room()
    for text in ("one", "two", "three"):
        await user.send_message(room, text)
    page = (await admin.get(f"{A}/v1/rooms/{quote(room)}/messages", params={"dir": "b", "limit": 2})).expect(200)
    assert [e["content"]["body"] for e in page["chunk"]] == ["three", "two"]
    (await user.get(f"{A}/v1/rooms/{quote(room)}/messages")).expect_error(403, "M_FORBIDDEN")
