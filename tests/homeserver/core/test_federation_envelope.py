"""The signed envelope a transaction travels in over AMQP (issue 9)."""

from __future__ import annotations

import json

import pytest

from homeserver.core.federation_envelope import (
    ADVERTISEMENT_FIELD,
    PoisonMessage,
    decode_envelope,
    drop_stale_typing,
    encode_envelope,
    parse_advertisement,
)
from homeserver.core.signing import generate_signing_key, verify_json_signature

KEY = generate_signing_key("a1")
BODY = {"origin": "hs1.test", "origin_server_ts": 1000, "pdus": [], "edus": [{"edu_type": "m.x"}]}


def test_envelope_is_signed_over_origin_destination_txn_id_and_body() -> None:
    raw = encode_envelope("hs1.test", "hs2.test", "t1", BODY, KEY)
    env = decode_envelope(raw, "hs2.test", 10_000)
    assert (env.origin, env.destination, env.txn_id, env.body) == ("hs1.test", "hs2.test", "t1", BODY)
    verify_json_signature(env.signed, "hs1.test", KEY.key_id, KEY.verify_key_bytes)
    for field, value in (("destination", "hs3.test"), ("txn_id", "t2"), ("txn", {**BODY, "pdus": [{}]})):
        tampered = {**env.signed, field: value}
        with pytest.raises(Exception, match="ignature"):
            verify_json_signature(tampered, "hs1.test", KEY.key_id, KEY.verify_key_bytes)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"x" * 2000, "oversized"),
        (b"not json", "malformed"),
        (b"[]", "malformed"),
        (json.dumps({"origin": "hs1.test", "destination": "hs2.test", "txn_id": "t", "txn": {}}).encode(), "unsigned"),
        (json.dumps({"origin": "", "destination": "hs2.test", "txn_id": "t", "txn": {}}).encode(), "malformed: origin"),
    ],
)
def test_poison_reasons(raw: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage) as err:
        decode_envelope(raw, "hs2.test", 1000)
    assert err.value.reason.startswith(reason)


def test_a_message_for_another_server_is_refused() -> None:
    raw = encode_envelope("hs1.test", "hs3.test", "t1", BODY, KEY)
    with pytest.raises(PoisonMessage, match=r"wrong destination: hs3\.test"):
        decode_envelope(raw, "hs2.test", 10_000)


def test_stale_typing_is_dropped_other_edus_kept() -> None:
    body = {**BODY, "edus": [{"edu_type": "m.typing"}, {"edu_type": "m.receipt"}]}
    assert drop_stale_typing(body, 1000 + 5_000) == body
    assert drop_stale_typing(body, 1000 + 60_000)["edus"] == [{"edu_type": "m.receipt"}]


def test_advertisement() -> None:
    good = {ADVERTISEMENT_FIELD: {"uri": "amqp://h:5672/%2F", "exchange": "tricolor.fed.in"}}
    assert parse_advertisement(good) == ("amqp://h:5672/%2F", "tricolor.fed.in")
    assert parse_advertisement({}) is None
    assert parse_advertisement(None) is None
    assert parse_advertisement({ADVERTISEMENT_FIELD: {"uri": "http://x", "exchange": "e"}}) is None
