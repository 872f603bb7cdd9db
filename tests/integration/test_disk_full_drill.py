"""Fault drill: the disk holding the SQLite database and the media store fills up.

The server's data directory (database, WAL, media store) lives on a small tmpfs the test
mounts (root, or CAP_SYS_ADMIN, is needed; elsewhere the drill is skipped, and fails under
CI=true). With the file system filled to the last byte by another file:

- sends and uploads answer 507 ``M_RESOURCE_LIMIT_EXCEEDED`` with a clear message (never
  a bare 500), within a bounded time, and reads keep working;
- once space returns, the same server (no restart) takes sends and uploads again;
- nothing acknowledged is lost and the database passes SQLite's integrity check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.drills import Client, DrillServer, until

pytestmark = pytest.mark.fault_drills

FS_BYTES = 24 * 1024 * 1024
BODY = "x" * 3000  # large messages fill the WAL sooner


@contextlib.contextmanager
def small_fs(path: Path) -> Iterator[Path]:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs for the disk-full drill: {done.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(fs: Path) -> Path:
    """Write a file until the file system has no byte left."""
    filler = fs / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError:
                break
        for size in (4096, 512, 1):  # the last partial blocks
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError:
                    break
    return filler


async def _drill(server: DrillServer, fs: Path) -> dict[str, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        alice = await Client(session, server).register("alice")
        room = (await alice.ok("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        kept = os.urandom(1000)
        up = await alice.ok("POST", "/upload", data=kept, prefix="/_matrix/media/v3",
                            headers={"Content-Type": "application/octet-stream"})
        acked: dict[str, str] = {}
        for n in range(5):
            status, data = await alice.send(room, f"pre-{n}", f"pre-{n} {BODY}")
            assert status == 200, data
            acked[f"pre-{n}"] = data["event_id"]

        filler = await asyncio.to_thread(fill, fs)
        # A big upload cannot fit: refused with a clear error, no partial file left behind.
        status, data = await alice.request(
            "POST", "/upload", data=os.urandom(256 * 1024), prefix="/_matrix/media/v3",
            headers={"Content-Type": "application/octet-stream"},
        )
        assert (status, data.get("errcode")) == (507, "M_RESOURCE_LIMIT_EXCEEDED"), (status, data)
        assert "storage" in data["error"]
        # Sends go on while the WAL has room, then are refused the same way.
        refused = None
        for n in range(3000):
            started = time.monotonic()
            status, data = await alice.send(room, f"full-{n}", f"full-{n} {BODY}")
            assert time.monotonic() - started < 15
            if status == 200:
                acked[f"full-{n}"] = data["event_id"]
                continue
            refused = (status, data)
            break
        assert refused is not None, "3000 large messages fit on a full disk"
        assert refused[0] == 507 and refused[1]["errcode"] == "M_RESOURCE_LIMIT_EXCEEDED", refused
        # Reads keep working on a full disk.
        status, data = await alice.request("GET", "/media/download/" + up["content_uri"][6:],
                                           prefix="/_matrix/client/v1")
        assert status == 200 and data == kept
        await alice.ok("GET", f"/rooms/{room}/messages", params={"dir": "b", "limit": "5"})

        # Space returns: the same process takes writes again (the refused txn, retried).
        filler.unlink()

        async def sends_again() -> bool:
            status, data = await alice.send(room, f"full-{n}", f"full-{n} {BODY}")
            if status == 200:
                acked[f"full-{n}"] = data["event_id"]
            return status == 200

        await until(sends_again, within=30, every=0.5)
        await alice.ok("POST", "/upload", data=os.urandom(256 * 1024), prefix="/_matrix/media/v3",
                       headers={"Content-Type": "application/octet-stream"})
        served = {e["content"]["body"].split()[0]: e["event_id"] for e in await alice.timeline(room)}
        lost = {t: e for t, e in acked.items() if served.get(t) != e}
        assert not lost, f"acknowledged and lost: {lost}"
        return {"room": room, "token": alice.token}


def test_disk_full_sqlite_and_media(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        server = DrillServer(tmp_path / "hs")
        server.workdir.mkdir()
        try:
            server.generate()
            data_dir = fs / "data"
            text = server.config.read_text()
            text = text.replace("sqlite+aiosqlite:///./data-drill.test/homeserver.db",
                                f"sqlite+aiosqlite:///{data_dir}/homeserver.db")
            text = text.replace('media_store_path: "./data-drill.test/media"', f'media_store_path: "{data_dir}/media"')
            assert str(data_dir) in text and f"{data_dir}/media" in text
            server.config.write_text(text)
            server.start()
            asyncio.run(_drill(server, fs))
            assert server.stop() == 0
            db = sqlite3.connect(data_dir / "homeserver.db")
            try:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            finally:
                db.close()
            assert not [p for p in (data_dir / "media").rglob("*.tmp")], "partial uploads left behind"
        finally:
            server.ensure_stopped()
