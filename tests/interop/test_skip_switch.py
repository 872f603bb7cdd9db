"""``TRICOLOR_SKIP_INTEROP=1``: the documented way to leave out the Synapse tests locally."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _pytest(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("TRICOLOR_SKIP_INTEROP", "TRICOLOR_REQUIRE_SYNAPSE")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/interop/test_synapse_peer.py"],
        cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=120,
    )


def test_skip_switch_skips_every_interop_test_without_starting_synapse() -> None:
    result = _pytest(TRICOLOR_SKIP_INTEROP="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TRICOLOR_SKIP_INTEROP=1: interop tests skipped on request" in result.stdout
    assert " passed" not in result.stdout and " failed" not in result.stdout
    assert "installing matrix-synapse" not in result.stdout + result.stderr


def test_ci_requirement_wins_over_the_skip_switch() -> None:
    result = _pytest(TRICOLOR_SKIP_INTEROP="1", TRICOLOR_REQUIRE_SYNAPSE="1")
    assert result.returncode != 0
    assert "contradict each other; CI requires the interop tests" in result.stderr
