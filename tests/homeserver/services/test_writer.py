"""The room writer: commits in stream order, shared commits across rooms, and what
its subscribers hear (after durability, in order, whatever one of them does)."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.core.errors import MatrixError
from homeserver.core.events import StoredEvent
from homeserver.core.records import PersistBatch, StoreConflict
from homeserver.services.fanout import Committed
from storage.engine import create_engine
from storage.stores.events import EventStore
from tests.homeserver.services.writer_setup import (
    ALICE,
    Recorder,
    initial_state,
    message,
    new_reader,
    room_writer,
)


async def test_concurrent_sends_in_many_rooms_are_durable_and_heard_in_stream_order(db_url: str) -> None:
    heard = Recorder()
    async with room_writer(db_url, [heard]) as s:
        rooms = [f"!r{i}:hs.test" for i in range(5)]
        for room in rooms:
            await s.writer.create_room(room, "10", ALICE, initial_state())

        async def chat(room: str) -> list[str]:
            return [
                (await s.writer.send_event(room, message(f"{room} {n}"))).event.event_id
                for n in range(8)
            ]

        sent = await asyncio.gather(*(chat(r) for r in rooms))

    assert heard.positions == sorted(heard.positions)
    assert len(set(heard.positions)) == len(heard.positions)
    # Read back by a reader that has seen nothing: every message, in each room's send order.
    engine = create_engine(db_url)
    try:
        reader = new_reader(engine, EventStore(engine))
        for room, ids in zip(rooms, sent, strict=True):
            got = await reader.get_events(ids)
            assert [got[i].event.content["body"] for i in ids] == [f"{room} {n}" for n in range(8)]
            streams = [got[i].stream_ordering for i in ids]
            assert streams == sorted(streams)
            head = await reader.room_head(room)
            assert head is not None and head.extremities == [ids[-1]]
    finally:
        await engine.dispose()


async def test_a_failing_subscriber_neither_fails_nor_stops_the_send(db_url: str) -> None:
    class Broken:
        def on_committed(self, commit: Committed) -> None:
            raise RuntimeError("subscriber bug")

    after = Recorder()
    async with room_writer(db_url, [Broken(), after]) as s:
        await s.writer.create_room("!r:hs.test", "10", ALICE, initial_state())
        first = await s.writer.send_event("!r:hs.test", message("one"))
        second = await s.writer.send_event("!r:hs.test", message("two"))
        durable = await s.events.get_events([first.event.event_id, second.event.event_id])

    assert set(durable) == {first.event.event_id, second.event.event_id}
    heard = [se.event.event_id for c in after.commits for se in c.events]
    assert heard[-2:] == [first.event.event_id, second.event.event_id]


async def test_a_conflicting_write_fails_alone_and_is_never_published(db_url: str) -> None:
    heard = Recorder()
    async with room_writer(db_url, [heard]) as s:
        await s.writer.create_room("!r:hs.test", "10", ALICE, initial_state())
        original = await s.writer.send_event("!r:hs.test", message("original"))
        # The same event again (e.g. two writers racing): the store refuses it.
        duplicate = PersistBatch(events=[StoredEvent(original.event, original.stream_ordering + 1000, None, None)])
        results = await asyncio.gather(
            s.writer.send_event("!r:hs.test", message("before")),
            s.persister.enqueue(duplicate),
            s.writer.send_event("!r:hs.test", message("after")),
            return_exceptions=True,
        )
        assert isinstance(results[1], StoreConflict)
        ok = [r for r in results if isinstance(r, StoredEvent)]
        assert [r.event.content["body"] for r in ok] == ["before", "after"]
        durable = await s.events.get_events(r.event.event_id for r in ok)

    assert len(durable) == 2
    heard_bodies = [se.event.content.get("body") for c in heard.commits for se in c.events]
    assert heard_bodies[-3:] == ["original", "before", "after"]


async def test_an_event_the_auth_rules_refuse_changes_nothing_and_is_not_heard(db_url: str) -> None:
    heard = Recorder()
    async with room_writer(db_url, [heard]) as s:
        await s.writer.create_room("!r:hs.test", "10", ALICE, initial_state())
        before = len(heard.commits)
        with pytest.raises(MatrixError):
            await s.writer.send_event("!r:hs.test", message("not a member", sender="@mallory:hs.test"))
        after = await s.writer.send_event("!r:hs.test", message("still fine"))

    assert len(heard.commits) == before + 1
    assert heard.commits[-1].events[0].event.event_id == after.event.event_id
