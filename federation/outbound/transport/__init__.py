"""How a transaction reaches a peer, behind one interface (see ``base``).

``base``: the Transaction record, the three outcomes and the Transport Protocol, plus the
per-destination router. ``https``: the Matrix standard. The AMQP transport
(``federation.outbound.amqp``) wraps the HTTPS one, choosing per destination; the sender
does not change.
"""

from __future__ import annotations

from config.errors import ConfigError
from config.schema import HomeserverConfig
from federation.outbound.transport.base import (
    Delivered,
    DeliveryResult,
    Held,
    Refused,
    Retry,
    Transaction,
    Transport,
    TransportRouter,
)
from federation.outbound.transport.https import HttpsTransport
from homeserver.services.ports import FederationClientPort

__all__ = [
    "Delivered",
    "DeliveryResult",
    "Held",
    "HttpsTransport",
    "Refused",
    "Retry",
    "Transaction",
    "Transport",
    "TransportRouter",
    "from_config",
]


def from_config(cfg: HomeserverConfig, client: FederationClientPort) -> Transport:
    """The HTTPS transport every configuration has (AMQP falls back to it), after checking
    that an AMQP configuration has the broker settings it needs (else a ConfigError)."""
    if cfg.federation.transport == "amqp" or any(
        p.transport == "amqp" for p in cfg.federation.peers.values()
    ):
        for key in ("url", "management_url"):
            if getattr(cfg.rabbitmq, key) is None:
                raise ConfigError(
                    f"transport amqp needs rabbitmq.{key}",
                    file=cfg.config_path,
                    key=f"rabbitmq.{key}",
                )
    return TransportRouter(default=HttpsTransport(client))
