from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["scripts/services.sh", "scripts/test", "scripts/run", "scripts/sytest", "scripts/build-web", ".ci/run"]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_bash(script: str) -> None:
    path = REPO_ROOT / script
    assert os.access(path, os.X_OK)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert "set -euo pipefail" in path.read_text()


def test_services_rejects_unknown_service() -> None:
    result = subprocess.run(
        [str(REPO_ROOT / "scripts/services.sh"), "postgres"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "unknown service 'postgres'" in result.stderr


def test_run_on_another_port_names_the_server_after_it() -> None:
    """`TRICOLOR_PORT=P scripts/run`: users are @x:localhost:P, on data of their own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRICOLOR_")}
    env.update(TRICOLOR_PORT=str(port), TRICOLOR_BCRYPT_ROUNDS="4")
    data = REPO_ROOT / "data" / f"localhost-{port}"
    proc = subprocess.Popen(
        [str(REPO_ROOT / "scripts/run")], cwd=REPO_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        body = {"username": "alice", "password": "pw-alice", "auth": {"type": "m.login.dummy"}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/_matrix/client/v3/register", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with _NO_PROXY.open(request, timeout=5) as response:
                    user_id = json.load(response)["user_id"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "scripts/run did not start"
                time.sleep(0.1)
        assert user_id == f"@alice:localhost:{port}"
        assert (data / "homeserver.yaml").is_file()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        shutil.rmtree(data, ignore_errors=True)
