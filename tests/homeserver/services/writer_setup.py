"""A room writer on a real database, with the subscribers a test gives it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import attrs

from homeserver.core.signing import generate_signing_key
from homeserver.services.fanout import CommitSubscriber, Committed
from homeserver.services.local_events import EventSpec, LocalEventBuilder
from homeserver.services.persister import IdGenerator, Persister
from homeserver.services.reader import EventReader
from homeserver.services.recent import RecentEvents
from homeserver.services.replication import LocalBlockIds, LocalStreamIds
from homeserver.services.room_heads import RoomHeads
from homeserver.services.writer import RoomWriter
from storage.engine import create_engine
from storage.stores.events import EventStore
from storage.stores.room_purge import RoomPurgeStore
from storage.stores.rooms import RoomStore
from storage.stores.state import StateStore

SERVER = "hs.test"
ALICE = f"@alice:{SERVER}"


@attrs.define
class Recorder:
    """A subscriber that keeps every commit it hears of."""

    commits: list[Committed] = attrs.field(factory=list)

    def on_committed(self, commit: Committed) -> None:
        self.commits.append(commit)

    @property
    def positions(self) -> list[int]:
        return [se.stream_ordering for c in self.commits for se in c.events]


@attrs.frozen
class Setup:
    writer: RoomWriter
    persister: Persister
    events: EventStore


def new_reader(engine: object, events: EventStore) -> EventReader:
    rooms, state = RoomStore(engine), StateStore(engine)  # type: ignore[arg-type]
    return EventReader(
        server_name=SERVER, events=events, state=state, rooms=rooms,
        heads=RoomHeads(rooms, state), recent=RecentEvents(0),
    )


@asynccontextmanager
async def room_writer(db_url: str, subscribers: Sequence[CommitSubscriber]) -> AsyncIterator[Setup]:
    engine = create_engine(db_url)
    events, rooms, state = EventStore(engine), RoomStore(engine), StateStore(engine)
    max_stream, max_group, min_stream = await events.max_ids()
    heads = RoomHeads(rooms, state)
    reader = EventReader(
        server_name=SERVER, events=events, state=state, rooms=rooms, heads=heads,
        recent=RecentEvents(max_stream),
    )
    persister = Persister(events)
    persister.start()
    writer = RoomWriter(
        server_name=SERVER, reader=reader, heads=heads, events=events, state=state,
        persister=persister, purge=RoomPurgeStore(engine),
        builder=LocalEventBuilder(server_name=SERVER, signing_key=generate_signing_key("t"), reader=reader),
        stream_ids=LocalStreamIds(IdGenerator(max_stream)), group_ids=LocalBlockIds(IdGenerator(max_group)),
        outlier_ids=LocalBlockIds(IdGenerator(min_stream, step=-1)), subscribers=[reader, *subscribers],
    )
    try:
        yield Setup(writer, persister, events)
    finally:
        await persister.stop()
        await engine.dispose()


def initial_state(creator: str = ALICE) -> list[EventSpec]:
    return [
        EventSpec("m.room.create", creator, {"room_version": "10", "creator": creator}, ""),
        EventSpec("m.room.member", creator, {"membership": "join"}, creator),
        EventSpec("m.room.power_levels", creator, {"users": {creator: 100}}, ""),
        EventSpec("m.room.join_rules", creator, {"join_rule": "public"}, ""),
    ]


def message(text: str, sender: str = ALICE) -> EventSpec:
    return EventSpec("m.room.message", sender, {"msgtype": "m.text", "body": text})
