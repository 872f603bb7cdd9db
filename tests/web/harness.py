"""What the browser tests share: real homeserver processes serving the web client, a
headless Chromium (Debian's, /usr/bin/chromium, driven by Playwright), screenshots into
the artifact folder, and signing a user in without the login form (state is set up
through the HTTP API; only the feature under test goes through the UI)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from tests.integration.conftest import _free_port, _healthy

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("TRICOLOR_CHROMIUM", "/usr/bin/chromium")
# CI uploads this folder; each test writes its screenshots under a folder named after it.
ARTIFACTS = Path(os.environ.get("TRICOLOR_TEST_ARTIFACTS", REPO / "test-artifacts")) / "web"
START_TIMEOUT = 60.0
# How long the UI may take to show something the server has (a loaded 2-core CI machine).
UI_TIMEOUT_MS = 30_000


def require_browser() -> None:
    """Skip without Chromium or npm locally; in CI (CI=true) that is a failure."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if shutil.which("npm") is None:
        missing.append("npm (to build web/)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (pip install -e '.[test]')")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("browser tests need " + ", ".join(missing), pytrace=False)
        pytest.skip("browser tests need " + ", ".join(missing))


def build_web_client() -> Path:
    """web/dist, built if its sources changed (one builder at a time across xdist workers)."""
    import fcntl

    lock = REPO / ".cache" / "build-web.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        subprocess.run([str(REPO / "scripts" / "build-web")], check=True, cwd=REPO, timeout=600)
    return REPO / "web" / "dist"


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


@attrs.define
class Homeserver:
    """One `python -m homeserver run` process with the web client on its own port."""

    workdir: Path
    server_name: str
    overrides: dict[str, Any] = attrs.field(factory=dict)
    port: int = attrs.field(factory=_free_port)
    web_port: int = attrs.field(factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/"

    @property
    def config(self) -> Path:
        return self.workdir / "homeserver.yaml"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRICOLOR_")}
        env.update(TRICOLOR_BCRYPT_ROUNDS="4", PYTHONPATH=str(REPO))
        return env

    def write_config(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "homeserver", "generate-config", "--server-name", self.server_name,
             "--port", str(self.port), "-o", str(self.config)],
            cwd=REPO, env=self.env(), check=True, capture_output=True, timeout=60,
        )
        cfg = yaml.safe_load(self.config.read_text())
        _deep_merge(cfg, {"rc_enabled": False, "web_client": {"port": self.web_port}, **self.overrides})
        self.config.write_text(yaml.safe_dump(cfg))

    def start(self) -> None:
        if not self.config.exists():
            self.write_config()
        log = (self.workdir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "-c", str(self.config)],
            cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not (_healthy(self.base_url) and _serves(self.web_url)):
            if self.proc.poll() is not None:
                pytest.fail(f"homeserver exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"homeserver not up after {START_TIMEOUT}s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def api(base_url: str, method: str, path: str, body: Any = None, token: str | None = None,
        expect: int = 200) -> Any:
    """One blocking client-API call (set-up between browser steps)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, payload = e.code, e.read()
    result = json.loads(payload or b"{}")
    assert status == expect, f"{method} {path}: {status} {result}"
    return result


@attrs.frozen
class Account:
    base_url: str
    user_id: str
    token: str
    device_id: str

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        return api(self.base_url, method, path, body, self.token, expect)

    def session(self) -> dict[str, str]:
        """What the web client keeps in localStorage for a signed-in user."""
        return {"baseUrl": self.base_url, "token": self.token, "userId": self.user_id, "deviceId": self.device_id}


def register(base_url: str, name: str, password: str = "pw-secret-1", admin: bool = False) -> Account:
    got = api(base_url, "POST", "/_matrix/client/v3/register", {
        "username": name, "password": password, "auth": {"type": "m.login.dummy"},
    })
    return Account(base_url, got["user_id"], got["access_token"], got["device_id"])


def register_admin(hs: Homeserver, name: str, password: str = "pw-secret-1") -> Account:
    """A server admin, made through Synapse's shared-secret registration (admin API)."""
    import hashlib
    import hmac

    secret = yaml.safe_load(hs.config.read_text())["registration"]["shared_secret"]
    nonce = api(hs.base_url, "GET", "/_synapse/admin/v1/register")["nonce"]
    mac = hmac.new(secret.encode(), b"\0".join([nonce.encode(), name.encode(), password.encode(), b"admin"]),
                   hashlib.sha1).hexdigest()
    got = api(hs.base_url, "POST", "/_synapse/admin/v1/register", {
        "nonce": nonce, "username": name, "password": password, "admin": True, "mac": mac,
    })
    return Account(hs.base_url, got["user_id"], got["access_token"], got["device_id"])
