"""The WebSocket sync transport (docs/websocket.md), in process on SQLite and MariaDB:
authentication, pushed frames, ops, acknowledgements and resume, limits, bad frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import attrs

from config.schema import HomeserverConfig, WebSocketConfig
from tests.helpers import Matrix, User, q
from tests.ws_client import WS_PATH, WsClient, all_bodies, bodies_in, typing_in


async def chat(hs: Matrix) -> tuple[User, User, str]:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", name="Chat")
    await bob.join(room)
    return alice, bob, room


async def connect(hs: Matrix, user: User, **kw: object) -> WsClient:
    return await WsClient.connect(hs.client, WS_PATH, user.token, **kw)  # type: ignore[arg-type]


async def test_first_frame_auth_gives_an_initial_sync_then_pushes_messages(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.send(room, "before")
    ws = await connect(hs, bob)
    assert ws.ready["user_id"] == bob.user_id and ws.ready["device_id"] == bob.device_id
    first = await ws.sync_frame(lambda f: True)
    assert room in first["rooms"]["join"] and "before" in bodies_in(first, room)
    await alice.send(room, "pushed")
    pushed = await ws.sync_frame(lambda f: "pushed" in bodies_in(f, room))
    assert bodies_in(pushed, room) == ["pushed"]  # only what is new since the last frame
    await ws.close()


async def test_header_auth_and_since_resume_from_the_query(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    since = (await bob.sync())["next_batch"]
    await alice.send(room, "missed")
    ws = await connect(hs, bob, header=True, since=since)
    frame = await ws.sync_frame(lambda f: True)
    assert bodies_in(frame, room) == ["missed"]
    await ws.close()


async def test_the_token_is_never_read_from_the_url(hs: Matrix) -> None:
    (bob,) = await hs.users("bob")
    ws = await hs.client.ws_connect(WS_PATH, params={"access_token": bob.token})
    client = WsClient(ws)
    await ws.send_str(json.dumps({"op": "ping", "id": 1}))
    closed = await client.closed()
    assert closed.code == 4000 and "auth" in closed.reason


async def test_a_bad_token_closes_with_unknown_token(hs: Matrix) -> None:
    ws = await WsClient.connect(hs.client, WS_PATH, "not-a-token", ready=False)  # type: ignore[arg-type]
    closed = await ws.closed()
    assert closed.code == 4001 and "M_UNKNOWN_TOKEN" in closed.reason


async def test_ops_ping_send_typing_receipt_presence(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    ws = await connect(hs, alice)
    bob_ws = await connect(hs, bob)
    assert (await ws.request("ping"))["op"] == "pong"
    sent = await ws.request("send", room_id=room, type="m.room.message",
                            content={"msgtype": "m.text", "body": "via socket"}, txn_id="t1")
    assert sent["op"] == "result" and sent["event_id"].startswith("$")
    again = await ws.request("send", room_id=room, type="m.room.message",
                             content={"msgtype": "m.text", "body": "via socket"}, txn_id="t1")
    assert again["event_id"] == sent["event_id"]  # idempotent like PUT /send/{txnId}
    await bob_ws.sync_frame(lambda f: "via socket" in bodies_in(f, room))
    assert all_bodies(bob_ws.frames, room).count("via socket") == 1
    messages = await bob.messages(room, limit=10)
    assert [e["content"]["body"] for e in messages["chunk"] if e["type"] == "m.room.message"] == ["via socket"]

    assert (await ws.request("typing", room_id=room, typing=True, timeout=10_000))["op"] == "result"
    await bob_ws.sync_frame(lambda f: typing_in(f))
    assert (await ws.request("receipt", room_id=room, event_id=sent["event_id"]))["op"] == "result"
    await bob_ws.sync_frame(lambda f: any(
        e["type"] == "m.receipt" for s in f["rooms"]["join"].values() for e in s["ephemeral"]["events"]
    ))
    assert (await ws.request("presence", presence="unavailable", status_msg="lunch"))["op"] == "result"
    status = await bob.get(f"/presence/{q(alice.user_id)}/status")
    assert status["presence"] == "unavailable" and status["status_msg"] == "lunch"
    # a send into a room the user is not in is a Matrix error frame, not a crash
    err = await ws.request("send", room_id="!nope:" + hs.server_name, type="m.room.message",
                           content={}, txn_id="t2")
    assert err["op"] == "error" and err["errcode"] in ("M_NOT_FOUND", "M_FORBIDDEN")
    await ws.close()
    await bob_ws.close()


async def test_bad_frames_get_an_error_frame_or_a_close_code(hs: Matrix) -> None:
    (bob,) = await hs.users("bob")
    ws = await connect(hs, bob)
    await ws.ws.send_str("{not json")
    assert (await ws.next_frame(lambda f: f["op"] == "error"))["errcode"] == "M_NOT_JSON"
    assert (await ws.request("dance"))["errcode"] == "M_UNRECOGNIZED"
    assert (await ws.request("ack", next_batch="garbage"))["errcode"] == "M_INVALID_PARAM"
    assert (await ws.request("send", room_id=1))["errcode"] == "M_BAD_JSON"
    await ws.ws.send_bytes(b"\x00\x01")
    assert (await ws.next_frame(lambda f: f["op"] == "error"))["errcode"] == "M_NOT_JSON"
    assert (await ws.request("ping"))["op"] == "pong"  # still serving
    await ws.ws.send_str(json.dumps({"op": "ping", "pad": "x" * 100_000}))
    assert (await ws.closed()).code == 1009
    # the server is fine afterwards
    assert (await bob.sync())["next_batch"]


async def test_ack_and_resume_lose_nothing_and_repeat_nothing_acknowledged(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    ws = await connect(hs, bob)
    await ws.ack(await ws.sync_frame(lambda f: True))
    await alice.send(room, "one")
    await ws.ack(await ws.sync_frame(lambda f: "one" in bodies_in(f, room)))
    await alice.send(room, "two")
    await ws.sync_frame(lambda f: "two" in bodies_in(f, room))  # received, never acknowledged
    await ws.close()
    await alice.send(room, "three")
    # No `since`: the server resumes from the acknowledged position ("one").
    again = await connect(hs, bob)
    frame = await again.sync_frame(lambda f: True)
    assert bodies_in(frame, room) == ["two", "three"]
    await again.close()


async def test_to_device_messages_survive_an_unacknowledged_frame(hs: Matrix) -> None:
    alice, bob, _room = await chat(hs)
    ws = await connect(hs, bob)
    await ws.ack(await ws.sync_frame(lambda f: True))
    await alice.put("/sendToDevice/m.test/tx1", {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}})
    await ws.sync_frame(lambda f: bool(f["to_device"]["events"]))
    await alice.put("/sendToDevice/m.test/tx2", {"messages": {bob.user_id: {bob.device_id: {"n": 2}}}})
    await ws.sync_frame(lambda f: bool(f["to_device"]["events"]))
    await ws.close()
    again = await connect(hs, bob)
    frame = await again.sync_frame(lambda f: True)
    assert [e["content"]["n"] for e in frame["to_device"]["events"]] == [1, 2]
    await again.close()


async def test_logout_closes_the_socket_with_a_reason(hs: Matrix) -> None:
    (bob,) = await hs.users("bob")
    ws = await connect(hs, bob)
    await bob.post("/logout", {})
    closed = await ws.closed()
    assert closed.code == 4001 and "logged out" in closed.reason


async def test_a_new_socket_of_the_same_device_replaces_the_old(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    old = await connect(hs, bob)
    new = await connect(hs, bob)
    assert (await old.closed()).code == 4003
    await alice.send(room, "to the new one")
    await new.sync_frame(lambda f: "to the new one" in bodies_in(f, room))
    await new.close()


async def test_two_devices_of_one_user_both_receive(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    bob2 = await hs.login_user(bob.user_id)
    a, b = await connect(hs, bob), await connect(hs, bob2)
    await alice.send(room, "both")
    for ws in (a, b):
        await ws.sync_frame(lambda f: "both" in bodies_in(f, room))
        await ws.close()


async def start_with(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]], **limits: int,
) -> Matrix:
    return await start_hs(attrs.evolve(hs_config, websocket=WebSocketConfig(**limits)))


async def test_heartbeat_timeout_closes_and_presence_is_the_max_over_devices(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    hs = await start_with(hs_config, start_hs, dead_after_ms=1500, heartbeat_interval_ms=500)
    alice, bob, _room = await chat(hs)
    bob2 = await hs.login_user(bob.user_id)
    quiet = await connect(hs, bob)  # online, and never pings
    away = await connect(hs, bob2, presence="unavailable", heartbeat=0.3)  # kept alive
    assert quiet.ready["heartbeat_interval_ms"] == 500
    assert (await alice.get(f"/presence/{q(bob.user_id)}/status"))["presence"] == "online"
    closed = await quiet.closed()
    assert closed.code == 4002
    # the other device is still there (it pings), so bob is as present as it says
    assert (await away.request("ping"))["op"] == "pong"
    assert (await alice.get(f"/presence/{q(bob.user_id)}/status"))["presence"] == "unavailable"
    await away.close()
    status = await alice.get(f"/presence/{q(bob.user_id)}/status")
    for _ in range(100):  # bounded: the close is handled on the server's own schedule
        if status["presence"] == "offline":
            break
        await asyncio.sleep(0.05)
        status = await alice.get(f"/presence/{q(bob.user_id)}/status")
    assert status["presence"] == "offline"


async def test_a_slow_consumer_is_coalesced_then_closed_and_resumes(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    hs = await start_with(hs_config, start_hs, coalesce_after=2, max_unacked=4)
    alice, bob, room = await chat(hs)
    ws = await connect(hs, bob)
    await ws.ack(await ws.sync_frame(lambda f: True))  # acknowledged: the resume point
    sent = []
    for i in range(2):
        sent.append(f"m{i}")
        await alice.send(room, f"m{i}")
        await ws.sync_frame(lambda f, i=i: f"m{i}" in bodies_in(f, room))
    # two frames unacknowledged: typing alone is no longer sent
    await alice.put(f"/rooms/{q(room)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30_000})
    sent.append("after typing")
    await alice.send(room, "after typing")
    frame = await ws.sync_frame(lambda f: "after typing" in bodies_in(f, room))
    assert not typing_in(frame)
    assert not any(typing_in(f) for f in ws.frames if f["op"] == "sync")
    for i in range(2, 6):
        sent.append(f"m{i}")
        await alice.send(room, f"m{i}")
    closed = await ws.closed()
    assert closed.code == 4008
    again = await connect(hs, bob)  # resumes from the acknowledged position
    frame = await again.sync_frame(lambda f: True)
    assert bodies_in(frame, room) == sent
    await again.close()
