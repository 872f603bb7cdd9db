"""The inbound side: peers' shovels deliver into our exchange; one consumer applies them.

Per message, in queue order (order per sender is kept: one consumer, one message at a time):
size and shape checks, destination is us, signature of the origin over the whole envelope
(keys fetched and cached by the keyring like any federation key), then the same
transport-neutral ``receive_transaction`` as ``PUT /send`` (m.room.server_acl per PDU,
deduplication by (origin, txn id) persisted, and by event id). Acknowledged only after that
returned, i.e. after the transaction is persisted: a crash before redelivers, and the
deduplication makes the redelivery harmless (shovels deliver at least once).

A poison message (malformed, oversized, unsigned, bad signature, unknown origin, wrong
destination, refused as a whole) is copied to the dead-letter queue with the reason in the
``x-tricolor-reason`` header, then acknowledged: it never blocks the queue, and is counted.
Any other failure (our database, say) is not the message's fault: it is requeued after a
pause and tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

import aio_pika
import aio_pika.abc

from federation.outbound.amqp.broker import BrokerLink
from homeserver.core.errors import MatrixError, SignatureError
from homeserver.core.federation_envelope import PoisonMessage, decode_envelope, drop_stale_typing
from homeserver.services.ports import KeyringPort

log = logging.getLogger(__name__)

PREFETCH = 20
RETRY_PAUSE = 1.0  # seconds before a message that failed for our own reasons is tried again
REASON_HEADER = "x-tricolor-reason"


class TransactionReceiver(Protocol):
    async def receive_transaction(self, origin: str, txn_id: str, body: Any) -> dict[str, Any]: ...


def inbound_queue(server_name: str) -> str:
    return f"tricolor.fed.in.{server_name}"


def dead_letter_queue(server_name: str) -> str:
    return f"tricolor.fed.dead.{server_name}"


class InboundConsumer:
    def __init__(
        self,
        *,
        server_name: str,
        broker: BrokerLink,
        exchange: str,
        keyring: KeyringPort,
        receiver: TransactionReceiver,
        max_bytes: int,
    ) -> None:
        self._server_name = server_name
        self._broker = broker
        self._exchange = exchange
        self._keyring = keyring
        self._receiver = receiver
        self._max_bytes = max_bytes
        self._task: asyncio.Task[None] | None = None
        self.processed = 0
        self.dead_lettered = 0

    def attach(self) -> None:
        """Consume now and after every reconnect of the broker link."""
        self._broker.on_up(self._on_up)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _on_up(self, conn: aio_pika.abc.AbstractConnection) -> None:
        channel = await conn.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        exchange = await channel.declare_exchange(
            self._exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue = await channel.declare_queue(inbound_queue(self._server_name), durable=True)
        await queue.bind(exchange, routing_key=self._server_name)
        await channel.declare_queue(dead_letter_queue(self._server_name), durable=True)
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.create_task(self._consume(channel, queue), name="amqp-inbound")

    async def _consume(
        self, channel: aio_pika.abc.AbstractChannel, queue: aio_pika.abc.AbstractQueue
    ) -> None:
        try:
            async with queue.iterator() as messages:
                async for message in messages:
                    await self._one(channel, message)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the channel went away: the link reconnects and calls _on_up
            log.info("inbound consumer stopped: %s: %s", type(e).__name__, e)

    async def _one(
        self, channel: aio_pika.abc.AbstractChannel, message: aio_pika.abc.AbstractIncomingMessage
    ) -> None:
        try:
            envelope = decode_envelope(message.body, self._server_name, self._max_bytes)
            try:
                await self._keyring.verify_json(envelope.signed, envelope.origin)
            except SignatureError as e:
                unknown = "No usable key" in e.error or "No valid key" in e.error
                raise PoisonMessage(
                    ("unknown origin: " if unknown else "bad signature: ") + e.error
                ) from None
            body = drop_stale_typing(envelope.body, int(time.time() * 1000))
            try:
                await self._receiver.receive_transaction(envelope.origin, envelope.txn_id, body)
            except MatrixError as e:
                raise PoisonMessage(f"refused: {e.errcode}: {e.error}") from None
        except PoisonMessage as poison:
            await self._dead_letter(channel, message, poison.reason)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("inbound transaction failed; trying it again in %.0f s", RETRY_PAUSE)
            await asyncio.sleep(RETRY_PAUSE)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        await message.ack()
        self.processed += 1

    async def _dead_letter(
        self,
        channel: aio_pika.abc.AbstractChannel,
        message: aio_pika.abc.AbstractIncomingMessage,
        reason: str,
    ) -> None:
        self.dead_lettered += 1
        log.warning(
            "dead-lettered an inbound transaction (%d so far): %s", self.dead_lettered, reason
        )
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = reason[:500]
        await channel.default_exchange.publish(
            aio_pika.Message(
                message.body, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            ),
            routing_key=dead_letter_queue(self._server_name),
        )
        await message.ack()
