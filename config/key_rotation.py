"""Signing-key rotation: the old public keys stay published as old_verify_keys.

Beside `signing.key` lives `signing.key.old`, one line per retired key:
`ed25519 <version> <unpadded base64 public key> <expired_ts>`. Events signed
with a retired key stay verifiable; requests must use the current key.
"""

from __future__ import annotations

import os
import secrets
import string
import time

from homeserver.core.signing import format_signing_key, generate_signing_key, parse_signing_key


def old_keys_path(signing_key_path: str) -> str:
    return signing_key_path + ".old"


def load_old_keys(signing_key_path: str) -> dict[str, tuple[str, int]]:
    """key id -> (public key, expired_ts) for every retired key."""
    path = old_keys_path(signing_key_path)
    if not os.path.exists(path):
        return {}
    out: dict[str, tuple[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "ed25519":
                out[f"ed25519:{parts[1]}"] = (parts[2], int(parts[3]))
    return out


def rotate_signing_key(signing_key_path: str) -> tuple[str, str]:
    """Retire the current key (kept as an old verify key) and write a new one.

    Returns (old key id, new key id). The new file is written before the old
    one is replaced, so a crash leaves one of the two complete.
    """
    with open(signing_key_path, encoding="utf-8") as f:
        old = parse_signing_key(f.read())
    now = int(time.time() * 1000)
    with open(old_keys_path(signing_key_path), "a", encoding="utf-8") as f:
        f.write(f"ed25519 {old.version} {old.verify_key_base64} {now}\n")
    version = "a_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(4))
    new = generate_signing_key(version)
    tmp = signing_key_path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(format_signing_key(new) + "\n")
    os.replace(tmp, signing_key_path)
    return old.key_id, new.key_id
