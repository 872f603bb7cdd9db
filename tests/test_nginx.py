"""contrib/nginx/tricolor.conf, checked by Debian's nginx: `nginx -t` on the file as
shipped (only certificate and media paths pointed at test files), then a real nginx with
it in front of a real homeserver: clients, /sync and the key server through it, and media
downloads answered by the worker with X-Accel-Redirect and sent by nginx from the store.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from config.loader import load_config
from config.tls import ensure_ca, issue_server_cert
from tests.integration.conftest import _free_port, start_real_server

ROOT = Path(__file__).resolve().parents[1]
CONTRIB = ROOT / "contrib/nginx/tricolor.conf"
ACCEL = "/_tricolor_media/"


def _nginx() -> str:
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None,
    )
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (.ci/run installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return binary


def _site(tmp: Path, media_dir: Path, ports: dict[str, int] | None = None) -> Path:
    """The contrib file with test certificate and media paths (and ports, to run it)."""
    ca_cert, ca_key = ensure_ca(str(tmp / "ca"))
    cert, key = issue_server_cert(ca_cert, ca_key, "hs1.example", str(tmp / "server.crt"), str(tmp / "server.key"))
    text = CONTRIB.read_text()
    replacements = {
        "/etc/tricolor/tls/server.crt": cert,
        "/etc/tricolor/tls/server.key": key,
        "alias /var/lib/tricolor/media/;": f"alias {media_dir}/;",
    }
    if ports is not None:
        replacements.update({
            "listen 443 ssl;": f"listen 127.0.0.1:{ports['https']} ssl;",
            "listen 8448 ssl;": f"listen 127.0.0.1:{ports['federation']} ssl;",
            "127.0.0.1:8081": f"127.0.0.1:{ports['worker']}",
            "127.0.0.1:8082": f"127.0.0.1:{ports['worker']}",
            "127.0.0.1:8091": f"127.0.0.1:{ports['worker']}",
            "127.0.0.1:8092": f"127.0.0.1:{ports['worker']}",
        })
    for old, new in replacements.items():
        assert old in text, f"{CONTRIB.name} no longer contains {old!r}"
        text = text.replace(old, new)
    site = tmp / "tricolor.conf"
    site.write_text(text)
    main = tmp / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
        "http {\n"
        f"  access_log {tmp}/access.log;\n"
        + "".join(f"  {kind}_temp_path {tmp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + "  types { image/png png; }\n"
        f"  include {site};\n"
        "}\n"
    )
    return main


def test_the_contrib_config_passes_nginx_t(tmp_path: Path) -> None:
    main = _site(tmp_path, tmp_path / "media")
    done = subprocess.run(
        [_nginx(), "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def _media_dir(workdir: Path, env: dict[str, str]) -> Path:
    """The server's media_store_path (made now: nginx's alias points at it)."""
    media_dir = Path(load_config(str(workdir / "homeserver.yaml"), env=env).media_store_path)
    media_dir.mkdir(parents=True, exist_ok=True)
    return media_dir


@contextlib.contextmanager
def running_nginx(main: Path, tmp: Path, port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        [_nginx(), "-p", str(tmp), "-c", str(main), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if proc.poll() is not None:
                pytest.fail(f"nginx exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            assert time.monotonic() < deadline, "nginx did not listen within 30 s"
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_a_worker_deployment_behind_the_contrib_nginx(tmp_path: Path) -> None:
    _nginx()
    ports = {"https": _free_port(), "federation": _free_port()}
    workdir = tmp_path / "hs"
    workdir.mkdir()
    env = {"TRICOLOR_MEDIA__X_ACCEL_REDIRECT_PREFIX": ACCEL, "TRICOLOR_RC_ENABLED": "false"}
    with start_real_server(workdir, "sqlite", extra_env=env) as hs:
        ports["worker"] = int(hs.base_url.rsplit(":", 1)[1])
        media_dir = _media_dir(workdir, env)
        main = _site(tmp_path, media_dir, ports)
        proxy = f"https://127.0.0.1:{ports['https']}"
        with running_nginx(main, tmp_path, ports["https"]):
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as s:
                async with s.post(f"{proxy}/_matrix/client/v3/register", json={
                    "username": f"nx{secrets.token_hex(3)}", "password": "pw", "auth": {"type": "m.login.dummy"},
                }) as r:
                    assert r.status == 200, await r.text()
                    token = (await r.json())["access_token"]
                    assert "X-Request-Id" in r.headers
                auth = {"Authorization": f"Bearer {token}"}
                async with s.get(f"{proxy}/_matrix/client/v3/sync", params={"timeout": "0"}, headers=auth) as r:
                    assert r.status == 200
                    assert "next_batch" in await r.json()
                fed = f"https://127.0.0.1:{ports['federation']}"
                async with s.get(f"{fed}/_matrix/key/v2/server") as r:
                    assert r.status == 200
                    assert (await r.json())["server_name"] == hs.server_name

                data = secrets.token_bytes(200_000)
                async with s.post(f"{proxy}/_matrix/media/v3/upload", data=data,
                                  headers={**auth, "Content-Type": "image/png"}, params={"filename": "a.png"}) as r:
                    assert r.status == 200, await r.text()
                    mxc = (await r.json())["content_uri"]
                server_name, media_id = mxc.removeprefix("mxc://").split("/")
                path = f"/_matrix/client/v1/media/download/{server_name}/{media_id}"

                # The worker itself answers with the redirect and no bytes...
                async with s.get(f"{hs.base_url}{path}", headers=auth) as r:
                    assert r.status == 200
                    assert r.headers["X-Accel-Redirect"] == f"{ACCEL}local/{media_id}"
                    assert await r.read() == b""
                # ...and through nginx the client gets the file, with the media headers.
                async with s.get(f"{proxy}{path}", headers=auth) as r:
                    assert r.status == 200
                    assert await r.read() == data
                    assert r.headers["Content-Type"] == "image/png"
                    assert "X-Accel-Redirect" not in r.headers
                    assert r.headers.getall("X-Content-Type-Options") in (["nosniff"], ["nosniff", "nosniff"])
                    assert r.headers["Content-Security-Policy"].startswith("sandbox")
                    assert "a.png" in r.headers["Content-Disposition"]
                # Access is still the worker's decision: no token, no file.
                async with s.get(f"{proxy}{path}") as r:
                    assert r.status == 401
                # The media store is not reachable from outside.
                async with s.get(f"{proxy}{ACCEL}local/{media_id}") as r:
                    assert r.status == 404
                async with s.get(f"{proxy}/metrics") as r:
                    assert r.status == 404
