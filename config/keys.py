"""Create the server's secret files on first run; never touch them afterwards.

Why here: the config names these paths, and ``generate-config`` and the first
``run`` both need them to exist. Parsing the signing key is the core's job
(``homeserver.core.signing.parse_signing_key``); this module only writes the format.
"""

from __future__ import annotations

import base64
import os
import secrets
import string

import nacl.signing

from config.errors import ConfigError
from homeserver.core.signing import SigningKey, parse_signing_key

TOKEN_SECRET_BYTES = 32
_VERSION_ALPHABET = string.ascii_letters + string.digits


def ensure_signing_key(path: str) -> str:
    """Return the text of the signing key file at ``path``, creating it if absent.

    A new file holds one line in Synapse's format: ``ed25519 a_AbC1 <base64 seed>``
    (the 32-byte seed in standard base64 without padding).
    """
    if not os.path.exists(path):
        seed = bytes(nacl.signing.SigningKey.generate())
        version = "a_" + "".join(secrets.choice(_VERSION_ALPHABET) for _ in range(4))
        encoded = base64.b64encode(seed).decode("ascii").rstrip("=")
        _create_private_file(path, f"ed25519 {version} {encoded}\n")
    return _read_text(path)


def load_signing_key(path: str) -> SigningKey:
    """The signing key at ``path`` (created if absent); ``ConfigError`` naming the file if unusable."""
    try:
        return parse_signing_key(ensure_signing_key(path))
    except ValueError as exc:
        raise ConfigError(f"not a signing key file: {exc}", file=path) from None


def ensure_token_secret(path: str) -> bytes:
    """Return the token-signing secret stored hex at ``path``, creating 32 random bytes if absent."""
    if not os.path.exists(path):
        _create_private_file(path, os.urandom(TOKEN_SECRET_BYTES).hex() + "\n")
    text = _read_text(path).strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ConfigError("token secret file must hold hex digits", file=path) from None
    if len(secret) < TOKEN_SECRET_BYTES:
        raise ConfigError(
            f"token secret is {len(secret)} bytes; at least {TOKEN_SECRET_BYTES} are required",
            file=path,
        )
    return secret


def _create_private_file(path: str, text: str) -> None:
    """Write ``text`` to a new 0600 file without ever exposing a partial or replaced one.

    Written to a temporary name and hard-linked into place: if another process
    (a second worker starting at the same moment) won the race, its key is kept.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create secret file: {exc.strerror}", file=path) from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # someone else created it first: theirs is the key
    finally:
        os.unlink(tmp)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise ConfigError(f"cannot read secret file: {reason}", file=path) from None
