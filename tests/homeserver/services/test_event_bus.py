"""The event bus's buffer and task, against an in-memory broker side (the real broker is
exercised in tests/integration/test_observability.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from homeserver.core.events import Event, StoredEvent
from homeserver.services.event_bus import EventBus, event_messages
from homeserver.services.fanout import Committed


class MemoryBroker:
    def __init__(self) -> None:
        self.up = False
        self.reachable = True
        self.published: list[tuple[str, bytes, str]] = []
        self.published_event = asyncio.Event()

    async def connect(self) -> None:
        if not self.reachable:
            raise ConnectionError("refused")
        self.up = True

    async def publish(self, messages: Sequence[tuple[str, bytes, str]]) -> None:
        if not self.reachable:
            self.up = False
            raise ConnectionError("lost")
        self.published += messages
        self.published_event.set()

    async def close(self) -> None:
        self.up = False


def commit(n: int, *, outlier: bool = False, event_type: str = "m.room.message", state_key: str | None = None) -> Committed:
    pdu = {
        "room_id": "!r:hs", "type": event_type, "sender": "@a:hs", "content": {"n": n},
        "origin_server_ts": 1000 + n,
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    event = Event(event_id=f"$e{n}", pdu=pdu, room_version="10")
    return Committed(events=[StoredEvent(event, -n if outlier else n, None, None, outlier=outlier)])


def test_routing_keys_and_body() -> None:
    messages = event_messages(commit(1))
    assert [m.routing_key for m in messages] == ["room.!r:hs.m.room.message", "user.@a:hs"]
    body = json.loads(messages[0].body)
    assert body == {
        "event_id": "$e1", "room_id": "!r:hs", "type": "m.room.message", "sender": "@a:hs",
        "origin_server_ts": 1001, "content": {"n": 1}, "stream_position": 1,
    }
    invite = event_messages(commit(2, event_type="m.room.member", state_key="@b:hs"))
    assert [m.routing_key for m in invite][1:] == ["user.@a:hs", "user.@b:hs"]
    assert event_messages(commit(3, outlier=True)) == []  # never in a timeline


async def until(check: object, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


async def test_buffered_while_the_broker_is_away_then_published_in_order() -> None:
    broker = MemoryBroker()
    broker.reachable = False
    bus = EventBus(broker, buffer_size=100)
    await bus.start()
    for n in range(1, 6):
        bus.on_committed(commit(n))  # returns at once: nothing waits for the broker
    await asyncio.sleep(0.05)
    assert bus.buffered == 5 and broker.published == []
    broker.reachable = True
    await until(lambda: bus.buffered == 0)
    rooms = [json.loads(b)["content"]["n"] for k, b, _ in broker.published if k.startswith("room.")]
    assert rooms == [1, 2, 3, 4, 5]
    assert bus.published == 10 and bus.dropped == 0
    await bus.stop()


async def test_a_full_buffer_drops_the_oldest_and_counts() -> None:
    broker = MemoryBroker()
    broker.reachable = False
    bus = EventBus(broker, buffer_size=3)
    await bus.start()
    for n in range(1, 6):
        bus.on_committed(commit(n))
    assert (bus.buffered, bus.dropped) == (3, 2)
    broker.reachable = True
    await until(lambda: bus.buffered == 0)
    rooms = [json.loads(b)["content"]["n"] for k, b, _ in broker.published if k.startswith("room.")]
    assert rooms == [3, 4, 5]
    await bus.stop()
