"""Unpadded base64, ed25519 signing keys, and JSON signing (spec "Signing JSON")."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import attrs
import nacl.exceptions
import nacl.signing

from homeserver.core.canonical_json import encode_canonical_json
from homeserver.core.errors import SignatureError

ED25519 = "ed25519"


def encode_base64(data: bytes, urlsafe: bool = False) -> str:
    """Unpadded base64; standard alphabet unless ``urlsafe`` (event ids)."""
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.rstrip(b"=").decode("ascii")


def decode_base64(s: str) -> bytes:
    """Lenient decode: padded or not, standard or url-safe alphabet.

    Non-zero trailing bits are accepted (the spec's own test seed has them);
    always re-encode with :func:`encode_base64` to get the canonical form.
    Raises ValueError on anything that is not base64.
    """
    if not isinstance(s, str):
        raise ValueError("base64 value must be a string")
    s = s.rstrip("=").replace("-", "+").replace("_", "/")
    if len(s) % 4 == 1:
        raise ValueError("invalid base64 length")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"invalid base64: {e}") from e


def _nacl_key(key: SigningKey) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(key.seed)


@attrs.frozen
class SigningKey:
    """An ed25519 signing key: ``version`` is the part after ``ed25519:``."""

    version: str
    seed: bytes
    # Building the nacl key derives the public key; do it once per SigningKey.
    _nacl: nacl.signing.SigningKey = attrs.field(
        init=False,
        repr=False,
        eq=False,
        default=attrs.Factory(_nacl_key, takes_self=True),
    )

    @property
    def key_id(self) -> str:
        return f"{ED25519}:{self.version}"

    @property
    def verify_key_bytes(self) -> bytes:
        return self._nacl.verify_key.encode()

    @property
    def verify_key_base64(self) -> str:
        return encode_base64(self.verify_key_bytes)

    def sign(self, data: bytes) -> bytes:
        return self._nacl.sign(data).signature


def generate_signing_key(version: str) -> SigningKey:
    seed = nacl.signing.SigningKey.generate().encode()
    return SigningKey(version=version, seed=seed)


def parse_signing_key(text: str) -> SigningKey:
    """Parse Synapse's key file format: ``ed25519 <version> <base64 seed>``.

    Only the first non-empty line is used (Synapse files hold a single key).
    """
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] != ED25519:
            raise ValueError("signing key line must be 'ed25519 <version> <seed>'")
        seed = decode_base64(parts[2])
        if len(seed) != 32:
            raise ValueError("ed25519 seed must be 32 bytes")
        return SigningKey(version=parts[1], seed=seed)
    raise ValueError("no signing key found")


def format_signing_key(key: SigningKey) -> str:
    return f"{ED25519} {key.version} {encode_base64(key.seed)}\n"


def _signable_bytes(obj: dict[str, Any], strict: bool = True) -> bytes:
    return encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}, strict=strict,
    )


def sign_json(obj: dict[str, Any], signer: str, key: SigningKey, *, strict: bool = True) -> dict[str, Any]:
    """Return a copy of ``obj`` with ``signatures[signer][key_id]`` added.

    Existing signatures are kept; ``unsigned`` is neither signed nor changed.
    ``strict=False``: events of rooms of versions 1-5, which may hold floats.
    """
    signature = encode_base64(key.sign(_signable_bytes(obj, strict)))
    signatures = {s: dict(sigs) for s, sigs in (obj.get("signatures") or {}).items()}
    signatures.setdefault(signer, {})[key.key_id] = signature
    return {**obj, "signatures": signatures}


def signature_key_ids(obj: dict[str, Any], signer: str) -> list[str]:
    """The ed25519 key ids ``signer`` has signatures under (others are ignored)."""
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict):
        return []
    by_signer = sigs.get(signer)
    if not isinstance(by_signer, dict):
        return []
    return [k for k in by_signer if isinstance(k, str) and k.startswith(ED25519 + ":")]


def verify_json_signature(obj: dict[str, Any], signer: str, key_id: str, verify_key: bytes) -> None:
    """Check ``signatures[signer][key_id]`` over ``obj``; raise SignatureError if it fails."""
    sigs = obj.get("signatures")
    by_signer = sigs.get(signer) if isinstance(sigs, dict) else None
    if not isinstance(by_signer, dict) or key_id not in by_signer:
        raise SignatureError(f"Missing signature for {signer} {key_id}")
    try:
        signature = decode_base64(by_signer[key_id])
    except ValueError as e:
        raise SignatureError(f"Invalid signature encoding for {signer} {key_id}") from e
    try:
        # Not strict: what a peer signed is checked as it was encoded, floats and all (rooms
        # of versions 1-5 may hold them); whether such a value is acceptable is the
        # caller's check (validate_pdu refuses them from room version 6 on).
        message = _signable_bytes(obj, strict=False)
    except ValueError as e:
        raise SignatureError(f"Signed object is not canonical JSON: {e}") from e
    try:
        nacl.signing.VerifyKey(verify_key).verify(message, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
        raise SignatureError(f"Invalid signature for {signer} {key_id}") from e
