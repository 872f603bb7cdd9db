"""The event bus's broker side: a topic exchange, a durable queue per consumer group, and
confirmed publishing (aio-pika). The buffering and retrying are the service's
(``homeserver/services/event_bus.py``); this only talks AMQP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

import aio_pika
import aio_pika.abc

CONNECT_TIMEOUT = 5.0
PUBLISH_TIMEOUT = 10.0


def group_queue(exchange: str, group: str) -> str:
    """The durable queue of one consumer group: ``tricolor.events.<group>``."""
    return f"{exchange}.{group}"


class AmqpEventPublisher:
    def __init__(self, url: str, exchange: str, consumer_groups: Mapping[str, Sequence[str]], name: str) -> None:
        self._url = url
        self._exchange_name = exchange
        self._groups = {g: tuple(keys) for g, keys in consumer_groups.items()}
        self._name = name
        self._conn: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    @property
    def up(self) -> bool:
        return self._exchange is not None and self._conn is not None and not self._conn.is_closed

    async def connect(self) -> None:
        await self._drop()
        # A plain (not robust) connection: the service's loop reconnects and re-declares.
        conn = await asyncio.wait_for(
            aio_pika.connect(self._url, client_properties={"connection_name": self._name}), CONNECT_TIMEOUT,
        )
        try:
            channel = await conn.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True,
            )
            for group, keys in self._groups.items():
                queue = await channel.declare_queue(group_queue(self._exchange_name, group), durable=True)
                for key in keys:
                    await queue.bind(exchange, routing_key=key)
        except BaseException:
            await conn.close()
            raise
        self._conn, self._exchange = conn, exchange  # type: ignore[assignment]

    async def publish(self, messages: Sequence[tuple[str, bytes, str]]) -> None:
        exchange = self._exchange
        if exchange is None:
            raise ConnectionError("not connected")
        try:
            await asyncio.gather(*(
                exchange.publish(
                    aio_pika.Message(
                        body, message_id=message_id, content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=key, timeout=PUBLISH_TIMEOUT,
                )
                for key, body, message_id in messages
            ))
        except BaseException:
            await self._drop()
            raise

    async def _drop(self) -> None:
        conn, self._conn, self._exchange = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def ping(self) -> bool:
        return self.up

    async def close(self) -> None:
        await self._drop()
