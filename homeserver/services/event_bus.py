"""The event bus: every persisted event, and every client event report, published to a
RabbitMQ topic exchange (``tricolor.events``) for services that should not poll.

Routing keys (topic words are separated by dots; ids are used as they are):

- ``room.<room_id>.<event type>`` for each timeline event,
- ``user.<user_id>`` for the same event, once for its sender and once for the target of a
  membership event (a queue bound to both ``room.#`` and ``user.#`` receives both copies;
  the message id, the event id, tells them apart),
- ``client.<user_id>.<type>`` for client event reports (``POST /_tricolor/client/v1/events``).

The send path never waits for the broker: ``on_committed`` (a room-writer subscriber) and
``on_client_event`` only append to a bounded buffer; the bus's own task encodes and
publishes (with publisher confirms) and reconnects with backoff while the broker is down.
A full buffer drops its oldest entries and counts them (``tricolor_event_bus_dropped_total``):
the bus is a feed for other services, at most once across a broker outage longer than the
buffer or a restart, never a reason for a send to fail or slow down.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from homeserver.core.canonical_json import encode_json
from homeserver.services.client_events import ClientEvent
from homeserver.services.fanout import Committed

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
BATCH = 200  # messages published (and confirmed) per round


@attrs.frozen
class BusMessage:
    routing_key: str
    body: bytes
    message_id: str


class BusPublisherPort(Protocol):
    """The broker side (``homeserver/outbound/event_bus.py``)."""

    @property
    def up(self) -> bool: ...

    async def connect(self) -> None:
        """Connect and declare the exchange and consumer-group queues; raises when it cannot."""

    async def publish(self, messages: Sequence[tuple[str, bytes, str]]) -> None:
        """Publish (routing key, body, message id) and return once the broker confirmed all;
        raises (and drops the connection) on any failure."""

    async def close(self) -> None: ...


def event_messages(commit: Committed) -> list[BusMessage]:
    """What one commit publishes: its timeline events (outliers, backfilled history and
    soft-failed events never reached a timeline, so they are not news)."""
    out: list[BusMessage] = []
    for se in commit.events:
        if se.outlier or se.soft_failed or se.stream_ordering <= 0:
            continue
        ev = se.event
        pdu = ev.pdu
        body: dict[str, Any] = {
            "event_id": ev.event_id, "room_id": ev.room_id, "type": ev.type, "sender": ev.sender,
            "origin_server_ts": pdu.get("origin_server_ts"), "content": ev.content,
            "stream_position": se.stream_ordering,
        }
        if ev.state_key is not None:
            body["state_key"] = ev.state_key
        if "redacts" in pdu:
            body["redacts"] = pdu["redacts"]
        data = encode_json(body).encode("utf-8")
        out.append(BusMessage(f"room.{ev.room_id}.{ev.type}", data, ev.event_id))
        out.append(BusMessage(f"user.{ev.sender}", data, ev.event_id))
        if ev.type == "m.room.member" and ev.state_key and ev.state_key != ev.sender:
            out.append(BusMessage(f"user.{ev.state_key}", data, ev.event_id))
    return out


def client_event_message(event: ClientEvent) -> BusMessage:
    body = {
        "id": event.id, "user_id": event.user_id, "device_id": event.device_id, "type": event.type,
        "content": event.content, "client_ts": event.client_ts, "received_ts": event.received_ts,
    }
    return BusMessage(
        f"client.{event.user_id}.{event.type}", encode_json(body).encode("utf-8"), f"client-event-{event.id}",
    )


class EventBus:
    """Buffer and publishing task; a room-writer subscriber and a client-event listener."""

    def __init__(self, publisher: BusPublisherPort, buffer_size: int) -> None:
        self._publisher = publisher
        # Commits and client events as they came; encoded by the task, not the send path.
        self._pending: collections.deque[Committed | ClientEvent] = collections.deque()
        self._buffer_size = buffer_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.dropped = 0

    @property
    def up(self) -> bool:
        return self._publisher.up

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def on_committed(self, commit: Committed) -> None:
        self._offer(commit)

    def on_client_event(self, event: ClientEvent) -> None:
        self._offer(event)

    def _offer(self, item: Committed | ClientEvent) -> None:
        if len(self._pending) >= self._buffer_size:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(item)
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-bus")

    async def stop(self) -> None:
        """Publish what is buffered if the broker takes it within a few seconds, then stop."""
        if self._task is not None:
            if self._pending and self._publisher.up:
                self._wake.set()
                for _ in range(50):
                    if not self._pending:
                        break
                    await asyncio.sleep(0.1)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._publisher.close()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            try:
                if not self._publisher.up:
                    await self._publisher.connect()
                    log.info("event bus: connected")
                await self._publish_some()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("event bus: broker unavailable (%s: %s); retrying in %.1fs",
                            type(e).__name__, e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _publish_some(self) -> None:
        """Publish from the head of the buffer; an item leaves it only once confirmed."""
        while self._pending:
            items: list[Committed | ClientEvent] = []
            messages: list[BusMessage] = []
            for item in self._pending:
                messages += event_messages(item) if isinstance(item, Committed) else [client_event_message(item)]
                items.append(item)
                if len(messages) >= BATCH:
                    break
            await self._publisher.publish([(m.routing_key, m.body, m.message_id) for m in messages])
            for item in items:
                # Items dropped for space while we awaited are gone from the left already.
                if self._pending and self._pending[0] is item:
                    self._pending.popleft()
            self.published += len(messages)
