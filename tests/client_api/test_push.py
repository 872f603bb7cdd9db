"""Push rules, unread counts in /sync, GET /notifications and pushers (http and email).

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-notifications
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email import message_from_bytes
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from aiosmtpd.controller import Controller

from config.schema import EmailConfig, HomeserverConfig
from tests.helpers import Matrix, User, assert_error, q

DEFAULT_IDS = {
    "override": [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
        ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.contains_display_name",
        ".m.rule.is_room_mention", ".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction",
        ".m.rule.room.server_acl", ".m.rule.suppress_edits",
    ],
    "content": [".m.rule.contains_user_name"],
    "room": [],
    "sender": [],
    "underride": [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
        ".m.rule.message", ".m.rule.encrypted",
    ],
}


def ids(ruleset: dict[str, Any], kind: str) -> list[str]:
    return [r["rule_id"] for r in ruleset[kind]]


async def chat(hs: Matrix, *extra: str) -> tuple[User, User, str]:
    alice, bob, *_ = await hs.users("alice", "bob", *extra)
    room = await alice.create_room(preset="public_chat", name="Chat")
    await bob.join(room)
    return alice, bob, room


def unread(sync: dict[str, Any], room: str) -> dict[str, int] | None:
    section = sync["rooms"]["join"].get(room)
    return section["unread_notifications"] if section else None


# -- push rules ----------------------------------------------------------------------------


async def test_a_new_user_has_the_spec_default_rules(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    got = await alice.get("/pushrules/")
    assert {kind: ids(got["global"], kind) for kind in DEFAULT_IDS} == DEFAULT_IDS
    assert got["global"]["content"][0]["pattern"] == "alice"
    assert await alice.get("/pushrules/global/") == got["global"]
    master = await alice.get("/pushrules/global/override/.m.rule.master")
    assert master["enabled"] is False and master["default"] is True
    assert await alice.get("/pushrules/global/underride/.m.rule.message/actions") == {"actions": ["notify"]}


async def test_initial_sync_carries_the_rules_as_account_data(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    events = (await alice.sync())["account_data"]["events"]
    rules = [e for e in events if e["type"] == "m.push_rules"]
    assert len(rules) == 1
    assert ids(rules[0]["content"]["global"], "override")[0] == ".m.rule.master"


async def test_user_rules_ordering_and_attributes(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    base = "/pushrules/global/override/"
    rule = {"conditions": [{"kind": "event_match", "key": "content.body", "pattern": "lunch"}],
            "actions": ["notify"]}
    await alice.put(base + "one", rule)
    await alice.put(base + "two", rule)  # newest first
    await alice.put(base + "three", rule, params={"after": "one"})
    await alice.put(base + "zero", rule, params={"before": "two"})
    got = ids((await alice.get("/pushrules/"))["global"], "override")
    assert got[:5] == [".m.rule.master", "zero", "two", "one", "three"]

    await alice.put(base + "one/enabled", {"enabled": False})
    assert await alice.get(base + "one/enabled") == {"enabled": False}
    await alice.put(base + "one/actions", {"actions": ["dont_notify"]})  # historical: stripped
    assert await alice.get(base + "one/actions") == {"actions": []}
    await alice.put(base + ".m.rule.suppress_notices/enabled", {"enabled": False})
    assert (await alice.get(base + ".m.rule.suppress_notices"))["enabled"] is False

    await alice.delete(base + "two")
    await alice.get(base + "two", expect=404)
    got = ids((await alice.get("/pushrules/"))["global"], "override")
    assert got[:4] == [".m.rule.master", "zero", "one", "three"]


async def test_a_rule_change_reaches_sync_incrementally(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    since = (await alice.sync())["next_batch"]
    await alice.put("/pushrules/global/room/!x:hs.test", {"actions": []})
    events = (await alice.sync(since=since))["account_data"]["events"]
    (rules,) = [e for e in events if e["type"] == "m.push_rules"]
    assert ids(rules["content"]["global"], "room") == ["!x:hs.test"]


@pytest.mark.parametrize(("path", "body", "params", "status", "errcode"), [
    ("/pushrules/global/override/.mine", {"actions": []}, None, 400, "M_INVALID_PARAM"),
    ("/pushrules/global/nonsense/x", {"actions": []}, None, 400, "M_INVALID_PARAM"),
    ("/pushrules/device/override/x", {"actions": []}, None, 400, "M_INVALID_PARAM"),
    ("/pushrules/global/override/x", {"actions": "notify"}, None, 400, "M_INVALID_PARAM"),
    ("/pushrules/global/override/x", {"actions": ["shout"]}, None, 400, "M_INVALID_PARAM"),
    ("/pushrules/global/content/x", {"actions": []}, None, 400, "M_INVALID_PARAM"),
    ("/pushrules/global/override/x", {"actions": []}, {"before": "nothere"}, 404, "M_NOT_FOUND"),
    ("/pushrules/global/override/nothere/enabled", {"enabled": True}, None, 404, "M_NOT_FOUND"),
    ("/pushrules/global/override/.m.rule.master/enabled", {"enabled": "yes"}, None, 400, "M_BAD_JSON"),
    ("/pushrules/global/override/.m.rule.master/actions", {}, None, 400, "M_MISSING_PARAM"),
])
async def test_bad_rules_are_refused_and_change_nothing(
    hs: Matrix, path: str, body: Any, params: Any, status: int, errcode: str,
) -> None:
    (alice,) = await hs.users("alice")
    before = await alice.get("/pushrules/")
    assert_error(await alice.put(path, body, params=params, expect=status), errcode)
    assert await alice.get("/pushrules/") == before


async def test_server_default_rules_cannot_be_deleted(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    await alice.delete("/pushrules/global/override/.m.rule.master", expect=400)
    await alice.delete("/pushrules/global/override/mine", expect=404)


# -- unread counts -------------------------------------------------------------------------


async def test_messages_count_and_mentions_highlight_until_read(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.send(room, "hello")
    mention = await alice.send(room, {
        "msgtype": "m.text", "body": "bob: lunch?", "m.mentions": {"user_ids": [bob.user_id]},
    })
    first = await bob.sync()
    assert unread(first, room) == {"notification_count": 2, "highlight_count": 1}
    assert unread(await alice.sync(), room) == {"notification_count": 0, "highlight_count": 0}

    await bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(mention)}", {})
    after = await bob.sync(since=first["next_batch"])
    assert unread(after, room) == {"notification_count": 0, "highlight_count": 0}


async def test_a_private_receipt_clears_too_and_notices_do_not_count(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    seen = await alice.send(room, "one")
    await alice.send(room, {"msgtype": "m.notice", "body": "a bot speaks"})
    await bob.post(f"/rooms/{q(room)}/receipt/m.read.private/{q(seen)}", {})
    await alice.send(room, "two")
    assert unread(await bob.sync(), room) == {"notification_count": 1, "highlight_count": 0}


async def test_a_muted_room_and_the_master_rule_stop_notifications(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await bob.put(f"/pushrules/global/room/{q(room)}", {"actions": []})
    await alice.send(room, "ignored")
    assert unread(await bob.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    await bob.delete(f"/pushrules/global/room/{q(room)}")
    await bob.put("/pushrules/global/override/.m.rule.master/enabled", {"enabled": True})
    await alice.send(room, "still ignored")
    assert unread(await bob.sync(), room) == {"notification_count": 0, "highlight_count": 0}


async def test_display_name_and_room_mentions_highlight(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bobby"})
    await alice.send(room, "hey Bobby, look")  # no m.mentions: the legacy rule applies
    await alice.send(room, {"msgtype": "m.text", "body": "all", "m.mentions": {"room": True}})
    assert unread(await bob.sync(), room) == {"notification_count": 2, "highlight_count": 2}


async def test_thread_counts_and_threaded_receipts(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    root = await alice.send(room, "root")
    reply = await alice.send(room, {
        "msgtype": "m.text", "body": "in thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    })
    flt = {"room": {"timeline": {"unread_thread_notifications": True}}}
    got = await bob.sync(filter=flt)
    section = got["rooms"]["join"][room]
    assert section["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert section["unread_thread_notifications"] == {root: {"notification_count": 1, "highlight_count": 0}}
    # Without the filter flag, threads are summed into the room.
    assert unread(await bob.sync(), room) == {"notification_count": 2, "highlight_count": 0}

    await bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(reply)}", {"thread_id": root})
    section = (await bob.sync(filter=flt))["rooms"]["join"][room]
    assert section["unread_notifications"]["notification_count"] == 1  # main still unread
    assert "unread_thread_notifications" not in section


async def test_invites_notify_the_invitee(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(name="Private")
    await alice.invite(room, bob)
    got = await bob.get("/notifications")
    assert [(n["room_id"], n["event"]["type"]) for n in got["notifications"]] == [(room, "m.room.member")]


async def redact(user: User, room: str, event_id: str) -> None:
    await user.put(f"/rooms/{q(room)}/redact/{q(event_id)}/{user.next_txn()}", {})


async def test_a_redacted_event_no_longer_notifies(hs: Matrix) -> None:
    """Spec "Redactions": the redacted event's content is gone, so its notification goes
    too: out of the unread counts (room and thread, highlights included) and of
    GET /notifications, whether the client syncs from scratch or incrementally."""
    alice, bob, room = await chat(hs)
    kept = await alice.send(room, "hello")
    mention = await alice.send(room, {
        "msgtype": "m.text", "body": "bob: lunch?", "m.mentions": {"user_ids": [bob.user_id]},
    })
    reply = await alice.send(room, {
        "msgtype": "m.text", "body": "in thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": kept},
    })
    flt = {"room": {"timeline": {"unread_thread_notifications": True}}}
    first = await bob.sync(filter=flt)
    section = first["rooms"]["join"][room]
    assert section["unread_notifications"] == {"notification_count": 2, "highlight_count": 1}
    assert section["unread_thread_notifications"] == {kept: {"notification_count": 1, "highlight_count": 0}}

    await redact(alice, room, mention)
    await redact(alice, room, reply)
    after = (await bob.sync(since=first["next_batch"], filter=flt))["rooms"]["join"][room]
    assert after["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert "unread_thread_notifications" not in after
    assert unread(await bob.sync(), room) == {"notification_count": 1, "highlight_count": 0}
    listed = await bob.get("/notifications")
    assert [n["event"]["event_id"] for n in listed["notifications"]] == [kept]
    assert (await bob.get("/notifications", params={"only": "highlight"}))["notifications"] == []


# -- GET /notifications --------------------------------------------------------------------


async def test_notifications_pages_newest_first_with_read_flags(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    sent = [await alice.send(room, f"m{i}") for i in range(3)]
    mention = await alice.send(room, {"msgtype": "m.text", "body": "hi bob",
                                      "m.mentions": {"user_ids": [bob.user_id]}})
    await bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(sent[0])}", {})

    page1 = await bob.get("/notifications", params={"limit": 2})
    assert [n["event"]["event_id"] for n in page1["notifications"]] == [mention, sent[2]]
    assert all(n["read"] is False and n["room_id"] == room for n in page1["notifications"])
    assert "notify" in page1["notifications"][0]["actions"]
    page2 = await bob.get("/notifications", params={"limit": 2, "from": page1["next_token"]})
    assert [(n["event"]["event_id"], n["read"]) for n in page2["notifications"]] == [
        (sent[1], False), (sent[0], True),
    ]
    highlights = await bob.get("/notifications", params={"only": "highlight"})
    assert [n["event"]["event_id"] for n in highlights["notifications"]] == [mention]
    assert_error(await bob.get("/notifications", params={"from": "x"}, expect=400), "M_INVALID_PARAM")
    assert_error(await bob.get("/notifications", params={"limit": "ten"}, expect=400), "M_INVALID_PARAM")


# -- pushers -------------------------------------------------------------------------------


@attrs.define
class Gateway:
    """A real local push gateway: records what it receives, rejects some pushkeys."""

    server: TestServer
    received: asyncio.Queue[dict[str, Any]]
    rejecting: set[str]

    @property
    def url(self) -> str:
        return str(self.server.make_url("/_matrix/push/v1/notify"))


@pytest.fixture
def hs_config(hs_config: HomeserverConfig) -> HomeserverConfig:
    """The test gateways listen on 127.0.0.1, which ip_range_blacklist denies by default."""
    return attrs.evolve(hs_config, ip_range_whitelist=("127.0.0.1/32",))


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    rejecting: set[str] = set()

    async def notify(request: web.Request) -> web.Response:
        body = await request.json()
        await received.put(body)
        keys = [d["pushkey"] for d in body["notification"]["devices"]]
        return web.json_response({"rejected": [k for k in keys if k in rejecting]})

    app = web.Application()
    app.router.add_post("/_matrix/push/v1/notify", notify)
    server = TestServer(app)
    await server.start_server()
    try:
        yield Gateway(server, received, rejecting)
    finally:
        await server.close()


def http_pusher(url: str, pushkey: str = "key1", **data: Any) -> dict[str, Any]:
    return {
        "kind": "http", "app_id": "im.tricolor.app", "pushkey": pushkey,
        "app_display_name": "Tricolor", "device_display_name": "phone", "lang": "en",
        "data": {"url": url, **data},
    }


async def test_pushers_are_set_listed_and_deleted(hs: Matrix, gateway: Gateway) -> None:
    alice, bob = await hs.users("alice", "bob")
    await alice.post("/pushers/set", http_pusher(gateway.url))
    (got,) = (await alice.get("/pushers"))["pushers"]
    assert (got["kind"], got["pushkey"], got["data"]["url"]) == ("http", "key1", gateway.url)

    # The same device registered by bob: alice's pusher goes, unless bob appends.
    await bob.post("/pushers/set", {**http_pusher(gateway.url), "append": True})
    assert len((await alice.get("/pushers"))["pushers"]) == 1
    await bob.post("/pushers/set", http_pusher(gateway.url))
    assert (await alice.get("/pushers"))["pushers"] == []

    await bob.post("/pushers/set", {"kind": None, "app_id": "im.tricolor.app", "pushkey": "key1"})
    assert (await bob.get("/pushers"))["pushers"] == []


@pytest.mark.parametrize("change", [
    {"kind": "carrier-pigeon"},
    {"data": {}},
    {"data": {"url": "ftp://example.org/_matrix/push/v1/notify"}},
    {"data": {"url": "http://example.org/notify"}},
    {"app_id": 5},
    {"pushkey": ""},
    {"app_display_name": None},
    {"append": "yes"},
])
async def test_bad_pushers_are_refused(hs: Matrix, change: dict[str, Any]) -> None:
    (alice,) = await hs.users("alice")
    body = {**http_pusher("http://127.0.0.1:1/_matrix/push/v1/notify"), **change}
    got = await alice.post("/pushers/set", body, expect=400)
    assert got["errcode"] in ("M_INVALID_PARAM", "M_MISSING_PARAM", "M_BAD_JSON")
    assert (await alice.get("/pushers"))["pushers"] == []


async def test_the_gateway_receives_notifications_in_the_spec_format(hs: Matrix, gateway: Gateway) -> None:
    alice, bob, room = await chat(hs)
    await bob.post("/pushers/set", http_pusher(gateway.url, extra="kept"))
    event_id = await alice.send(room, "ping")
    note = (await asyncio.wait_for(gateway.received.get(), 30))["notification"]
    assert (note["event_id"], note["room_id"], note["type"], note["sender"]) == (
        event_id, room, "m.room.message", alice.user_id,
    )
    assert note["content"]["body"] == "ping"
    assert note["room_name"] == "Chat"
    assert note["counts"] == {"unread": 1}
    (device,) = note["devices"]
    assert (device["app_id"], device["pushkey"], device["data"]) == ("im.tricolor.app", "key1", {"extra": "kept"})
    assert device["tweaks"] == {"sound": "default"}  # .m.rule.room_one_to_one
    assert note["prio"] == "high"


async def test_event_id_only_pushers_get_no_content(hs: Matrix, gateway: Gateway) -> None:
    alice, bob, room = await chat(hs)
    await bob.post("/pushers/set", http_pusher(gateway.url, format="event_id_only"))
    event_id = await alice.send(room, {"msgtype": "m.text", "body": "secret bob",
                                       "m.mentions": {"user_ids": [bob.user_id]}})
    note = (await asyncio.wait_for(gateway.received.get(), 30))["notification"]
    assert note["event_id"] == event_id
    assert "content" not in note and "sender" not in note
    assert note["devices"][0]["tweaks"] == {"sound": "default", "highlight": True}
    assert note["prio"] == "high"


async def test_a_rejected_pushkey_loses_its_pusher(hs: Matrix, gateway: Gateway) -> None:
    alice, bob, room = await chat(hs)
    gateway.rejecting.add("key1")
    await bob.post("/pushers/set", http_pusher(gateway.url))
    await alice.send(room, "ping")
    await asyncio.wait_for(gateway.received.get(), 30)
    for _ in range(200):  # the pusher is removed right after the gateway's answer
        if not (await bob.get("/pushers"))["pushers"]:
            break
        await asyncio.sleep(0.05)
    assert (await bob.get("/pushers"))["pushers"] == []


# -- email ---------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler: every message delivered to the local SMTP server."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content)
        self.loop.call_soon_threadsafe(self.messages.put_nowait, (envelope.rcpt_tos, msg))
        return "250 OK"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = unused_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_an_email_digest_lists_what_is_unread(
    hs_config: HomeserverConfig, start_hs: Any, smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    cfg = attrs.evolve(hs_config, email=EmailConfig(
        smtp_host="127.0.0.1", smtp_port=port, notif_from="hs <hs@hs.test>", notif_delay_ms=200,
    ))
    hs = await start_hs(cfg)
    alice, bob, room = await chat(hs)
    await bob.post("/pushers/set", {
        "kind": "email", "app_id": "m.email", "pushkey": "bob@example.org",
        "app_display_name": "Email", "device_display_name": "bob@example.org", "lang": "en",
        "data": {},
    })
    await alice.send(room, "are you there?")
    rcpts, msg = await asyncio.wait_for(inbox.messages.get(), 30)
    assert rcpts == ["bob@example.org"]
    assert msg["From"] == "hs <hs@hs.test>"
    assert "1 unread message" in msg["Subject"]
    assert "are you there?" in msg.get_payload(decode=True).decode()


async def test_an_email_digest_is_not_sent_for_what_was_read(
    hs_config: HomeserverConfig, start_hs: Any, smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    cfg = attrs.evolve(hs_config, email=EmailConfig(
        smtp_host="127.0.0.1", smtp_port=port, notif_delay_ms=300,
    ))
    hs = await start_hs(cfg)
    alice, bob, room = await chat(hs)
    await bob.post("/pushers/set", {
        "kind": "email", "app_id": "m.email", "pushkey": "bob@example.org",
        "app_display_name": "Email", "device_display_name": "bob@example.org", "lang": "en",
        "data": {},
    })
    seen = await alice.send(room, "already seen")
    await bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(seen)}", {})
    await alice.send(room, "missed this one")
    _, msg = await asyncio.wait_for(inbox.messages.get(), 30)
    # Decoded: quoted-printable may wrap long lines (v12 room ids are long).
    body = msg.get_payload(decode=True).decode()
    assert "missed this one" in body
    assert "already seen" not in body


async def test_an_email_digest_leaves_out_redacted_events(
    hs_config: HomeserverConfig, start_hs: Any, smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    cfg = attrs.evolve(hs_config, email=EmailConfig(smtp_host="127.0.0.1", smtp_port=port, notif_delay_ms=200))
    hs = await start_hs(cfg)
    alice, bob, room = await chat(hs)
    secret = await alice.send(room, "sent by mistake")
    await redact(alice, room, secret)
    assert (await bob.get("/notifications"))["notifications"] == []  # evaluation is past the redaction
    await bob.post("/pushers/set", {
        "kind": "email", "app_id": "m.email", "pushkey": "bob@example.org",
        "app_display_name": "Email", "device_display_name": "bob@example.org", "lang": "en",
        "data": {},
    })
    await alice.send(room, "the real message")
    _, msg = await asyncio.wait_for(inbox.messages.get(), 30)
    assert "1 unread message" in msg["Subject"]
    assert "the real message" in msg.get_payload(decode=True).decode()
    assert "sent by mistake" not in msg.get_payload(decode=True).decode()


# -- delivery guarantees -------------------------------------------------------------------


async def test_a_failing_gateway_is_retried(hs: Matrix) -> None:
    calls: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    failures = [503]

    async def notify(request: web.Request) -> web.Response:
        await calls.put(await request.json())
        if failures:
            return web.json_response({}, status=failures.pop())
        return web.json_response({"rejected": []})

    app = web.Application()
    app.router.add_post("/_matrix/push/v1/notify", notify)
    server = TestServer(app)
    await server.start_server()
    try:
        alice, bob, room = await chat(hs)
        await bob.post("/pushers/set", http_pusher(str(server.make_url("/_matrix/push/v1/notify"))))
        event_id = await alice.send(room, "try again")
        first = await asyncio.wait_for(calls.get(), 30)
        second = await asyncio.wait_for(calls.get(), 30)
        assert first == second and first["notification"]["event_id"] == event_id
    finally:
        await server.close()


async def test_events_committed_but_not_evaluated_are_evaluated_on_restart(
    hs_config: HomeserverConfig, start_hs: Any,
) -> None:
    """A crash between commit and evaluation: the next start evaluates what is after the
    progress mark (here the mark is moved back and the rows removed, as if never written)."""

    from storage.engine import create_engine
    from storage.schema import notifications, push_progress

    hs = await start_hs(hs_config)
    alice, bob, room = await chat(hs)
    mark = (await bob.sync())["next_batch"]
    await alice.send(room, "one")
    await alice.send(room, "two")
    assert unread(await bob.sync(), room) == {"notification_count": 2, "highlight_count": 0}
    await hs.client.close()

    engine = create_engine(hs_config.database.url, 1, False)
    async with engine.begin() as conn:
        await conn.execute(notifications.delete())
        await conn.execute(push_progress.update().values(stream_ordering=int(mark[1:].split("_")[0])))
    await engine.dispose()

    again = await start_hs(hs_config)
    bob_again = await again.login_user("bob")
    assert unread(await bob_again.sync(), room) == {"notification_count": 2, "highlight_count": 0}


async def test_a_redaction_not_yet_applied_to_notifications_is_on_restart(
    hs_config: HomeserverConfig, start_hs: Any,
) -> None:
    """A crash after the redaction's commit, before the evaluator removed the notification:
    the next start's catch-up removes it (here the row is put back and the mark moved
    back before the redaction, as if the evaluator never saw it)."""
    from storage.engine import create_engine
    from storage.schema import notifications, push_progress

    hs = await start_hs(hs_config)
    alice, bob, room = await chat(hs)
    oops = await alice.send(room, "oops")
    mark = (await bob.sync())["next_batch"]
    engine = create_engine(hs_config.database.url, 1, False)
    async with engine.connect() as conn:
        rows = [r._asdict() for r in await conn.execute(notifications.select())]
    assert [r["event_id"] for r in rows] == [oops]
    await redact(alice, room, oops)
    assert unread(await bob.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    await hs.client.close()

    async with engine.begin() as conn:
        await conn.execute(notifications.insert(), rows)
        await conn.execute(push_progress.update().values(stream_ordering=int(mark[1:].split("_")[0])))
    await engine.dispose()
    again = await start_hs(hs_config)
    bob_again = await again.login_user("bob")
    assert unread(await bob_again.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    assert (await bob_again.get("/notifications"))["notifications"] == []


async def test_a_pending_push_of_a_redacted_event_is_not_delivered(hs: Matrix) -> None:
    """The gateway is failing when a message comes; it is redacted before the retry: the
    queued delivery goes with its notification, and the next message is pushed alone."""
    delivered: asyncio.Queue[str] = asyncio.Queue()
    failures = [503]

    async def notify(request: web.Request) -> web.Response:
        event_id = (await request.json())["notification"]["event_id"]
        if failures:
            return web.json_response({}, status=failures.pop())
        await delivered.put(event_id)
        return web.json_response({"rejected": []})

    app = web.Application()
    app.router.add_post("/_matrix/push/v1/notify", notify)
    server = TestServer(app)
    await server.start_server()
    try:
        alice, bob, room = await chat(hs)
        await bob.post("/pushers/set", http_pusher(str(server.make_url("/_matrix/push/v1/notify"))))
        oops = await alice.send(room, "oops")
        await redact(alice, room, oops)
        assert (await bob.get("/notifications"))["notifications"] == []
        second = await alice.send(room, "second")
        # Deliveries of a pusher are in order: a delivery of `oops` would come first.
        assert await asyncio.wait_for(delivered.get(), 30) == second
    finally:
        await server.close()
