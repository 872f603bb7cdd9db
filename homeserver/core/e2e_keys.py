"""Checks on end-to-end encryption key objects, pure: the server stores and routes
keys, so it only checks what routing and other users' trust rely on.

Spec: client-server API, "End-to-End Encryption" > "Key management API".
"""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError, SignatureError, bad_json
from homeserver.core.signing import decode_base64, verify_json_signature

CROSS_SIGNING_TYPES = ("master", "self_signing", "user_signing")


def invalid_signature(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_SIGNATURE", msg)


def check_device_keys(keys: Any, user_id: str, device_id: str) -> dict[str, Any]:
    """`device_keys` of /keys/upload: for the requester's own device, with an ed25519
    key `ed25519:{device_id}` that signs the object (a device's keys are self-signed)."""
    if not isinstance(keys, dict):
        raise bad_json("device_keys must be an object")
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        raise MatrixError(400, "M_INVALID_PARAM", "device_keys must be for the requesting user and device")
    algorithms, key_map = keys.get("algorithms"), keys.get("keys")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise bad_json("device_keys.algorithms must be a list of strings")
    if not isinstance(key_map, dict) or not all(isinstance(v, str) for v in key_map.values()):
        raise bad_json("device_keys.keys must map key ids to strings")
    if not isinstance(keys.get("signatures"), dict):
        raise bad_json("device_keys.signatures must be an object")
    check_self_signed(keys, user_id, f"ed25519:{device_id}", key_map.get(f"ed25519:{device_id}"))
    return keys


def check_self_signed(obj: dict[str, Any], user_id: str, key_id: str, public_key: Any) -> None:
    if not isinstance(public_key, str):
        raise bad_json(f"Missing key {key_id}")
    try:
        verify_json_signature(obj, user_id, key_id, decode_base64(public_key))
    except (SignatureError, ValueError) as e:
        raise invalid_signature(f"Keys are not signed by {key_id}") from e


def parse_key_map(raw: Any, field: str) -> list[tuple[str, str, Any]]:
    """`one_time_keys`/`fallback_keys`: ``{"<algorithm>:<key_id>": key}`` ->
    (algorithm, key id, key). A key is a string or a signed object."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise bad_json(f"{field} must be an object")
    out = []
    for name, key in raw.items():
        algorithm, sep, key_id = name.partition(":")
        if not sep or not algorithm or not key_id or len(algorithm) > 64 or len(key_id) > 128:
            raise bad_json(f"{field}: key names are <algorithm>:<key_id>")
        if not isinstance(key, str | dict):
            raise bad_json(f"{field}: a key is a string or an object")
        out.append((algorithm, key_id, key))
    return out


def check_cross_signing_key(key: Any, user_id: str, usage: str) -> dict[str, Any]:
    """A cross-signing key object: the user's, for `usage`, with exactly one public key."""
    if not isinstance(key, dict):
        raise bad_json(f"{usage} key must be an object")
    if key.get("user_id") != user_id:
        raise MatrixError(400, "M_INVALID_PARAM", f"{usage} key must belong to the requesting user")
    usages, key_map = key.get("usage"), key.get("keys")
    if not isinstance(usages, list) or usage not in usages:
        raise bad_json(f"{usage} key must have usage {usage}")
    if not isinstance(key_map, dict) or len(key_map) != 1 or not all(isinstance(v, str) for v in key_map.values()):
        raise bad_json(f"{usage} key must have exactly one public key")
    return key


def public_key(key: dict[str, Any]) -> tuple[str, str]:
    """(key id, public key) of a cross-signing key checked above."""
    ((key_id, value),) = key["keys"].items()
    return key_id, value


def merge_signatures(target: dict[str, Any], signed: dict[str, Any]) -> dict[str, Any]:
    """`target` with the signatures of `signed` added (spec: /keys/signatures/upload)."""
    sigs = {s: dict(v) for s, v in (target.get("signatures") or {}).items()}
    for signer, by_key in (signed.get("signatures") or {}).items():
        if isinstance(by_key, dict):
            sigs.setdefault(signer, {}).update({k: v for k, v in by_key.items() if isinstance(v, str)})
    return {**target, "signatures": sigs}


def same_signed_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("signatures", "unsigned")
    return {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}


def better_backup_key(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether an uploaded backup key replaces the stored one (spec "Server-side key
    backups"): a verified key beats an unverified one; then the lower first_message_index
    (it decrypts more); then the lower forwarded_count (fewer hops)."""
    if old is None:
        return True

    def rank(k: dict[str, Any]) -> tuple[bool, int, int]:
        return (not k["is_verified"], k["first_message_index"], k["forwarded_count"])

    return rank(new) < rank(old)


def check_backup_key(key: Any) -> dict[str, Any]:
    """KeyBackupData: first_message_index, forwarded_count, is_verified, session_data."""
    if not isinstance(key, dict):
        raise bad_json("a backed-up key must be an object")
    for name in ("first_message_index", "forwarded_count"):
        if not isinstance(key.get(name), int) or isinstance(key.get(name), bool) or key[name] < 0:
            raise bad_json(f"{name} must be a non-negative integer")
    if not isinstance(key.get("is_verified"), bool):
        raise bad_json("is_verified must be a boolean")
    if not isinstance(key.get("session_data"), dict):
        raise bad_json("session_data must be an object")
    return key
