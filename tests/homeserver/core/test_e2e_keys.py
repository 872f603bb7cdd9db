"""Pure checks on end-to-end encryption keys and the key-backup replacement rule."""

from __future__ import annotations

import pytest

from homeserver.core.e2e_keys import better_backup_key, check_device_keys
from homeserver.core.errors import MatrixError
from homeserver.core.signing import generate_signing_key, sign_json


def backup(verified: bool, first: int, forwarded: int) -> dict:
    return {"is_verified": verified, "first_message_index": first, "forwarded_count": forwarded,
            "session_data": {}}


@pytest.mark.parametrize(("new", "old", "replaces"), [
    (backup(False, 0, 0), None, True),
    (backup(True, 9, 9), backup(False, 0, 0), True),    # verified beats unverified
    (backup(False, 0, 0), backup(True, 9, 9), False),
    (backup(False, 3, 9), backup(False, 4, 0), True),   # lower first_message_index
    (backup(False, 4, 0), backup(False, 3, 9), False),
    (backup(False, 3, 1), backup(False, 3, 2), True),   # then fewer forwards
    (backup(False, 3, 2), backup(False, 3, 2), False),  # the same: keep what is held
])
def test_backup_replacement_rule(new: dict, old: dict | None, replaces: bool) -> None:
    assert better_backup_key(new, old) is replaces


def _keys(user: str, device: str) -> tuple[dict, object]:
    key = generate_signing_key(device)
    unsigned = {"user_id": user, "device_id": device, "algorithms": ["m.megolm.v1.aes-sha2"],
                "keys": {f"ed25519:{device}": key.verify_key_base64}}
    return sign_json(unsigned, user, key), key


def test_self_signed_device_keys_pass() -> None:
    keys, _ = _keys("@a:hs", "DEV")
    assert check_device_keys(keys, "@a:hs", "DEV") == keys


@pytest.mark.parametrize(("mutate", "errcode"), [
    (lambda k: {**k, "device_id": "OTHER"}, "M_INVALID_PARAM"),
    (lambda k: {**k, "user_id": "@b:hs"}, "M_INVALID_PARAM"),
    (lambda k: {**k, "algorithms": "m.megolm.v1.aes-sha2"}, "M_BAD_JSON"),
    (lambda k: {**k, "keys": {**k["keys"], "curve25519:DEV": "added"}}, "M_INVALID_SIGNATURE"),
    (lambda k: {k2: v for k2, v in k.items() if k2 != "signatures"}, "M_BAD_JSON"),
    (lambda k: {**k, "keys": {"curve25519:DEV": "x"}}, "M_BAD_JSON"),
])
def test_bad_device_keys_are_refused(mutate, errcode: str) -> None:
    keys, _ = _keys("@a:hs", "DEV")
    with pytest.raises(MatrixError) as e:
        check_device_keys(mutate(keys), "@a:hs", "DEV")
    assert e.value.errcode == errcode
