from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import nacl.signing
import pytest

from config.keys import ensure_signing_key, ensure_token_secret
from config.loader import ConfigError

KEY_LINE = re.compile(r"^ed25519 (a_[A-Za-z0-9]{4}) ([A-Za-z0-9+/]{43})\n$")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def seed_of(text: str) -> bytes:
    match = KEY_LINE.match(text)
    assert match, text
    return base64.b64decode(match.group(2) + "=")


def test_signing_key_is_created_in_synapse_format(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "signing.key"
    text = ensure_signing_key(str(path))
    assert path.read_text() == text
    seed = seed_of(text)
    assert len(seed) == 32
    nacl.signing.SigningKey(seed)  # a usable ed25519 seed
    assert _mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["signing.key"]  # no temp files left


def test_signing_key_is_kept_once_created(tmp_path: Path) -> None:
    path = str(tmp_path / "signing.key")
    first = ensure_signing_key(path)
    assert ensure_signing_key(path) == first


def test_existing_signing_key_is_returned_untouched(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    path.write_text("ed25519 a_old1 AAAA\n")
    assert ensure_signing_key(str(path)) == "ed25519 a_old1 AAAA\n"


def test_two_keys_differ(tmp_path: Path) -> None:
    a = ensure_signing_key(str(tmp_path / "a.key"))
    b = ensure_signing_key(str(tmp_path / "b.key"))
    assert seed_of(a) != seed_of(b)


def test_token_secret_is_created_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "d" / "token.secret"
    secret = ensure_token_secret(str(path))
    assert len(secret) == 32
    assert path.read_text().strip() == secret.hex()
    assert _mode(path) == 0o600
    assert ensure_token_secret(str(path)) == secret


@pytest.mark.parametrize("content", ["not hex\n", "abcd\n"])
def test_bad_token_secret_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token.secret"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        ensure_token_secret(str(path))
    assert err.value.file == str(path)
