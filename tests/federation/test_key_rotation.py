"""`rotate-key`: the server signs with a new key, and keeps publishing the old one under
old_verify_keys so events signed before the rotation still verify."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from config.loader import load_config
from config.schema import HomeserverConfig
from homeserver.app import create_app
from homeserver.core.signing import (
    SigningKey,
    decode_base64,
    parse_signing_key,
    verify_json_signature,
)

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homeserver", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)


def rotated_server(tmp_path: Path) -> tuple[HomeserverConfig, SigningKey, SigningKey]:
    """A generated server whose key was rotated once: (config, old key, new key)."""
    cfg_path = tmp_path / "hs.yaml"
    cli("generate-config", "--server-name", "rot.test", "--port", "18555", "-o", str(cfg_path))
    cfg = load_config(str(cfg_path), env={})
    old = parse_signing_key(Path(cfg.signing_key_path).read_text())
    out = cli("rotate-key", "-c", str(cfg_path)).stdout
    new = parse_signing_key(Path(cfg.signing_key_path).read_text())
    assert old.key_id in out and new.key_id in out and new.key_id != old.key_id
    return cfg, old, new


async def test_rotated_key_is_published_as_old_and_new_key_signs(tmp_path: Path) -> None:
    cfg, old, new = rotated_server(tmp_path)

    client = TestClient(TestServer(await create_app(cfg)))
    await client.start_server()
    try:
        resp = await client.get("/_matrix/key/v2/server")
        body = await resp.json()
    finally:
        await client.close()
    assert body["server_name"] == "rot.test"
    assert set(body["verify_keys"]) == {new.key_id}
    assert body["old_verify_keys"][old.key_id]["key"] == old.verify_key_base64
    assert body["old_verify_keys"][old.key_id]["expired_ts"] > 0
    # Self-signed with the new key; the old one no longer signs anything.
    verify_json_signature(body, "rot.test", new.key_id, decode_base64(body["verify_keys"][new.key_id]["key"]))
    assert set(body["signatures"]["rot.test"]) == {new.key_id}
