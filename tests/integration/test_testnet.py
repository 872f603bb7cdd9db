"""``python -m homeserver testnet``: a real two-server network in subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.loader import load_config
from homeserver.testnet import TestnetError, _mysql_database_name, _server_names

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_block(size: int = 8) -> int:
    """The first port P >= a per-run start with P..P+size-1 free on 127.0.0.1.

    20000-31999: below Linux's ephemeral range; other services and other test runs
    live there too, hence the probing rather than a fixed number.
    """
    start = (os.getpid() % 1500) * size
    for offset in range(0, 12000, size):
        base = 20000 + (start + offset) % 12000
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + size):
                    probe = stack.enter_context(socket.socket())
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports in 20000-31999")


@pytest.fixture
def base_port() -> int:
    return _free_block()


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def run_testnet(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "homeserver", "testnet", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    if check:
        assert result.returncode == 0, f"testnet {' '.join(args)}:\n{result.stderr}"
    return result


def health(url: str) -> str | None:
    try:
        with _NO_PROXY.open(f"{url}/health", timeout=5) as response:
            return str(json.load(response)["status"])
    except OSError:
        return None


def tls_handshake(url: str, cafile: str, hostname: str) -> None:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=hostname),
    ):
        pass


def by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {server["name"]: server for server in status["servers"]}


@pytest.fixture
def net_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "net"
    yield directory
    # Whatever happened, leave no server running.
    state = directory / "testnet.json"
    if state.exists():
        run_testnet("down", "--dir", str(directory), check=False)
    if state.exists():
        for server in json.loads(state.read_text())["servers"]:
            if server["pid"]:
                with contextlib.suppress(OSError):
                    os.kill(server["pid"], signal.SIGKILL)


def test_up_stop_start_down(net_dir: Path, base_port: int) -> None:
    d = str(net_dir)
    up = json.loads(
        run_testnet(
            "up", "--servers", "2", "--dir", d, "--base-port", str(base_port), "--fast-passwords"
        ).stdout
    )
    servers = by_name(up)
    assert list(servers) == ["hs1.test", "hs2.test"]
    hs1, hs2 = servers["hs1.test"], servers["hs2.test"]
    assert hs1["client_url"] == f"http://127.0.0.1:{base_port}"
    assert hs1["federation_url"] == f"https://127.0.0.1:{base_port + 1}"
    assert hs2["client_url"] == f"http://127.0.0.1:{base_port + 2}"
    assert hs2["federation_url"] == f"https://127.0.0.1:{base_port + 3}"
    assert up["ca_file"] == str(net_dir / "ca" / "ca.crt")
    for server in (hs1, hs2):
        assert isinstance(server["pid"], int)
        assert server["database"].startswith(f"sqlite+aiosqlite:///{net_dir}/")
        assert health(server["client_url"]) == "ok"
        cfg = load_config(server["config"], env={})
        assert cfg.server_name == server["name"]
        assert cfg.federation.ca_file == up["ca_file"]
        assert cfg.federation.static_map == {
            "hs1.test": f"127.0.0.1:{base_port + 1}",
            "hs2.test": f"127.0.0.1:{base_port + 3}",
        }
        # The federation port speaks TLS with a certificate the network's CA vouches for.
        tls_handshake(server["federation_url"], up["ca_file"], server["name"])
    assert json.loads((net_dir / "testnet.json").read_text())["servers"][0]["pid"] == hs1["pid"]

    # A second `up` on the same directory is refused.
    again = run_testnet("up", "--dir", d, "--base-port", str(base_port), check=False)
    assert again.returncode != 0 and "already exists" in again.stderr

    stopped = json.loads(run_testnet("stop", "hs2.test", "--dir", d).stdout)
    assert stopped["health"] == "down"
    status = by_name(json.loads(run_testnet("status", "--dir", d).stdout))
    assert status["hs1.test"]["health"] == "ok"
    assert status["hs2.test"]["health"] == "down" and status["hs2.test"]["pid"] is None
    assert status["hs1.test"]["federation"] == {}  # nothing was sent to hs2: no view of it yet
    assert health(hs2["client_url"]) is None

    started = json.loads(run_testnet("start", "hs2.test", "--dir", d).stdout)
    assert started["health"] == "ok" and started["pid"] != hs2["pid"]
    status = by_name(json.loads(run_testnet("status", "--dir", d).stdout))
    assert [s["health"] for s in status.values()] == ["ok", "ok"]
    assert status["hs2.test"]["pid"] == started["pid"]

    unknown = run_testnet("stop", "hs9.test", "--dir", d, check=False)
    assert unknown.returncode != 0 and "no server named 'hs9.test'" in unknown.stderr

    pids = [status["hs1.test"]["pid"], started["pid"]]
    down = json.loads(run_testnet("down", "--dir", d).stdout)
    assert down["removed"] == d
    assert not net_dir.exists()
    for url in (hs1["client_url"], hs2["client_url"]):
        assert health(url) is None
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or b"homeserver" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        )


def test_up_refuses_a_port_in_use(net_dir: Path, base_port: int) -> None:
    base = base_port
    with socket.socket() as busy:
        # A real listener, or the test proves nothing: SO_REUSEADDR lets it bind over a
        # connection in TIME_WAIT, and an error here fails the test instead of hiding.
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", base + 1))
        busy.listen()
        result = run_testnet("up", "--dir", str(net_dir), "--base-port", str(base), check=False)
    assert result.returncode == 1
    assert f"port {base + 1} (federation port of hs1.test) is in use" in result.stderr
    assert result.stdout == ""
    assert not net_dir.exists()


def test_commands_on_a_missing_network_fail_clearly(tmp_path: Path) -> None:
    result = run_testnet("status", "--dir", str(tmp_path / "none"), check=False)
    assert result.returncode == 1
    assert "no test network in" in result.stderr


def test_server_names() -> None:
    assert _server_names(None, 3, [1, 3, 5]) == ["hs1.test", "hs2.test", "hs3.test"]
    assert _server_names("ip", 2, [18201, 18203]) == ["127.0.0.1:18201", "127.0.0.1:18203"]
    assert _server_names("a.test, b.test", 2, [1, 3]) == ["a.test", "b.test"]
    with pytest.raises(TestnetError, match="lists 1 names but --servers is 2"):
        _server_names("a.test", 2, [1, 3])
    with pytest.raises(TestnetError, match="not a valid server name"):
        _server_names("a.test,no good", 2, [1, 3])
    with pytest.raises(TestnetError, match="twice"):
        _server_names("a.test,a.test", 2, [1, 3])


def test_mysql_database_names() -> None:
    one = _mysql_database_name("hs1.test", "/tmp/net-a")
    assert one.startswith("tri_net_hs1_test_") and one == _mysql_database_name("hs1.test", "/tmp/net-a")
    assert _mysql_database_name("hs1.test", "/tmp/net-b") != one  # two networks never collide
    assert _mysql_database_name("127.0.0.1:18201", "/x").startswith("tri_net_127_0_0_1_18201_")
    assert len(_mysql_database_name("x" * 300, "/x")) <= 64


def _mysql_databases(url: str, pattern: str) -> list[str]:
    import asyncio

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    async def query() -> list[str]:
        engine = create_async_engine(
            make_url(url).set(database=None), connect_args={"connect_timeout": 3}
        )
        try:
            async with engine.connect() as conn:
                result = await conn.execute(sa.text("SHOW DATABASES LIKE :p"), {"p": pattern})
                return [row[0] for row in result]
        finally:
            await engine.dispose()

    return asyncio.run(query())


def test_mysql_network(net_dir: Path, base_port: int) -> None:
    url = os.environ.get("TRICOLOR_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
    try:
        _mysql_databases(url, "x")
    except Exception as exc:
        if os.environ.get("TRICOLOR_REQUIRE_MYSQL") == "1":
            raise
        pytest.skip(f"MariaDB unusable: {exc}")
    name = "hs1.test"
    d = str(net_dir)
    database = _mysql_database_name(name, d)
    up = json.loads(
        run_testnet(
            "up",
            "--servers",
            "1",
            "--database",
            "mysql",
            "--names",
            name,
            "--dir",
            d,
            "--base-port",
            str(base_port),
            "--fast-passwords",
        ).stdout
    )
    (server,) = up["servers"]
    assert server["database"].startswith("mysql+asyncmy://") and server["database"].endswith(
        f"/{database}"
    )
    assert health(server["client_url"]) == "ok"
    assert _mysql_databases(url, database) == [database]
    down = json.loads(run_testnet("down", "--dir", d).stdout)
    assert down["dropped_databases"] == [database]
    assert _mysql_databases(url, database) == []


def _call(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with _NO_PROXY.open(request, timeout=20) as response:
        return json.load(response)


def test_network_federates(net_dir: Path, base_port: int) -> None:
    """The point of the network: hs1 and hs2 reach each other over verified TLS by name."""
    d = str(net_dir)
    up = json.loads(
        run_testnet("up", "--dir", d, "--base-port", str(base_port), "--fast-passwords").stdout
    )
    hs1, hs2 = (s["client_url"] for s in up["servers"])
    tokens = []
    for base, user in ((hs1, "alice"), (hs2, "bob")):
        body = {"username": user, "password": "correct horse", "auth": {"type": "m.login.dummy"}}
        tokens.append(_call(base, "POST", "/_matrix/client/v3/register", body)["access_token"])
    alice, bob = tokens
    room = _call(hs1, "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"}, alice)[
        "room_id"
    ]
    _call(
        hs1, "POST", f"/_matrix/client/v3/rooms/{room}/invite", {"user_id": "@bob:hs2.test"}, alice
    )
    _call(hs2, "POST", f"/_matrix/client/v3/join/{room}", {}, bob)
    message = {"msgtype": "m.text", "body": "hello over federation"}
    _call(hs1, "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t1", message, alice)
    deadline = time.monotonic() + 15
    bodies: list[str] = []
    while time.monotonic() < deadline:
        chunk = _call(
            hs2, "GET", f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5", None, bob
        )
        bodies = [e.get("content", {}).get("body") for e in chunk["chunk"]]
        if "hello over federation" in bodies:
            break
        time.sleep(0.2)
    assert "hello over federation" in bodies
    run_testnet("down", "--dir", d)


def test_a_join_through_the_resident_server_reaches_the_rooms_other_servers() -> None:
    """Three servers: hs2 and then hs3 join hs1's room through hs1 (send_join); hs1 passes
    hs3's join on to hs2, so every server lists all three members and hs2 and hs3 see each
    other's messages (before, hs2 never heard of hs3's join)."""
    from tests.integration.amqp_net import amqp_network, assert_exactly_once_in_order

    with amqp_network(3, transport="https") as net:
        net.setup_room()  # waits until every server lists every member
        sent = net.bursts("three", 3)
        assert_exactly_once_in_order(net, net.wait_converged(sent, 60), sent)
