"""The WebSocket sync transport against real server processes (SQLite and MariaDB):
push to several devices and over federation, resume after a forced disconnect, slow
consumers, heartbeat and presence, logout, bad frames. Protocol: docs/websocket.md."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import RunningServer, start_real_server
from tests.integration.matrix_http import MatrixUser, q
from tests.integration.test_federation import client_url, net, pair, shared_room  # noqa: F401
from tests.ws_client import WS_PATH, Closed, WsClient, all_bodies, bodies_in, typing_in

LIMITS = """websocket:
  heartbeat_interval_ms: 500
  dead_after_ms: 3000
  coalesce_after: 2
  max_unacked: 4
"""


@pytest.fixture(scope="module", params=["sqlite", "mysql"], ids=["sqlite", "mysql"])
def ws_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_real_server(tmp_path_factory.mktemp("ws"), request.param, LIMITS) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def login(session: aiohttp.ClientSession, base: str, user: MatrixUser) -> MatrixUser:
    """A second device of `user`."""
    other = MatrixUser(session, base)
    async with session.post(f"{base}/_matrix/client/v3/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id}, "password": "pw",
    }) as r:
        data = await r.json()
        assert r.status == 200, data
    other.token, other.user_id = data["access_token"], data["user_id"]
    return other


async def connect(session: aiohttp.ClientSession, base: str, user: MatrixUser, **kw: Any) -> WsClient:
    kw.setdefault("heartbeat", 0.5)  # well within dead_after_ms
    return await WsClient.connect(session, base + WS_PATH, user.token, **kw)


async def chat(session: aiohttp.ClientSession, base: str) -> tuple[MatrixUser, MatrixUser, str]:
    alice = await MatrixUser(session, base).register("alice")
    bob = await MatrixUser(session, base).register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.call("POST", f"/join/{q(room)}", {})
    return alice, bob, room


async def test_two_devices_and_a_user_on_another_server_get_the_push(
    net: dict[str, Any], session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    alice, bob = await pair(net, session)  # alice on hs1, bob on hs2
    room = await shared_room(alice, bob)
    hs1, hs2 = client_url(net, "hs1.test"), client_url(net, "hs2.test")
    alice2 = await login(session, hs1, alice)
    sockets = [await connect(session, hs1, alice), await connect(session, hs1, alice2),
               await connect(session, hs2, bob)]
    for ws in sockets:
        await ws.sync_frame(lambda f: True)  # the initial sync
    await alice.send(room, "to everyone")
    for ws in sockets:
        await ws.sync_frame(lambda f: "to everyone" in bodies_in(f, room))
        await ws.close()


async def test_ack_resume_after_a_forced_disconnect(ws_server: RunningServer, session: aiohttp.ClientSession) -> None:
    alice, bob, room = await chat(session, ws_server.base_url)
    dropped = aiohttp.ClientSession()
    ws = await connect(dropped, ws_server.base_url, bob)
    await ws.ack(await ws.sync_frame(lambda f: True))
    await alice.send(room, "acked")
    await ws.ack(await ws.sync_frame(lambda f: "acked" in bodies_in(f, room)))
    await alice.send(room, "unacked")
    await ws.sync_frame(lambda f: "unacked" in bodies_in(f, room))
    await dropped.close()  # the TCP connection goes, with no close handshake
    await alice.send(room, "while away")
    again = await connect(session, ws_server.base_url, bob)
    frame = await again.sync_frame(lambda f: True)
    assert bodies_in(frame, room) == ["unacked", "while away"]  # nothing lost, nothing acked repeated
    await again.ack(frame)
    await alice.send(room, "live")
    await again.sync_frame(lambda f: "live" in bodies_in(f, room))
    assert all_bodies(again.frames, room) == ["unacked", "while away", "live"]
    await again.close()


async def test_slow_consumer_is_coalesced_closed_and_resumes(
    ws_server: RunningServer, session: aiohttp.ClientSession,
) -> None:
    alice, bob, room = await chat(session, ws_server.base_url)
    ws = await connect(session, ws_server.base_url, bob)
    await ws.ack(await ws.sync_frame(lambda f: True))
    sent = []
    for i in range(2):
        sent.append(f"m{i}")
        await alice.send(room, f"m{i}")
        await ws.sync_frame(lambda f, i=i: f"m{i}" in bodies_in(f, room))
    await alice.call("PUT", f"/rooms/{q(room)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000})
    # One message per frame (each waited for before the next is sent, so a busy server cannot
    # fold several into one frame): past max_unacked unacknowledged frames the server closes.
    closed = None
    for i in range(2, 20):
        sent.append(f"m{i}")
        await alice.send(room, f"m{i}")
        try:
            await ws.sync_frame(lambda f, i=i: f"m{i}" in bodies_in(f, room))
        except Closed as c:
            closed = c
            break
    assert closed is not None and closed.code == 4008
    assert not any(typing_in(f) for f in ws.frames if f["op"] == "sync")  # dropped before messages
    again = await connect(session, ws_server.base_url, bob)
    assert bodies_in(await again.sync_frame(lambda f: True), room) == sent
    await again.close()


async def test_heartbeat_timeout_marks_presence_offline(
    ws_server: RunningServer, session: aiohttp.ClientSession,
) -> None:
    alice, bob, _room = await chat(session, ws_server.base_url)
    ws = await connect(session, ws_server.base_url, bob, heartbeat=None)
    assert (await alice.call("GET", f"/presence/{q(bob.user_id)}/status"))["presence"] == "online"
    assert (await ws.closed()).code == 4002  # never pinged within dead_after_ms
    assert (await alice.call("GET", f"/presence/{q(bob.user_id)}/status"))["presence"] == "offline"


async def test_logout_closes_the_socket(ws_server: RunningServer, session: aiohttp.ClientSession) -> None:
    _alice, bob, _room = await chat(session, ws_server.base_url)
    ws = await connect(session, ws_server.base_url, bob)
    await bob.call("POST", "/logout", {})
    closed = await ws.closed()
    assert closed.code == 4001 and "logged out" in closed.reason


async def test_bad_frames_never_crash_the_server(ws_server: RunningServer, session: aiohttp.ClientSession) -> None:
    _alice, bob, _room = await chat(session, ws_server.base_url)
    url = ws_server.base_url + WS_PATH
    early = WsClient(await session.ws_connect(url))  # before auth
    await early.ws.send_str(json.dumps({"op": "send"}))
    assert (await early.closed()).code == 4000
    ws = await connect(session, ws_server.base_url, bob)
    await ws.ws.send_str("not json")
    assert (await ws.next_frame(lambda f: f["op"] == "error"))["errcode"] == "M_NOT_JSON"
    assert (await ws.request("nope"))["errcode"] == "M_UNRECOGNIZED"
    await ws.ws.send_str("x" * 200_000)
    assert (await ws.closed()).code == 1009
    assert (await bob.call("GET", "/account/whoami"))["user_id"] == bob.user_id
