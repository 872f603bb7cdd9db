"""How a transaction reaches a peer, behind one interface (see ``base``).

``base``: the Transaction record, the three outcomes and the Transport Protocol, plus the
per-destination router. ``https``: the Matrix standard. The AMQP transport will be a sibling
of ``https``, chosen per destination by :func:`from_config`; the sender does not change.
"""

from __future__ import annotations

from config.errors import ConfigError
from config.schema import HomeserverConfig
from federation.outbound.transport.base import (
    Delivered,
    DeliveryResult,
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
    "HttpsTransport",
    "Refused",
    "Retry",
    "Transaction",
    "Transport",
    "TransportRouter",
    "from_config",
]


def from_config(cfg: HomeserverConfig, client: FederationClientPort) -> Transport:
    """The transport ``federation.transport`` asks for, or a ConfigError if it cannot be had.

    There are no per-peer transport settings yet; when there are, they become the router's
    ``overrides``.
    """
    if cfg.federation.transport != "https":
        raise ConfigError(
            f"{cfg.federation.transport} transport is not available yet; use https",
            file=cfg.config_path, key="federation.transport",
        )
    return TransportRouter(default=HttpsTransport(client))
