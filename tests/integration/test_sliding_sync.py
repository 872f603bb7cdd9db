"""Simplified sliding sync (MSC4186) against a real server process, with requests written
from the MSC in the shape matrix-rust-sdk sends: a list over 50 rooms, a room
subscription, extensions, and a message arriving while a request waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import RunningServer
from tests.integration.matrix_http import MatrixUser, q

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def ss(user: MatrixUser, body: dict[str, Any], pos: str | None = None, timeout: int = 0) -> dict[str, Any]:
    params = {"timeout": str(timeout), **({"pos": pos} if pos else {})}
    async with user.s.post(user.base + SS, json=body, params=params,
                           headers={"Authorization": f"Bearer {user.token}"}) as r:
        data = await r.json()
        assert r.status == 200, data
        return data


def bodies(room: dict[str, Any]) -> list[str]:
    return [e["content"]["body"] for e in room.get("timeline", []) if e["type"] == "m.room.message"]


async def test_list_over_50_rooms_subscription_extensions_and_a_waiting_request(
    real_server: RunningServer, session: aiohttp.ClientSession,
) -> None:
    base = real_server.base_url
    alice = await MatrixUser(session, base).register("alice")
    bob = await MatrixUser(session, base).register("bob")
    rooms = []
    for i in range(50):
        room = await alice.create_room(preset="public_chat", name=f"room {i:02d}")
        await bob.call("POST", f"/join/{q(room)}", {})
        await alice.send(room, f"hello {i:02d}")
        rooms.append(room)
    body = {
        "lists": {"all": {"ranges": [[0, 19]], "timeline_limit": 1,
                          "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"]]}},
        "room_subscriptions": {rooms[0]: {"timeline_limit": 5, "required_state": [["m.room.create", ""]]}},
        "extensions": {"to_device": {"enabled": True}, "e2ee": {"enabled": True},
                       "account_data": {"enabled": True}, "receipts": {"enabled": True},
                       "typing": {"enabled": True}},
    }
    first = await ss(bob, body)
    listed = first["lists"]["all"]
    assert listed["count"] == 50
    # newest activity first: the last room written to leads the list
    assert listed["ops"][0]["room_ids"] == list(reversed(rooms))[:20]
    assert set(first["rooms"]) == set(listed["ops"][0]["room_ids"]) | {rooms[0]}
    top = first["rooms"][rooms[49]]
    assert top["name"] == "room 49" and bodies(top) == ["hello 49"] and top["initial"] is True
    sub = first["rooms"][rooms[0]]  # outside the window, there through the subscription
    assert len(sub["timeline"]) == 5 and {e["type"] for e in sub["required_state"]} == {"m.room.create"}
    assert first["extensions"]["e2ee"]["device_unused_fallback_key_types"] == []

    waiting = asyncio.create_task(ss(bob, body, pos=first["pos"], timeout=20_000))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await alice.send(rooms[10], "arrived while waiting")
    got = await asyncio.wait_for(waiting, 15)
    assert got["lists"]["all"]["ops"][0]["room_ids"][0] == rooms[10]  # bumped to the top
    assert bodies(got["rooms"][rooms[10]]) == ["arrived while waiting"]
    assert got["rooms"][rooms[10]]["num_live"] == 1
