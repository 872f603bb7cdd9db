"""A transport that tells an observer how each delivery went and names the attempt.

Wraps the configured transport (HTTPS, or AMQP with its HTTPS fallback). Each attempt runs
under a request id of its own (``txn-<id>``), so our log lines about it, and the peer's
(the id goes out as ``X-Request-Id`` on the HTTPS request), can be found together.
"""

from __future__ import annotations

from collections.abc import Callable

from federation.outbound.transport.base import DeliveryResult, Transaction, Transport
from homeserver.core import request_id

Observer = Callable[[Transaction, DeliveryResult], None]


class ObservedTransport:
    def __init__(self, inner: Transport, observer: Observer) -> None:
        self._inner = inner
        self._observer = observer

    async def deliver(self, txn: Transaction) -> DeliveryResult:
        token = request_id.current.set(request_id.new_id(f"txn-{txn.txn_id}-"))
        try:
            result = await self._inner.deliver(txn)
        finally:
            request_id.current.reset(token)
        self._observer(txn, result)
        return result
