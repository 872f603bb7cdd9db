import copy

import pytest

from homeserver.core.canonical_json import encode_canonical_json
from homeserver.core.errors import MatrixError
from homeserver.core.events import (
    MAX_PDU_BYTES,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    event_from_pdu,
    hash_and_sign_pdu,
    validate_pdu,
)
from homeserver.core.redaction import redact_pdu
from homeserver.core.room_versions import V10, V11
from homeserver.core.signing import SigningKey, decode_base64, verify_json_signature

KEY = SigningKey("1", decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"))

MINIMAL = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
MINIMAL_HASH = "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"

REDACTABLE = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
REDACTABLE_HASH = "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"

MEMBER = {
    "auth_events": ["$create", "$pl", "$jr"],
    "prev_events": ["$prev"],
    "depth": 5,
    "content": {"membership": "join", "displayname": "Alice"},
    "origin_server_ts": 1700000000000,
    "room_id": "!r:domain",
    "sender": "@alice:domain",
    "state_key": "@alice:domain",
    "type": "m.room.member",
    "unsigned": {"age": 5},
}


def test_minimal_event_content_hash():
    assert compute_content_hash(MINIMAL) == MINIMAL_HASH


def test_minimal_event_signed_v10():
    before = copy.deepcopy(MINIMAL)
    signed = hash_and_sign_pdu(V10, MINIMAL, "domain", KEY)
    assert MINIMAL == before  # input untouched
    assert signed["hashes"] == {"sha256": MINIMAL_HASH}
    assert signed["signatures"] == {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    }
    assert signed["unsigned"] == {"age_ts": 1000000}
    redacted = redact_pdu(V10, signed)
    assert encode_canonical_json({k: v for k, v in redacted.items() if k != "signatures"}) == (
        b'{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"'
        + MINIMAL_HASH.encode()
        + b'"},"origin":"domain","origin_server_ts":1000000,"prev_events":[],'
        b'"room_id":"!x:domain","sender":"@a:domain","type":"X"}'
    )
    verify_json_signature(redacted, "domain", "ed25519:1", KEY.verify_key_bytes)
    assert check_content_hash(signed)
    assert compute_event_id(V10, signed) == "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"


def test_minimal_event_signed_v11():
    signed = hash_and_sign_pdu("11", MINIMAL, "domain", KEY)
    assert signed["hashes"] == {"sha256": MINIMAL_HASH}
    assert signed["signatures"]["domain"]["ed25519:1"] == (
        "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIzUqrjqFquWJKBw"
    )
    assert compute_event_id(V11, signed) == "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I"


def test_redactable_event_vectors():
    assert compute_content_hash(REDACTABLE) == REDACTABLE_HASH
    v10 = hash_and_sign_pdu(V10, REDACTABLE, "domain", KEY)
    assert v10["hashes"] == {"sha256": REDACTABLE_HASH}
    assert v10["content"] == REDACTABLE["content"]
    assert v10["signatures"]["domain"]["ed25519:1"] == (
        "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
    )
    signed_bytes = encode_canonical_json(
        {k: v for k, v in redact_pdu(V10, v10).items() if k != "signatures"}
    )
    assert signed_bytes == (
        b'{"content":{},"event_id":"$0:domain","hashes":{"sha256":"'
        + REDACTABLE_HASH.encode()
        + b'"},"origin":"domain","origin_server_ts":1000000,"room_id":"!r:domain",'
        b'"sender":"@u:domain","type":"m.room.message"}'
    )
    v11 = hash_and_sign_pdu(V11, REDACTABLE, "domain", KEY)
    assert v11["signatures"]["domain"]["ed25519:1"] == (
        "4WQB/6LN2OtkUN/+18xUNB/U4RTX1N3EeKBdlCxux08YO8izKDrSRqML1XB8V97IK7AujkNO1xMl7TaBLA4kDw"
    )


@pytest.mark.parametrize("version", ["10", "11"])
def test_membership_event_vector(version):
    signed = hash_and_sign_pdu(version, MEMBER, "domain", KEY)
    assert signed["hashes"] == {"sha256": "KBF/zFcVvbHH2KUFxgyn9iTuv2pd5nNtqO94+pz98aI"}
    assert signed["signatures"]["domain"]["ed25519:1"] == (
        "5k92Tx32v8auR4CGIPHkwRkO80/R6LrqXxv+XBQ9Yoy8K3uL1efArBI0RkX7q9Z/gBLiHR78UNnzD3JzUPrcDw"
    )
    reference = {k: v for k, v in redact_pdu(version, signed).items() if k != "signatures"}
    assert encode_canonical_json(reference) == (
        b'{"auth_events":["$create","$pl","$jr"],"content":{"membership":"join"},"depth":5,'
        b'"hashes":{"sha256":"KBF/zFcVvbHH2KUFxgyn9iTuv2pd5nNtqO94+pz98aI"},'
        b'"origin_server_ts":1700000000000,"prev_events":["$prev"],"room_id":"!r:domain",'
        b'"sender":"@alice:domain","state_key":"@alice:domain","type":"m.room.member"}'
    )
    event = event_from_pdu(version, signed)
    assert event.event_id == "$F_kDvIDCGxG41oGf2NXOwN6Z70NSqeEtSJ3aADvyOn8"
    assert event.room_version == version
    assert event.pdu is signed
    assert event.membership == "join"


def test_event_id_ignores_signatures_and_unsigned_but_not_content():
    signed = hash_and_sign_pdu(V10, MEMBER, "domain", KEY)
    event_id = compute_event_id(V10, signed)
    extra = {**signed, "unsigned": {"age": 1}, "signatures": {**signed["signatures"], "x": {}}}
    assert compute_event_id(V10, extra) == event_id
    changed = hash_and_sign_pdu(V10, {**MEMBER, "content": {"membership": "leave"}}, "domain", KEY)
    assert compute_event_id(V10, changed) != event_id


def test_content_hash_check():
    signed = hash_and_sign_pdu(V10, MEMBER, "domain", KEY)
    assert check_content_hash(signed)
    tampered = {**signed, "content": {"membership": "join", "displayname": "Mallory"}}
    assert not check_content_hash(tampered)
    # A redacted copy keeps the signature valid but not the content hash.
    redacted = redact_pdu(V10, signed)
    verify_json_signature(redacted, "domain", "ed25519:1", KEY.verify_key_bytes)
    assert not check_content_hash(redacted)
    assert not check_content_hash({k: v for k, v in signed.items() if k != "hashes"})
    assert not check_content_hash({**signed, "hashes": {"sha256": "!!"}})


def test_unknown_room_version_refused():
    with pytest.raises(MatrixError) as e:
        event_from_pdu("13", MEMBER)
    assert e.value.errcode == "M_UNSUPPORTED_ROOM_VERSION"


# --- validate_pdu -----------------------------------------------------------


def _valid_pdu() -> dict:
    return hash_and_sign_pdu(V10, {**MEMBER, "hashes": {}, "signatures": {}}, "domain", KEY)


def test_valid_pdu_passes():
    validate_pdu(V10, _valid_pdu())
    validate_pdu(V11, _valid_pdu())


def _mutations():
    long = "x" * 256
    return [
        ("not a dict", None),
        ("missing room_id", lambda p: p.pop("room_id")),
        ("type not str", lambda p: p.update(type=1)),
        ("type too long", lambda p: p.update(type=long)),
        ("state_key too long", lambda p: p.update(state_key=long)),
        ("state_key not str", lambda p: p.update(state_key=None)),
        ("sender too long", lambda p: p.update(sender="@" + long + ":domain")),
        ("sender not user", lambda p: p.update(sender="alice")),
        ("room_id not room", lambda p: p.update(room_id="#a:domain")),
        ("content not dict", lambda p: p.update(content=[])),
        ("depth float", lambda p: p.update(depth=1.0)),
        ("depth bool", lambda p: p.update(depth=True)),
        ("depth negative", lambda p: p.update(depth=-1)),
        ("depth too big", lambda p: p.update(depth=2**53)),
        ("ts missing", lambda p: p.pop("origin_server_ts")),
        ("prev_events too many", lambda p: p.update(prev_events=[f"$e{i}" for i in range(21)])),
        ("auth_events too many", lambda p: p.update(auth_events=[f"$e{i}" for i in range(11)])),
        ("auth_events not list", lambda p: p.update(auth_events="$a")),
        ("prev_events bad entry", lambda p: p.update(prev_events=[["$a", {}]])),
        ("hashes missing", lambda p: p.pop("hashes")),
        ("signatures bad", lambda p: p.update(signatures={"domain": "sig"})),
        ("float in content", lambda p: p["content"].update(x=1.5)),
        ("big int in content", lambda p: p["content"].update(x=2**53)),
        ("unsigned not dict", lambda p: p.update(unsigned=[])),
        ("redacts not str", lambda p: p.update(redacts=5)),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_invalid_pdus(name, mutate):
    pdu = copy.deepcopy(_valid_pdu())
    if mutate is None:
        pdu = "not a dict"
    else:
        mutate(pdu)
    with pytest.raises(MatrixError) as e:
        validate_pdu(V10, pdu)
    assert (e.value.status, e.value.errcode) == (400, "M_BAD_JSON")


def test_list_limits_can_be_lifted_for_backfill():
    pdu = {**_valid_pdu(), "prev_events": [f"$e{i}" for i in range(25)]}
    validate_pdu(V10, pdu, enforce_list_limits=False)


def test_v11_content_redacts_must_be_string():
    pdu = {**_valid_pdu(), "type": "m.room.redaction", "content": {"redacts": 1}}
    pdu.pop("state_key")
    validate_pdu(V10, pdu)  # v10 ignores content.redacts
    with pytest.raises(MatrixError):
        validate_pdu(V11, pdu)


def test_size_limit():
    pdu = _valid_pdu()
    base = len(encode_canonical_json(pdu))
    # Pad the content so the canonical size is exactly at the limit, then one over.
    pdu["content"]["pad"] = ""
    pad = MAX_PDU_BYTES - base - len(',"pad":""')
    pdu["content"]["pad"] = "a" * pad
    assert len(encode_canonical_json(pdu)) == MAX_PDU_BYTES
    validate_pdu(V10, pdu)
    pdu["content"]["pad"] += "a"
    with pytest.raises(MatrixError) as e:
        validate_pdu(V10, pdu)
    assert (e.value.status, e.value.errcode) == (413, "M_TOO_LARGE")
