"""A real homeserver process: ``python -m homeserver run`` on a free port.

One server per module and database (SQLite, and MariaDB when reachable); tests
register their own users, so they do not disturb each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import attrs
import pytest

from tests.conftest import create_mysql_database, drop_mysql_database

REPO = Path(__file__).resolve().parents[2]
SERVER_NAME = "nio.test"
START_TIMEOUT = 30.0


@attrs.frozen
class RunningServer:
    base_url: str
    server_name: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module", params=["sqlite", "mysql"], ids=["sqlite", "mysql"])
def real_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_real_server(tmp_path_factory.mktemp("server"), request.param) as server:
        yield server


@contextlib.contextmanager
def start_real_server(
    workdir: Path, database: str, extra_yaml: str = "", extra_listeners_yaml: str = "",
    extra_env: Mapping[str, str] | None = None, edit: Callable[[str], str] | None = None,
) -> Iterator[RunningServer]:
    """A server process on `database` ("sqlite" or "mysql"); `extra_yaml` is appended to
    its generated config (top-level sections the generated file lacks, e.g. `websocket:`
    limits), `extra_listeners_yaml` (list items) to its `listeners:`, `extra_env`
    (settings the file has, e.g. TRICOLOR_REDIS_URL) to its environment, and `edit`
    rewrites the generated text (to change a key the generator already wrote)."""
    port = _free_port()
    config = workdir / "homeserver.yaml"
    env = {**os.environ, "TRICOLOR_BCRYPT_ROUNDS": "4", "PYTHONPATH": str(REPO), **(extra_env or {})}
    env.pop("TRICOLOR_DATABASE_URL", None)
    mysql_url = None
    if database == "mysql":
        mysql_url = asyncio.run(create_mysql_database())
        env["TRICOLOR_DATABASE_URL"] = mysql_url
    subprocess.run(
        [sys.executable, "-m", "homeserver", "generate-config", "--server-name", SERVER_NAME,
         "--port", str(port), "-o", str(config)],
        cwd=REPO, env=env, check=True, capture_output=True, timeout=60,
    )
    if extra_listeners_yaml:
        text = config.read_text()
        first = "    resources: [client, federation]\n"
        assert first in text, "generate-config changed its listener layout"
        config.write_text(text.replace(first, first + extra_listeners_yaml.rstrip("\n") + "\n", 1))
    if edit is not None:
        config.write_text(edit(config.read_text()))
    if extra_yaml:
        with open(config, "a") as f:
            f.write("\n" + extra_yaml)
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "-c", str(config)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", SERVER_NAME, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(server.base_url):
            if proc.poll() is not None:
                pytest.fail(f"homeserver exited with {proc.returncode}:\n{server.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"homeserver not healthy after {START_TIMEOUT}s:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if mysql_url is not None:
            asyncio.run(drop_mysql_database(mysql_url))
