"""Fuzz the server-server API of a real Tricolor process with the spec's OpenAPI description.

Unauthenticated operations (version, key server, OpenID userinfo) as drawn; signed ones
signed by a real peer key (tests/fuzz/federation_world.py), so inputs reach the handlers
behind the X-Matrix check. Same checks and rules as the client-API run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fuzz.driver import flatten, fuzz
from tests.fuzz.exclusions import FEDERATION_EXCLUDED
from tests.fuzz.federation_world import FederationWorld, PeerThread
from tests.fuzz.test_fuzz_client import EXAMPLES, ONLY, RANDOM, _no_rate_limits
from tests.integration.conftest import start_real_server

HERE = Path(__file__).resolve().parent
SPEC = HERE / "server-server-v1.19.json"

# CI inputs finish in a few minutes; scripts/fuzz (longer runs) turns the timeout off.
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(0 if RANDOM else 1800)]


def test_federation_api_fuzz(tmp_path: Path) -> None:
    document = json.loads(SPEC.read_text())
    peers = PeerThread(tmp_path)
    try:
        peer = peers.peer

        def config(text: str) -> str:
            text = _no_rate_limits(text)
            text = text.replace("  ca_file: null", f"  ca_file: {json.dumps(str(peer.ca_cert))}")
            text = text.replace("  static_map: {}", f"  static_map: {json.dumps(peer.static_map())}")
            # The scripted peer listens on loopback, which the SSRF guard denies by default.
            assert "\nip_range_whitelist: []" in text
            return text.replace("\nip_range_whitelist: []", '\nip_range_whitelist: ["127.0.0.0/8"]')

        with start_real_server(tmp_path, "sqlite", edit=config) as server:
            world = FederationWorld(server.base_url, server.server_name, peer)
            failures, sent = fuzz(
                document, server.base_url, world, examples=EXAMPLES, derandomize=not RANDOM,
                excluded=FEDERATION_EXCLUDED, skip=lambda op: ONLY not in op,
                progress=lambda line: print(line, flush=True),
            )
            log = server.log()
    finally:
        peers.close()
    print(f"federation API fuzz: {sent} requests, {len(failures)} failures")
    assert sent > 0
    # The signing hook works: the server accepted evil.test's signatures at least once.
    assert any(host == peer.server_name for host, _m, path in peer.requests if path.startswith("/_matrix/key/v2/server"))
    assert "unhandled error" not in log, log
    assert not failures, f"{len(failures)} failures:\n{flatten(failures)}"
