"""Transactions as broker messages: one signed envelope per transaction (issue 9).

Over HTTPS the X-Matrix header authenticates a transaction and binds it to its destination
(spec: Server-Server API, "Request Authentication"). A shovelled message has no request, so
the envelope carries the same facts and is signed as a whole with the origin's ed25519 key
(Appendix "Signing JSON"): origin, destination, txn id and the Transaction body. A message
copied into another server's queue fails the destination check; one altered in flight fails
the signature.

Pure: bytes in, records out; signature *verification* needs the origin's keys and happens in
the consumer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from homeserver.core.canonical_json import encode_canonical_json, parse_federation_json
from homeserver.core.ids import is_valid_server_name
from homeserver.core.signing import SigningKey, sign_json, signature_key_ids

# The field of our signed key response (GET /_matrix/key/v2/server) that advertises where
# peers' shovels deliver to us. Namespaced: other servers ignore fields they do not know.
ADVERTISEMENT_FIELD = "org.tricolor.amqp"
TYPING_EDU = "m.typing"
# Typing notices time out after 30 s on the client side (spec: "Typing Notifications"); one
# that waited longer than that in a queue says nothing true any more.
STALE_TYPING_MS = 30_000


class PoisonMessage(Exception):
    """A message that can never be processed; ``reason`` goes into the dead-letter header."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class Envelope:
    origin: str
    destination: str
    txn_id: str
    body: dict[str, Any]  # the spec's Transaction object
    signed: dict[str, Any]  # the whole signed envelope, for verification


def out_queue(destination: str) -> str:
    """Our durable queue for one destination (also the shovel's source)."""
    return f"tricolor.fed.out.{destination}"


def shovel_name(destination: str) -> str:
    return f"tricolor-fed-{destination}"


def encode_envelope(
    origin: str,
    destination: str,
    txn_id: str,
    body: Mapping[str, Any],
    key: SigningKey,
) -> bytes:
    """The signed envelope as canonical JSON bytes (serialised once, published as is)."""
    envelope = {"origin": origin, "destination": destination, "txn_id": txn_id, "txn": dict(body)}
    # Not strict: PDUs of rooms v1-5 we pass on may hold floats (see parse_federation_json).
    return encode_canonical_json(sign_json(envelope, origin, key, strict=False), strict=False)


def decode_envelope(raw: bytes, server_name: str, max_bytes: int) -> Envelope:
    """Check everything that needs no keys; raise PoisonMessage with the reason otherwise."""
    if len(raw) > max_bytes:
        raise PoisonMessage(f"oversized: {len(raw)} bytes > {max_bytes}")
    try:
        obj = parse_federation_json(raw)
    except Exception:
        raise PoisonMessage("malformed: not JSON") from None
    if not isinstance(obj, dict):
        raise PoisonMessage("malformed: not an object")
    origin, destination, txn_id, body = (
        obj.get("origin"),
        obj.get("destination"),
        obj.get("txn_id"),
        obj.get("txn"),
    )
    if not isinstance(origin, str) or not is_valid_server_name(origin):
        raise PoisonMessage("malformed: origin")
    if not isinstance(destination, str) or not isinstance(txn_id, str) or not txn_id:
        raise PoisonMessage("malformed: destination or txn_id")
    if not isinstance(body, dict):
        raise PoisonMessage("malformed: txn")
    if body.get("origin", origin) != origin:
        raise PoisonMessage("malformed: txn origin differs from envelope origin")
    if not signature_key_ids(obj, origin):
        raise PoisonMessage("unsigned")
    if destination != server_name:
        raise PoisonMessage(f"wrong destination: {destination}")
    if origin == server_name:
        raise PoisonMessage("origin is this server")
    return Envelope(origin, destination, txn_id, body, obj)


def drop_stale_typing(body: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The Transaction without typing EDUs older than STALE_TYPING_MS (issue 9: a queue may
    hold a transaction for minutes; replaying "is typing" then would be a lie)."""
    ts = body.get("origin_server_ts")
    edus = body.get("edus")
    if not isinstance(ts, int) or not isinstance(edus, list) or now_ms - ts <= STALE_TYPING_MS:
        return body
    kept = [e for e in edus if not (isinstance(e, dict) and e.get("edu_type") == TYPING_EDU)]
    return body if len(kept) == len(edus) else {**body, "edus": kept}


def parse_advertisement(key_response: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(broker URI, exchange) from a peer's signed key response, or None."""
    if key_response is None:
        return None
    ad = key_response.get(ADVERTISEMENT_FIELD)
    if not isinstance(ad, dict):
        return None
    uri, exchange = ad.get("uri"), ad.get("exchange")
    if not isinstance(uri, str) or not uri.startswith(("amqp://", "amqps://")):
        return None
    if not isinstance(exchange, str) or not exchange:
        return None
    return uri, exchange
