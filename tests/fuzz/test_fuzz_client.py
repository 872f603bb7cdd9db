"""Fuzz the client-server API of a real Tricolor process with the spec's OpenAPI description.

Bounded for CI (``-m fuzz``, run by .ci/run as its own step); ``scripts/fuzz`` runs it longer
and with fresh random inputs. Zero failures allowed: any 5xx, any answer that does not match
what the spec says that status returns (bar the documented exclusions), any request left
without an answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fuzz.client_world import ClientWorld
from tests.fuzz.driver import flatten, fuzz
from tests.fuzz.exclusions import CLIENT_EXCLUDED
from tests.integration.conftest import start_real_server

HERE = Path(__file__).resolve().parent
SPEC = HERE / "client-server-v1.19.json"
EXAMPLES = int(os.environ.get("TRICOLOR_FUZZ_EXAMPLES", "10"))
RANDOM = os.environ.get("TRICOLOR_FUZZ_RANDOM") == "1"
ONLY = os.environ.get("TRICOLOR_FUZZ_ONLY", "")  # a substring of the operations to run (developers)
# CI fuzzes on SQLite; TRICOLOR_FUZZ_DATABASES=sqlite,mysql adds MariaDB (scripts/fuzz users).
DATABASES = os.environ.get("TRICOLOR_FUZZ_DATABASES", "sqlite").split(",")

# CI inputs finish in a few minutes; scripts/fuzz (longer runs) turns the timeout off.
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(0 if RANDOM else 1800)]


def _no_rate_limits(text: str) -> str:
    # The fuzzer registers throwaway users and sends bursts: rate limits would answer 429
    # to most requests and hide the handlers behind them (they are tested on their own).
    return text.replace("rc_enabled: true", "rc_enabled: false")


@pytest.mark.parametrize("database", DATABASES)
def test_client_api_fuzz(database: str, tmp_path: Path) -> None:
    document = json.loads(SPEC.read_text())
    with start_real_server(tmp_path, database, edit=_no_rate_limits) as server:
        world = ClientWorld(server.base_url, server.server_name)
        failures, sent = fuzz(
            document, server.base_url, world, examples=EXAMPLES, derandomize=not RANDOM,
            excluded=CLIENT_EXCLUDED, skip=lambda op: ONLY not in op,
            progress=lambda line: print(line, flush=True),
        )
        log = server.log()
    print(f"client API fuzz: {sent} requests, {len(failures)} failures")
    assert sent > 0
    assert "unhandled error" not in log, log
    assert not failures, f"{len(failures)} failures:\n{flatten(failures)}"
