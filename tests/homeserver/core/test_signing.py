import pytest

from homeserver.core.canonical_json import encode_canonical_json
from homeserver.core.errors import SignatureError
from homeserver.core.signing import (
    SigningKey,
    decode_base64,
    encode_base64,
    format_signing_key,
    generate_signing_key,
    parse_signing_key,
    sign_json,
    signature_key_ids,
    verify_json_signature,
)

SEED_B64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SEED_HEX = "6090c103d5e7af6b15a970fd563ed75549e6159719ae5c3c31dee4316fb75c0d"
PUBLIC_KEY = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey("1", decode_base64(SEED_B64))


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
        (b"fooba", "Zm9vYmE"),
        (b"foobar", "Zm9vYmFy"),
    ],
)
def test_base64_vectors(raw, encoded):
    assert encode_base64(raw) == encoded
    assert decode_base64(encoded) == raw
    assert decode_base64(encoded + "=" * (-len(encoded) % 4)) == raw


def test_base64_urlsafe():
    data = bytes([0xFB, 0xFF, 0xBF])
    assert encode_base64(data) == "+/+/"
    assert encode_base64(data, urlsafe=True) == "-_-_"
    assert decode_base64("-_-_") == data == decode_base64("+/+/")


@pytest.mark.parametrize("bad", ["a", "Zm9v!", "Zm 9v", "abcde"])
def test_base64_rejects_garbage(bad):
    with pytest.raises(ValueError):
        decode_base64(bad)


def test_spec_seed_with_trailing_bits(key):
    assert key.seed.hex() == SEED_HEX
    # Canonical re-encoding drops the junk bits.
    assert encode_base64(key.seed) == SEED_B64[:-1] + "0"
    assert key.verify_key_base64 == PUBLIC_KEY
    assert key.key_id == "ed25519:1"
    assert len(key.verify_key_bytes) == 32


@pytest.mark.parametrize(
    ("obj", "sig"),
    [
        (
            {},
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ",
        ),
        (
            {"one": 1, "two": "Two"},
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw",
        ),
    ],
)
def test_json_signing_vectors(key, obj, sig):
    signed = sign_json(obj, "domain", key)
    assert signed == {**obj, "signatures": {"domain": {"ed25519:1": sig}}}
    assert obj.get("signatures") is None  # input untouched
    verify_json_signature(signed, "domain", "ed25519:1", key.verify_key_bytes)


def test_sign_json_merges_and_keeps_unsigned(key):
    obj = {"a": 1, "unsigned": {"age": 5}, "signatures": {"other": {"ed25519:x": "abc"}}}
    signed = sign_json(obj, "domain", key)
    assert signed["unsigned"] == {"age": 5}
    assert signed["signatures"]["other"] == {"ed25519:x": "abc"}
    assert obj["signatures"] == {"other": {"ed25519:x": "abc"}}
    # Signature covers neither unsigned nor other signatures.
    changed = {**signed, "unsigned": {"age": 99}}
    verify_json_signature(changed, "domain", "ed25519:1", key.verify_key_bytes)
    assert signature_key_ids(signed, "domain") == ["ed25519:1"]
    assert signature_key_ids(signed, "other") == ["ed25519:x"]
    assert signature_key_ids(signed, "nobody") == []


def test_signature_key_ids_ignores_unknown_algorithms():
    obj = {"signatures": {"s": {"curve25519:a": "x", "ed25519:b": "y"}}}
    assert signature_key_ids(obj, "s") == ["ed25519:b"]


def test_verify_failures(key):
    signed = sign_json({"a": 1}, "domain", key)
    other = generate_signing_key("2")
    with pytest.raises(SignatureError):
        verify_json_signature({**signed, "a": 2}, "domain", "ed25519:1", key.verify_key_bytes)
    with pytest.raises(SignatureError):
        verify_json_signature(signed, "domain", "ed25519:1", other.verify_key_bytes)
    with pytest.raises(SignatureError):
        verify_json_signature(signed, "elsewhere", "ed25519:1", key.verify_key_bytes)
    with pytest.raises(SignatureError):
        verify_json_signature(signed, "domain", "ed25519:2", key.verify_key_bytes)
    bad = {**signed, "signatures": {"domain": {"ed25519:1": "!!"}}}
    with pytest.raises(SignatureError):
        verify_json_signature(bad, "domain", "ed25519:1", key.verify_key_bytes)
    with pytest.raises(SignatureError):
        verify_json_signature(signed, "domain", "ed25519:1", b"short")


def test_key_file_round_trip(key):
    text = format_signing_key(key)
    assert text == f"ed25519 1 {SEED_B64[:-1]}0\n"
    assert parse_signing_key(text) == key
    assert parse_signing_key(f"\ned25519 a_ZxY {SEED_B64}\n").key_id == "ed25519:a_ZxY"
    fresh = generate_signing_key("abc")
    assert parse_signing_key(format_signing_key(fresh)) == fresh
    assert fresh.sign(b"x") != key.sign(b"x")


@pytest.mark.parametrize("bad", ["", "ed25519 1", "curve 1 abc", "ed25519 1 Zm9v"])
def test_key_file_rejects(bad):
    with pytest.raises(ValueError):
        parse_signing_key(bad)


def test_server_key_vector(key):
    response = {
        "old_verify_keys": {},
        "server_name": "domain",
        "valid_until_ts": 1700000000000,
        "verify_keys": {"ed25519:1": {"key": key.verify_key_base64}},
    }
    assert encode_canonical_json(response) == (
        b'{"old_verify_keys":{},"server_name":"domain","valid_until_ts":1700000000000,'
        b'"verify_keys":{"ed25519:1":{"key":"XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"}}}'
    )
    assert sign_json(response, "domain", key)["signatures"]["domain"]["ed25519:1"] == (
        "ewq/uPhfAzmWSa/3PRlr5Q0W59jG75Wtb6mzxIELuVRAxYMHOeMFue6fNXijZkIwLLembQ0+gl7DIkiUGcoUBg"
    )


def test_x_matrix_request_vectors(key):
    get = {
        "destination": "remote.example",
        "method": "GET",
        "origin": "domain",
        "uri": "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aremote.example&field=displayname",
    }
    assert sign_json(get, "domain", key)["signatures"]["domain"]["ed25519:1"] == (
        "or3jFTAcrMVk75mEwA8TkB2plYoaWONxNMyAKTPKTWJAXNGYLCqdlKrMV7PWTFSG9igGfVH4c2ELIDW8cyzaDg"
    )
    put = {
        "content": {
            "edus": [
                {
                    "content": {"room_id": "!r:domain", "typing": True, "user_id": "@a:domain"},
                    "edu_type": "m.typing",
                }
            ],
            "origin": "domain",
            "origin_server_ts": 1700000000000,
            "pdus": [],
        },
        "destination": "remote.example",
        "method": "PUT",
        "origin": "domain",
        "uri": "/_matrix/federation/v1/send/1700000000000",
    }
    assert sign_json(put, "domain", key)["signatures"]["domain"]["ed25519:1"] == (
        "K93JSbl+R3KA3k//N8BdoSsvcyeaC/jV/rCVe6D0ZrbTmTt4FNHTT1s4x5ciSzyIn8QyPBA+OrJRG++g/N/CAQ"
    )
