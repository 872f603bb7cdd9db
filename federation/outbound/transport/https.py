"""Transactions over HTTPS: ``PUT /_matrix/federation/v1/send/{txnId}``, X-Matrix signed.

Spec: Server-Server API, "PUT /_matrix/federation/v1/send/{txnId}"
(https://spec.matrix.org/v1.11/server-server-api/#put_matrixfederationv1sendtxnid).
All interpretation of HTTP status codes lives here:

- 2xx with a JSON body: :class:`Delivered`, with the per-PDU errors of ``{"pdus": {id:
  {"error": ...}}}``.
- unreachable (no status), no answer within the timeout, a 2xx whose body is not JSON or
  is over SEND_RESPONSE_MAX_BYTES, 408, 429, 5xx, or anything the client raised unexpectedly: :class:`Retry`; a 429's ``retry_after_ms`` is passed on
  (spec: "Rate limiting", M_LIMIT_EXCEEDED).
- any other status (400, 401, 403, 404 M_UNRECOGNIZED ...): :class:`Refused`.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from federation.outbound.transport.base import (
    Delivered,
    DeliveryResult,
    Refused,
    Retry,
    Transaction,
)
from homeserver.services.ports import FederationClientPort, FederationRequestError

log = logging.getLogger(__name__)

SEND_PATH = "/_matrix/federation/v1/send/"
# The answer to a transaction is {"pdus": {event id: {"error": ...}}} for at most 50 PDUs:
# a peer sending more (garbage, or gigabytes) is cut off here and retried later.
SEND_RESPONSE_MAX_BYTES = 1024 * 1024


class HttpsTransport:
    """Implements ``Transport`` over the signed federation client."""

    def __init__(self, client: FederationClientPort, *, timeout: float = 60.0) -> None:
        self._client = client
        self._timeout = timeout

    async def deliver(self, txn: Transaction) -> DeliveryResult:
        path = SEND_PATH + urllib.parse.quote(txn.txn_id, safe="")
        try:
            response = await self._client.request(
                "PUT", txn.destination, path, body=txn.body(), timeout=self._timeout,
                max_bytes=SEND_RESPONSE_MAX_BYTES,
            )
        except FederationRequestError as e:
            return classify_error(e)
        except Exception as e:  # a bug or an unforeseen client error: try again later
            log.warning("PUT %s to %s failed", path, txn.destination, exc_info=True)
            return Retry(f"{type(e).__name__}: {e}")
        return Delivered(_pdu_errors(response))


def classify_error(e: FederationRequestError) -> Retry | Refused:
    """What a failed ``PUT /send`` means for the sender."""
    status = e.status
    if status == 0 or 200 <= status < 300 or status >= 500 or status in (408, 429):
        return Retry(str(e), _retry_after_ms(e.body) if status == 429 else None)
    return Refused(str(e))


def _retry_after_ms(body: Any) -> int | None:
    value = body.get("retry_after_ms") if isinstance(body, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _pdu_errors(response: Any) -> dict[str, str]:
    results = response.get("pdus") if isinstance(response, Mapping) else None
    if not isinstance(results, Mapping):
        return {}
    return {
        str(event_id): str(result["error"])
        for event_id, result in results.items()
        if isinstance(result, Mapping) and result.get("error")
    }
