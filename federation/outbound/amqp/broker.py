"""Our connection to our own broker: up or down, reconnected with backoff, state changes logged.

One connection, two channels: one with publisher confirms for sending (a transaction counts as
handed over only when the broker confirms it, RabbitMQ "Publisher Confirms"), one for the
inbound consumer. When the connection drops, ``up`` turns false at once (the sender falls back
to HTTPS) and a single task reconnects with exponential backoff; ``on_up`` callbacks (queue
declarations, the consumer) run again on every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aio_pika.abc

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
PUBLISH_TIMEOUT = 10.0
MIN_BACKOFF, MAX_BACKOFF = 0.5, 10.0

OnUp = Callable[[aio_pika.abc.AbstractConnection], Awaitable[None]]


class BrokerDown(Exception):
    pass


class BrokerLink:
    def __init__(self, url: str, *, name: str = "tricolor") -> None:
        self._url = url
        self._name = name
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._publish: aio_pika.abc.AbstractChannel | None = None
        self._declared: set[str] = set()
        self._on_up: list[OnUp] = []
        self._late: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._state: bool | None = None  # last logged state
        self.state_changes = 0  # counted for status/metrics

    @property
    def up(self) -> bool:
        return self._publish is not None and not self._publish.is_closed

    def on_up(self, callback: OnUp) -> None:
        """Run ``callback`` with the connection now if up and after every reconnect."""
        self._on_up.append(callback)
        if self._conn is not None and not self._conn.is_closed and self.up:
            task = asyncio.get_running_loop().create_task(callback(self._conn))
            self._late.add(task)
            task.add_done_callback(self._late_done)

    def _late_done(self, task: asyncio.Task[None]) -> None:
        self._late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("AMQP set-up failed; retried on the next reconnect", exc_info=task.exception())

    async def start(self, wait: float = CONNECT_TIMEOUT) -> None:
        """Try to connect (bounded); keep trying in the background if the broker is down."""
        self._task = asyncio.create_task(self._run(), name="amqp-broker-link")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)

    def _log_state(self, up: bool, why: str = "") -> None:
        if self._state is up:
            return
        first, self._state = self._state is None, up
        self.state_changes += 1
        if up and first:
            log.info("AMQP broker connected")
        elif up:
            log.warning("AMQP broker reachable again: federation goes through it")
        else:
            log.warning("AMQP broker unreachable (%s): federation falls back to HTTPS", why)

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        while not self._closing:
            lost = asyncio.get_running_loop().create_future()
            try:
                conn = await aio_pika.connect(
                    self._url,
                    timeout=CONNECT_TIMEOUT,
                    client_properties={"connection_name": self._name},
                )
            except Exception as e:
                self._log_state(False, f"{type(e).__name__}: {e}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue

            def closed(*_: Any, fut: asyncio.Future[None] = lost) -> None:
                if not fut.done():
                    fut.set_result(None)

            conn.close_callbacks.add(closed)
            try:
                channel = await conn.channel(publisher_confirms=True)
                self._conn, self._declared = conn, set()
                for callback in self._on_up:
                    await callback(conn)
                self._publish = channel
                self._connected.set()
                self._log_state(True)
                backoff = MIN_BACKOFF
                await lost
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("AMQP session failed: %s: %s", type(e).__name__, e)
            finally:
                self._publish = None
                self._connected.clear()
            self._log_state(False, "connection lost")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def queue_depth(self, queue: str) -> int:
        """Messages ready in our durable ``queue`` (declared if new; not counting those a
        shovel has in flight). Raises BrokerDown when not connected."""
        channel = self._publish
        if channel is None or channel.is_closed:
            raise BrokerDown("not connected")
        declared = await channel.declare_queue(queue, durable=True)
        self._declared.add(queue)
        count = declared.declaration_result.message_count
        return int(count or 0)

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, headers: dict[str, Any] | None = None
    ) -> None:
        """Publish persistently to a durable ``queue``; returns once the broker confirmed it.
        Raises BrokerDown when not connected, or the broker's error."""
        channel = self._publish
        if channel is None or channel.is_closed:
            raise BrokerDown("not connected")
        if queue not in self._declared:
            await channel.declare_queue(queue, durable=True)
            self._declared.add(queue)
        await channel.default_exchange.publish(
            aio_pika.Message(
                body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
                content_type="application/json",
                headers=headers or {},
            ),
            routing_key=queue,
            mandatory=True,
            timeout=PUBLISH_TIMEOUT,
        )
