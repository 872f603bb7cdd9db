"""Building the AMQP side from config: one broker link, its shovels, transport and consumer."""

from __future__ import annotations

from typing import Any

import attrs

from config.schema import HomeserverConfig
from federation.outbound.amqp.broker import BrokerLink
from federation.outbound.amqp.consumer import InboundConsumer, TransactionReceiver
from federation.outbound.amqp.shovels import ShovelManager
from federation.outbound.amqp.transport import AmqpTransport, KeyResponses, StaticRoute
from federation.outbound.transport.base import Transport
from homeserver.core.federation_envelope import ADVERTISEMENT_FIELD
from homeserver.core.signing import SigningKey
from homeserver.services.ports import KeyringPort


def uses_amqp(cfg: HomeserverConfig) -> bool:
    fed = cfg.federation
    return fed.transport == "amqp" or any(p.transport == "amqp" for p in fed.peers.values())


def advertisement(cfg: HomeserverConfig) -> dict[str, Any]:
    """The extra field of our signed key response, or nothing when we do not take AMQP."""
    rmq = cfg.rabbitmq
    if rmq.url is None or rmq.advertise_url is None:
        return {}
    return {ADVERTISEMENT_FIELD: {"uri": rmq.advertise_url, "exchange": rmq.inbound_exchange}}


@attrs.define
class AmqpRuntime:
    broker: BrokerLink
    shovels: ShovelManager
    transport: AmqpTransport | None
    consumer: InboundConsumer | None = None

    @classmethod
    def build(
        cls,
        cfg: HomeserverConfig,
        key: SigningKey,
        https: Transport,
        key_responses: KeyResponses,
    ) -> AmqpRuntime:
        rmq, fed = cfg.rabbitmq, cfg.federation
        assert rmq.url is not None
        broker = BrokerLink(rmq.url, name=f"tricolor {cfg.server_name}")
        shovels = ShovelManager(
            rmq.management_url or "http://127.0.0.1:15672", prefetch=rmq.shovel_prefetch
        )
        transport = None
        if uses_amqp(cfg):
            transport = AmqpTransport(
                origin=cfg.server_name,
                key=key,
                broker=broker,
                shovels=shovels,
                https=https,
                key_responses=key_responses,
                default_amqp=fed.transport == "amqp",
                static={
                    name: StaticRoute(p.transport, p.amqp_uri, p.exchange)
                    for name, p in fed.peers.items()
                },
                default_exchange=rmq.inbound_exchange,
            )
        return cls(broker, shovels, transport)

    async def start(self) -> None:
        await self.shovels.start()
        await self.broker.start()

    def consume(
        self,
        cfg: HomeserverConfig,
        keyring: KeyringPort,
        receiver: TransactionReceiver,
    ) -> None:
        """Take peers' transactions from our inbound queue (only when we advertise it)."""
        if cfg.rabbitmq.advertise_url is None:
            return
        self.consumer = InboundConsumer(
            server_name=cfg.server_name,
            broker=self.broker,
            exchange=cfg.rabbitmq.inbound_exchange,
            keyring=keyring,
            receiver=receiver,
            max_bytes=cfg.limits.max_request_bytes,
        )
        self.consumer.attach()

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.close()
        await self.shovels.close()
        await self.broker.close()
