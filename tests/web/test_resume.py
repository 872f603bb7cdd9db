"""Real time across trouble: the server restarted mid-conversation (the client reconnects
and resumes; a message typed while it was down is delivered once), and a network where
the WebSocket cannot get through (the client long-polls /sync instead)."""

from __future__ import annotations

from typing import Any

from tests.web.harness import register
from tests.web.test_chat import direct_chat, message, open_room, q, send


async def test_the_client_resumes_across_a_server_restart_losing_nothing(
    server_factory: Any, open_client: Any, shots: Any,
) -> None:
    hs = server_factory()
    alice, bob = register(hs.base_url, "alice"), register(hs.base_url, "bob")
    room = direct_chat(alice, bob)
    a = await open_client(hs, alice)
    b = await open_client(hs, bob)
    await open_room(a, "bob")
    await open_room(b, "alice")
    await a.get_by_text("live (WebSocket)").wait_for()

    await send(a, "before the restart")
    await message(b, "before the restart").wait_for()

    hs.stop()
    await a.locator(".conn[data-state=down]").wait_for()
    await b.locator(".conn[data-state=down]").wait_for()
    await send(a, "typed while the server was down")  # waits in the outbox
    await message(a, "typed while the server was down").get_by_text("Sending…").wait_for()
    await shots.take(a, "server-down")

    hs.start()
    await message(b, "typed while the server was down").wait_for()
    bob.call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/after1",
             {"msgtype": "m.text", "body": "after the restart"})
    await message(a, "after the restart").wait_for()
    await a.get_by_text("live (WebSocket)").wait_for()
    await shots.take(b, "resumed")

    # Nothing lost, nothing doubled, on either side.
    for page in (a, b):
        for text in ("before the restart", "typed while the server was down", "after the restart"):
            assert await message(page, text).count() == 1, text
    stored = alice.call("GET", f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=20")["chunk"]
    bodies = [e["content"].get("body") for e in stored if e["type"] == "m.room.message"]
    assert bodies.count("typed while the server was down") == 1


async def test_without_websocket_the_client_long_polls(server_factory: Any, open_client: Any, shots: Any) -> None:
    hs = server_factory()
    alice, bob = register(hs.base_url, "alice"), register(hs.base_url, "bob")
    room = direct_chat(alice, bob)
    a = await open_client(hs, alice)
    refused: list[str] = []

    async def refuse(ws: Any) -> None:  # a proxy that drops every WebSocket
        refused.append(ws.url)
        await ws.close(code=1011, reason="no websockets here")

    await a.route_web_socket("**/org.tricolor.ws/connect", refuse)
    await a.reload()
    await a.get_by_text("live (long-poll)").wait_for()
    assert len(refused) >= 3
    await open_room(a, "bob")
    bob.call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/lp1",
             {"msgtype": "m.text", "body": "arrives by long-poll"})
    await message(a, "arrives by long-poll").wait_for()
    await send(a, "and back")
    await shots.take(a, "long-poll")

    async def stored() -> list[str]:
        chunk = bob.call("GET", f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=10")["chunk"]
        return [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]

    await a.wait_for_function("() => !document.querySelector('li.message.pending')")
    assert "and back" in await stored()


async def test_a_message_not_yet_sent_survives_a_reload(server_factory: Any, open_client: Any, shots: Any) -> None:
    hs = server_factory()
    alice, bob = register(hs.base_url, "alice"), register(hs.base_url, "bob")
    room = direct_chat(alice, bob)
    a = await open_client(hs, alice)
    await open_room(a, "bob")

    async def drop(route: Any) -> None:  # the network loses every send
        await route.abort("connectionreset")

    await a.route("**/send/m.room.message/**", drop)
    await send(a, "written on a flaky network")
    await message(a, "written on a flaky network").get_by_text("Sending…").wait_for()
    await a.reload()  # still offline: the new page can only know the message from storage
    await open_room(a, "bob")
    await message(a, "written on a flaky network").get_by_text("Sending…").wait_for()
    await a.unroute("**/send/m.room.message/**", drop)
    await a.wait_for_function("() => !document.querySelector('li.message.pending')")
    await shots.take(a, "sent-after-reload")
    chunk = bob.call("GET", f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=10")["chunk"]
    assert [e["content"].get("body") for e in chunk].count("written on a flaky network") == 1
    assert await message(a, "written on a flaky network").count() == 1
