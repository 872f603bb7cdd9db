"""Server notices and broadcasts: one notices room per user (tagged m.server_notice,
owned by the system user), idempotent PUT, and a background broadcast to 1,000 users
that reports its progress and resumes after a restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from config.schema import HomeserverConfig
from tests.admin.conftest import ADMIN, promote
from tests.admin.test_groups import services_of
from tests.helpers import Matrix, User, assert_error, q

NOTICE = {"msgtype": "m.text", "body": "Maintenance tonight"}


async def notices_room(user: User) -> str:
    """The invite to the notices room, as the user's client finds it."""
    synced = await user.sync()
    invites = synced["rooms"]["invite"]
    assert len(invites) == 1, invites
    return next(iter(invites))


async def test_send_server_notice_creates_the_room_once(hs: Matrix, admin: User) -> None:
    alice = await hs.register("alice")
    err = await alice.post(f"{ADMIN}/v1/send_server_notice", {"user_id": alice.user_id, "content": NOTICE}, expect=403)
    assert_error(err, "M_FORBIDDEN")
    first = await admin.post(f"{ADMIN}/v1/send_server_notice", {"user_id": alice.user_id, "content": NOTICE})
    room = await notices_room(alice)
    await alice.join(room)
    tags = await alice.get(f"/user/{q(alice.user_id)}/rooms/{q(room)}/tags")
    assert "m.server_notice" in tags["tags"]
    second = await admin.post(
        f"{ADMIN}/v1/send_server_notice", {"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "Done"}},
    )
    page = await alice.messages(room, "b", limit=20)
    bodies = [e["content"]["body"] for e in page["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["Done", "Maintenance tonight"]
    assert {e["event_id"] for e in page["chunk"]} >= {first["event_id"], second["event_id"]}
    senders = {e["sender"] for e in page["chunk"] if e["type"] == "m.room.message"}
    assert senders == {hs.uid("notices")}
    # The user cannot talk back in the notices room.
    assert_error(await alice.send(room, "hi?", expect=403), "M_FORBIDDEN")
    # Bad input: unknown user, remote user, missing content.
    err = await admin.post(f"{ADMIN}/v1/send_server_notice", {"user_id": hs.uid("ghost"), "content": NOTICE}, expect=404)
    assert_error(err, "M_NOT_FOUND")
    err = await admin.post(f"{ADMIN}/v1/send_server_notice", {"user_id": "@x:other.test", "content": NOTICE}, expect=400)
    assert_error(err, "M_INVALID_PARAM")
    err = await admin.post(f"{ADMIN}/v1/send_server_notice", {"user_id": alice.user_id}, expect=400)
    assert_error(err, "M_MISSING_PARAM")


async def test_put_with_txn_id_is_idempotent(hs: Matrix, admin: User) -> None:
    bob = await hs.register("bob")
    body = {"user_id": bob.user_id, "content": NOTICE}
    a = await admin.put(f"{ADMIN}/v1/send_server_notice/t1", body)
    b = await admin.put(f"{ADMIN}/v1/send_server_notice/t1", body)
    c = await admin.put(f"{ADMIN}/v1/send_server_notice/t2", body)
    assert a == b and a != c
    room = await notices_room(bob)
    await bob.join(room)
    page = await bob.messages(room, "b", limit=20)
    assert len([e for e in page["chunk"] if e["type"] == "m.room.message"]) == 2


async def test_broadcast_reaches_a_thousand_users(hs: Matrix, admin: User) -> None:
    for i in range(1000):
        body = {"displayname": f"User {i}"} | ({"password": "pw-u0777-1"} if i == 777 else {})
        await admin.put(f"{ADMIN}/v2/users/{q(hs.uid(f'u{i:04d}'))}", body, expect=201)
    started = await admin.post("/_tricolor/admin/v1/broadcast", {"content": NOTICE}, expect=202)
    assert started["total"] == 1001  # everyone but the system user, the admin included
    await services_of(hs).notices.wait(started["broadcast_id"])
    progress = await admin.get(f"/_tricolor/admin/v1/broadcast/{started['broadcast_id']}")
    assert progress["status"] == "complete"
    assert (progress["sent"], progress["failed"]) == (1001, 0)
    user = await hs.login_user("u0777", "pw-u0777-1")
    room = await notices_room(user)
    await user.join(room)
    page = await user.messages(room, "b", limit=20)
    assert [e["content"]["body"] for e in page["chunk"] if e["type"] == "m.room.message"] == [NOTICE["body"]]
    rooms = await admin.get(f"{ADMIN}/v1/rooms", params={"search_term": "Server Notices", "limit": 2000})
    assert rooms["total_rooms"] == 1001
    err = await admin.post("/_tricolor/admin/v1/broadcast", {"content": {"body": 1}}, expect=400)
    assert_error(err, "M_BAD_JSON")
    non_admin = await hs.register("plain")
    err = await non_admin.post("/_tricolor/admin/v1/broadcast", {"content": NOTICE}, expect=403)
    assert_error(err, "M_FORBIDDEN")
    err = await admin.get("/_tricolor/admin/v1/broadcast/999999", expect=404)
    assert_error(err, "M_NOT_FOUND")


async def test_broadcast_resumes_after_restart(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    """A process stopped mid-broadcast: its row says how far it got (after p1), and p2's
    notice was sent but its batch never recorded. The next process finishes the job, and
    p2 gets its notice once."""
    hs = await start_hs(hs_config)
    root = await promote(hs, await hs.register("root"))
    for i in range(5):
        await hs.register(f"p{i}")
    notices = services_of(hs).notices
    store = notices._store
    bid = await store.add_broadcast(root.user_id, NOTICE, False, 6, 0)
    await store.broadcast_progress(bid, hs.uid("p1"), 2, 0, False, 0)
    await notices.send(hs.uid("p2"), NOTICE, "m.room.message", f"broadcast|{bid}|{hs.uid('p2')}")
    await hs.client.close()

    again = await start_hs(hs_config)
    await services_of(again).notices.wait(bid)
    admin = await again.login_user("root")
    progress = await admin.get(f"/_tricolor/admin/v1/broadcast/{bid}")
    assert progress["status"] == "complete"
    assert (progress["sent"], progress["failed"]) == (6, 0)
    for name in ("p2", "p3", "p4", "root"):
        user = await again.login_user(name)
        room = await notices_room(user)
        await user.join(room)
        page = await user.messages(room, "b", limit=20)
        assert [e["content"]["body"] for e in page["chunk"] if e["type"] == "m.room.message"] == [NOTICE["body"]]
    # p0 and p1 were done before the restart (in this staged run: never sent at all).
    p0 = await again.login_user("p0")
    assert (await p0.sync())["rooms"]["invite"] == {}
