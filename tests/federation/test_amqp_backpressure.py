"""AmqpTransport on a real RabbitMQ (the test services' broker): a destination whose queue
is not drained (no shovel takes from it: the peer's broker is away) gets ``max_queued``
transactions published and confirmed, then :class:`Held` instead of a longer queue; once
the queue is short again, publishing resumes. The queue is this test's own and deleted."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import aio_pika
import pytest

from federation.outbound.amqp.broker import BrokerLink
from federation.outbound.amqp.shovels import ShovelManager
from federation.outbound.amqp.transport import AmqpTransport, StaticRoute
from federation.outbound.transport.base import Delivered, Held, Retry, Transaction
from homeserver.core.federation_envelope import out_queue
from homeserver.core.signing import generate_signing_key

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class NoHttps:
    async def deliver(self, txn: Transaction) -> Retry:
        raise AssertionError("the broker is up: nothing may go over HTTPS")


@pytest.fixture
async def broker() -> AsyncIterator[BrokerLink]:
    link = BrokerLink(AMQP_URL, name="tricolor-test-backpressure")
    await link.start(wait=5)
    if not link.up:
        await link.close()
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    yield link
    await link.close()


async def test_a_queue_that_does_not_drain_holds_new_transactions(broker: BrokerLink) -> None:
    destination = f"held-{secrets.token_hex(4)}.test"
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # every reading is fresh: the depth is checked at every attempt
        return now[0]

    shovels = ShovelManager("http://guest:guest@127.0.0.1:1")  # unreachable: shovels never made
    transport = AmqpTransport(
        origin="me.test", key=generate_signing_key("k"), broker=broker, shovels=shovels,
        https=NoHttps(), key_responses=lambda _: asyncio.sleep(0, None), default_amqp=True,
        static={destination: StaticRoute("amqp", "amqp://peer", "tricolor.fed.in")},
        max_queued=3, clock=clock,
    )

    def txn(n: int) -> Transaction:
        pdu = {"type": "m.room.message", "room_id": "!r:me.test", "content": {"n": n}}
        return Transaction("me.test", destination, f"t{n}", 1, [pdu], [])

    try:
        results = [await transport.deliver(txn(n)) for n in range(5)]
        assert [type(r) for r in results] == [Delivered, Delivered, Delivered, Held, Held]
        assert (transport.published, transport.held, transport.fallbacks) == (3, 2, 0)
        assert await broker.queue_depth(out_queue(destination)) == 3
        # The queue drains (a shovel took the messages): publishing resumes.
        async with await aio_pika.connect(AMQP_URL) as conn:
            channel = await conn.channel()
            queue = await channel.declare_queue(out_queue(destination), durable=True)
            await queue.purge()
        assert isinstance(await transport.deliver(txn(5)), Delivered)
    finally:
        await shovels.close()
        async with await aio_pika.connect(AMQP_URL) as conn:
            channel = await conn.channel()
            await channel.queue_delete(out_queue(destination))
