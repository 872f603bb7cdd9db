"""The transport seam: what the sender hands over, and what it gets back.

The sender (queueing, batching, backoff, persistence) builds a :class:`Transaction` and asks
a :class:`Transport` to deliver it; the transport alone knows the wire (HTTPS, AMQP) and
reduces whatever happened to one of four outcomes the sender acts on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs


@attrs.frozen
class Transaction:
    """One transaction to one destination (spec: Server-Server API, "Transactions",
    https://spec.matrix.org/v1.11/server-server-api/#transactions).

    ``txn_id`` is kept across retries of the same body, so a peer that already processed
    it (and we missed the answer) replays its stored response instead of applying it twice.
    """

    origin: str
    destination: str
    txn_id: str
    origin_server_ts: int
    pdus: Sequence[Mapping[str, Any]]
    edus: Sequence[Mapping[str, Any]]

    def body(self) -> dict[str, Any]:
        """The spec's Transaction object (``PUT /send/{txnId}`` body); the destination and
        txnId travel beside it."""
        return {
            "origin": self.origin, "origin_server_ts": self.origin_server_ts,
            "pdus": list(self.pdus), "edus": list(self.edus),
        }


@attrs.frozen
class Delivered:
    """The peer accepted the transaction. ``pdu_errors`` (event id -> error) are PDUs it
    looked at and refused; retrying cannot change its mind, so they count as delivered."""

    pdu_errors: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Retry:
    """Not delivered, for a reason that may pass (unreachable, overloaded, rate-limited):
    send the same transaction again later, no sooner than ``after_ms`` if the peer said so."""

    reason: str
    after_ms: int | None = None


@attrs.frozen
class Refused:
    """The peer answered and refused the whole transaction."""

    reason: str


@attrs.frozen
class Held:
    """Nothing was handed over: the way to the peer is backlogged (its store-and-forward
    queue is not draining), so the transaction waits in our outbox, where later PDUs join
    it in full batches, instead of the queue growing one small transaction at a time.
    Not a failure: the backoff does not grow; ask again after ``after_ms``. Nothing went
    out under the txn id, so the sender may rebuild the batch."""

    reason: str
    after_ms: int


DeliveryResult = Delivered | Retry | Refused | Held


class Transport(Protocol):
    """Delivers one transaction. Never raises for a delivery failure: every way it can go
    wrong is a :class:`Retry` or a :class:`Refused`."""

    async def deliver(self, txn: Transaction) -> DeliveryResult: ...


@attrs.frozen
class TransportRouter:
    """Picks the transport per destination: ``overrides`` by server name, else ``default``.

    Itself a :class:`Transport`, so the sender never knows there is a choice; a per-peer
    ``transport:`` setting only changes what the composition root puts in ``overrides``.
    """

    default: Transport
    overrides: Mapping[str, Transport] = attrs.field(factory=dict)

    async def deliver(self, txn: Transaction) -> DeliveryResult:
        return await self.overrides.get(txn.destination, self.default).deliver(txn)
