"""``AmqpTransport``: transactions through our broker and a shovel, HTTPS when that is not possible.

Per destination: static config (``federation.peers``) first, else what the peer advertises in
its signed key response (``org.tricolor.amqp``), else HTTPS (Synapse and every other server).
A transaction is published, signed as a whole (``homeserver.core.federation_envelope``), to
our durable ``tricolor.fed.out.<destination>`` queue and counts as :class:`Delivered` once the
broker confirms it: from there the queue and the shovel carry it, across outages of the peer
or of the link. When our broker is down, or a publish fails, the same transaction (same txn
id) goes over HTTPS; the receiver deduplicates by (origin, txn id), so a message that made it
into the queue as well is harmless.

Backpressure (catch-up in batches): when a destination's queue already holds
``max_queued`` transactions its shovel has not taken (the peer or the link is down), new
transactions are :class:`Held` rather than published: they wait in the sender's durable
outbox and go out, once the queue drains, as full transactions of up to 50 PDUs, so a
peer back from an outage applies a few large transactions instead of one per message,
and our broker's queue stays small however long the outage. The depth is read at most
every ``DEPTH_CHECK_S`` while the queue is short, and at every attempt while held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from federation.outbound.amqp.broker import BrokerLink
from federation.outbound.amqp.shovels import ShovelManager, ShovelSpec
from federation.outbound.transport.base import (
    Delivered,
    DeliveryResult,
    Held,
    Transaction,
    Transport,
)
from homeserver.core.federation_envelope import encode_envelope, out_queue, parse_advertisement
from homeserver.core.signing import SigningKey

log = logging.getLogger(__name__)

ROUTE_TTL = 600.0  # seconds an advertised route is trusted before the key response is read again
MAX_QUEUED = 10  # transactions waiting in a destination's queue before new ones are held
DEPTH_CHECK_S = 0.5  # how stale a "the queue is short" reading may be
HOLD_MS = 1_000  # how long the sender waits before asking again while held


@attrs.frozen
class StaticRoute:
    transport: str  # "amqp" or "https"
    amqp_uri: str | None = None
    exchange: str | None = None


KeyResponses = Callable[[str], Awaitable[Mapping[str, Any] | None]]


class AmqpTransport:
    """Implements ``Transport``."""

    def __init__(
        self,
        *,
        origin: str,
        key: SigningKey,
        broker: BrokerLink,
        shovels: ShovelManager,
        https: Transport,
        key_responses: KeyResponses,
        default_amqp: bool,
        static: Mapping[str, StaticRoute] | None = None,
        default_exchange: str = "tricolor.fed.in",
        max_queued: int = MAX_QUEUED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._origin = origin
        self._key = key
        self._broker = broker
        self._shovels = shovels
        self._https = https
        self._key_responses = key_responses
        self._default_amqp = default_amqp
        self._static = dict(static or {})
        self._default_exchange = default_exchange
        self._routes: dict[str, tuple[float, ShovelSpec | None]] = {}
        self._fallback: dict[str, bool] = {}
        self._max_queued = max_queued
        self._clock = clock
        self._short_since: dict[str, float] = {}  # destination -> when its queue was last seen short
        # Plain counters for status and metrics.
        self.fallbacks = 0  # transactions sent over HTTPS because AMQP was not possible
        self.published = 0  # transactions confirmed by our broker
        self.held = 0  # attempts held back because the destination's queue was backlogged

    async def route(self, destination: str) -> ShovelSpec | None:
        """The shovel for ``destination``, or None when it is reached over HTTPS."""
        cached = self._routes.get(destination)
        if cached is not None and time.monotonic() - cached[0] < ROUTE_TTL:
            return cached[1]
        spec: ShovelSpec | None = None
        static = self._static.get(destination)
        if static is not None and static.transport == "https":
            spec = None
        elif static is not None and static.amqp_uri:
            spec = ShovelSpec(
                destination, static.amqp_uri, static.exchange or self._default_exchange
            )
        elif static is not None or self._default_amqp:
            try:
                response = await self._key_responses(destination)
            except Exception as e:
                response = None
                log.info("cannot read the key response of %s: %s", destination, e)
            if response is None:
                return None  # not known yet (peer unreachable): not cached, asked again next time
            advert = parse_advertisement(response)
            if advert is not None:
                uri, exchange = advert
                spec = ShovelSpec(
                    destination, uri, static.exchange if static and static.exchange else exchange
                )
        self._routes[destination] = (time.monotonic(), spec)
        return spec

    async def deliver(self, txn: Transaction) -> DeliveryResult:
        spec = await self.route(txn.destination)
        if spec is None:
            return await self._https.deliver(txn)
        why = "broker unreachable"
        if self._broker.up:
            held = await self._backlogged(txn.destination)
            if held is not None:
                self.held += 1
                return held
            body = encode_envelope(txn.origin, txn.destination, txn.txn_id, txn.body(), self._key)
            try:
                await self._broker.publish(out_queue(txn.destination), body, message_id=txn.txn_id)
            except Exception as e:
                why = f"publish failed: {type(e).__name__}: {e}"
            else:
                self._note(txn.destination, fallback=False, why="")
                self.published += 1
                await self._ensure_shovel(spec)
                return Delivered()
        self._note(txn.destination, fallback=True, why=why)
        self.fallbacks += 1
        return await self._https.deliver(txn)

    async def _backlogged(self, destination: str) -> Held | None:
        """Held when the destination's queue holds ``max_queued`` or more transactions."""
        now = self._clock()
        if now - self._short_since.get(destination, float("-inf")) < DEPTH_CHECK_S:
            return None
        try:
            depth = await self._broker.queue_depth(out_queue(destination))
        except Exception as e:  # the publish that follows finds out and falls back
            log.debug("queue depth of %s unknown: %s", destination, e)
            return None
        if depth < self._max_queued:
            self._short_since[destination] = now
            return None
        self._short_since.pop(destination, None)
        return Held(f"{depth} transactions wait for the shovel to {destination}", HOLD_MS)

    async def _ensure_shovel(self, spec: ShovelSpec) -> None:
        # After the publish: the message is safe in our queue either way; a shovel that
        # cannot be made now is made by the supervisor's next check.
        try:
            await self._shovels.ensure(spec)
        except Exception as e:
            log.warning(
                "shovel to %s not ensured yet: %s: %s", spec.destination, type(e).__name__, e
            )

    def _note(self, destination: str, *, fallback: bool, why: str) -> None:
        """Log once per state change per destination."""
        if self._fallback.get(destination, False) == fallback:
            return
        self._fallback[destination] = fallback
        if fallback:
            log.warning("federation to %s falls back to HTTPS: %s", destination, why)
        else:
            log.warning("federation to %s goes over AMQP again", destination)

    def status(self) -> dict[str, Any]:
        return {
            "broker_up": self._broker.up,
            "https_fallbacks": self.fallbacks,
            "published": self.published,
            "held": self.held,
            "shovels": self._shovels.states(),
            "falling_back": sorted(d for d, f in self._fallback.items() if f),
        }
