"""matrix-js-sdk (the library inside Element Web) against a real server process.

``tests/js/session.mjs`` runs two clients through a chat session and prints one JSON
object with every step's outcome; this test starts the server, runs the script with
Node, and asserts that every step passed. ``scripts/test`` installs the script's pinned
packages (``npm ci``) when Node is on the machine; without Node the test is skipped
locally and fails in CI (CI=true), where the session must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import RunningServer

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SESSION_TIMEOUT = 600

# The steps of the session, in the order the script runs them.
STEPS = [
    "register two users",
    "both clients start (initial sync to PREPARED/SYNCING)",
    "create a room with a name and a topic",
    "invite",
    "join",
    "message",
    "read receipt",
    "typing",
    "display name",
    "media upload and download",
    "redaction",
    "scrollback to the room's creation",
    "an edit (m.replace) seen as replaced",
    "leave",
    "logout, and the old token is refused",
]


def _node() -> str:
    node = shutil.which("node")
    missing = (
        "node is not installed" if node is None
        else "tests/js/node_modules is missing (scripts/test runs npm ci)"
        if not (JS_DIR / "node_modules" / "matrix-js-sdk").is_dir() else None
    )
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the matrix-js-sdk session must run in CI: {missing}")
        pytest.skip(missing)
    assert node is not None
    return node


def test_a_matrix_js_sdk_session(real_server: RunningServer) -> None:
    node = _node()
    proc = subprocess.run(
        [node, str(JS_DIR / "session.mjs"), real_server.base_url],
        cwd=JS_DIR, capture_output=True, text=True, timeout=SESSION_TIMEOUT,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no result from the session (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    steps = json.loads(lines[-1])["steps"]
    assert [s["name"] for s in steps] == STEPS
    failed = {s["name"]: s["error"] for s in steps if not s["ok"]}
    assert failed == {}, (
        json.dumps(failed, indent=1) + f"\n--- server log ---\n{real_server.log()}"
    )
    assert proc.returncode == 0
