"""Operations drill: ``tricolor backup`` under load, ``tricolor restore`` into a new server.

Five senders keep sending while the backup runs. The backup is restored into a fresh
data directory (new config, same server name) and that server must serve every message
acknowledged before the backup started, every uploaded file byte for byte, and the old
access tokens (the token secret and signing key come back too). On SQLite (online backup
API) and MariaDB (mariadb-dump --single-transaction, restored into a new database).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import create_mysql_database, drop_mysql_database
from tests.integration.conftest import REPO
from tests.integration.drills import Client, DrillServer, until

pytestmark = pytest.mark.fault_drills

SENDERS = 5


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRICOLOR_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "homeserver", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


async def _load_and_backup(server: DrillServer, backup_dir: Path) -> dict[str, object]:
    async with aiohttp.ClientSession() as session:
        owner = await Client(session, server).register("owner")
        room = (await owner.ok("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        senders = [await Client(session, server).register(f"b{i}") for i in range(SENDERS)]
        for s in senders:
            await s.ok("POST", f"/join/{room}", {})
        media: dict[str, bytes] = {}
        for n in range(3):
            data = os.urandom(2000 + n)
            up = await owner.ok("POST", "/upload", data=data, headers={"Content-Type": "application/octet-stream"},
                                prefix="/_matrix/media/v3")
            media[up["content_uri"]] = data

        acked: list[tuple[str, str]] = []
        stop = asyncio.Event()

        async def keep_sending(i: int, s: Client) -> None:
            n = 0
            while not stop.is_set():
                status, data = await s.send(room, f"b{i}-{n}", f"b{i}-{n}")
                assert status == 200, data
                acked.append((f"b{i}-{n}", data["event_id"]))
                n += 1

        tasks = [asyncio.create_task(keep_sending(i, s)) for i, s in enumerate(senders)]
        await until(lambda: asyncio.sleep(0, len(acked) >= 50))
        before = list(acked)  # acknowledged before the backup began
        done = await asyncio.to_thread(_cli, "backup", "-c", str(server.config), str(backup_dir))
        during = len(acked) - len(before)
        stop.set()
        await asyncio.gather(*tasks)
        assert done.returncode == 0, done.stderr
        assert during > 0, "nothing was sent while the backup ran: not a backup under load"
        return {"room": room, "before": before, "media": media, "token": owner.token}


async def _check_restored(server: DrillServer, state: dict[str, object]) -> None:
    async with aiohttp.ClientSession() as session:
        # The old access token works: the token secret came back with the database.
        owner = Client(session, server, token=str(state["token"]))
        timeline = await owner.timeline(str(state["room"]))
        served = {e["content"]["body"]: e["event_id"] for e in timeline}
        before = state["before"]
        assert isinstance(before, list)
        missing = [(body, eid) for body, eid in before if served.get(body) != eid]
        assert not missing, f"acknowledged before the backup, not served after restore: {missing[:5]}"
        media = state["media"]
        assert isinstance(media, dict)
        for uri, data in media.items():
            status, body = await owner.request(
                "GET", "/media/download/" + uri.removeprefix("mxc://"), prefix="/_matrix/client/v1",
            )
            assert status == 200 and body == data, uri
        # The restored server takes new messages after the restored ones.
        room = str(state["room"])
        status, _ = await owner.send(room, "after-restore", "after-restore")
        assert status == 200


@pytest.mark.parametrize("database", ["sqlite", "mysql"])
def test_backup_under_load_restores_every_acknowledged_message(tmp_path: Path, database: str) -> None:
    urls = [asyncio.run(create_mysql_database()) for _ in range(2)] if database == "mysql" else [None, None]
    original = DrillServer(tmp_path / "original", database_url=urls[0])
    restored = DrillServer(tmp_path / "restored", database_url=urls[1])
    backup_dir = tmp_path / "backup"
    try:
        original.workdir.mkdir()
        restored.workdir.mkdir()
        original.generate()
        original.start()
        state = asyncio.run(_load_and_backup(original, backup_dir))
        original.stop()
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        assert manifest["database"] == database and manifest["media_files"] >= 3

        restored.generate()  # same server name, its own (new) keys, data dir and database
        done = _cli("restore", "-c", str(restored.config), str(backup_dir))
        assert done.returncode == 1 and "differs from the backup" in done.stderr, done.stderr
        if database == "sqlite":  # the refused restore wrote nothing
            assert not (restored.workdir / "data-drill.test" / "homeserver.db").exists()
        done = _cli("restore", "-c", str(restored.config), str(backup_dir), "--force")
        assert done.returncode == 0, done.stderr
        restored.start()
        asyncio.run(_check_restored(restored, state))
    finally:
        original.ensure_stopped()
        restored.ensure_stopped()
        for url in urls:
            if url is not None:
                asyncio.run(drop_mysql_database(url))


def test_restore_refuses_another_server_and_an_existing_database(tmp_path: Path) -> None:
    a = DrillServer(tmp_path / "a")
    b = DrillServer(tmp_path / "b")
    a.workdir.mkdir()
    b.workdir.mkdir()
    a.generate("a.test")
    b.generate("b.test")
    a.start()
    try:
        assert _cli("backup", "-c", str(a.config), str(tmp_path / "bk")).returncode == 0
        again = _cli("backup", "-c", str(a.config), str(tmp_path / "bk"))
        assert again.returncode == 1 and "not empty" in again.stderr
    finally:
        a.stop()
    other = _cli("restore", "-c", str(b.config), str(tmp_path / "bk"))
    assert other.returncode == 1 and "the backup is of a.test" in other.stderr
    # a's own database exists: restore will not overwrite it without --force.
    same = _cli("restore", "-c", str(a.config), str(tmp_path / "bk"))
    assert same.returncode == 1 and "exists" in same.stderr
