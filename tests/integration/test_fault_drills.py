"""Fault drills: the homeserver killed with SIGKILL, or stopped with SIGTERM, in the middle
of a message burst.

Ten senders send 50 messages each into one room (500 in all), each with its own txn ids.
Once about 40% are acknowledged the process is killed outright (no shutdown code runs),
with requests still in flight. After a restart every sender retries each of its messages
with the same txn id. What a user would notice, and what must hold:

- every message that was answered 200 is in the room, under the event id it was given;
- a retry of a message that was committed (answered or not) returns that same event:
  no message appears twice, and every one of the 500 is there exactly once;
- every reader sees the same order.

SIGTERM is the graceful stop (issue 18 "Operations"): the process stops accepting, lets
in-flight requests finish, flushes the persister's batches and the federation queues, and
exits 0 within the bound a service manager gives it; the same checks then show that
nothing it acknowledged was lost.

On SQLite and on MariaDB (the test server; each run has its own database).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import create_mysql_database, drop_mysql_database
from tests.integration.drills import STOP_BOUND, Client, DrillServer

pytestmark = pytest.mark.fault_drills

SENDERS = 10
PER_SENDER = 50
KILL_AFTER = 200  # acknowledged messages before the SIGKILL


@contextlib.contextmanager
def drill_server(tmp_path: Path, database: str) -> Iterator[DrillServer]:
    url = asyncio.run(create_mysql_database()) if database == "mysql" else None
    server = DrillServer(tmp_path, database_url=url)
    try:
        server.generate()
        yield server
    finally:
        server.ensure_stopped()
        if url is not None:
            asyncio.run(drop_mysql_database(url))


async def _burst(server: DrillServer, sig: signal.Signals) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        owner = await Client(session, server).register("owner")
        room = (await owner.ok("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        senders = [await Client(session, server).register(f"s{i}") for i in range(SENDERS)]
        for s in senders:
            await s.ok("POST", f"/join/{room}", {})

        acked: dict[str, str] = {}  # txn id -> event id answered with 200
        enough = asyncio.Event()

        async def send_all(i: int, sender: Client) -> None:
            for n in range(PER_SENDER):
                txn = f"s{i}-m{n}"
                try:
                    status, data = await sender.send(room, txn, txn)
                except (TimeoutError, aiohttp.ClientError):
                    return  # the server is gone: this sender stops, like a client would
                # Stopping or not, the server answers a request it reads: never a 5xx.
                assert status == 200, (status, data)
                acked[txn] = data["event_id"]
                if len(acked) >= KILL_AFTER:
                    enough.set()

        tasks = [asyncio.create_task(send_all(i, s)) for i, s in enumerate(senders)]
        await asyncio.wait_for(enough.wait(), timeout=120)
        if sig == signal.SIGKILL:
            server.kill()
        else:
            stopping = asyncio.create_task(asyncio.to_thread(server.stop, sig))
            assert await stopping == 0, server.log()  # within STOP_BOUND, or stop() raises
            assert "stopped" in server.log()
        await asyncio.gather(*tasks)
        assert KILL_AFTER <= len(acked) < SENDERS * PER_SENDER, len(acked)

    # Restart on the same data; clients reconnect and retry with the same txn ids.
    server.start()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for s in senders:
            s.s = session
        owner.s = session
        final: dict[str, str] = {}

        async def retry_all(i: int, sender: Client) -> None:
            for n in range(PER_SENDER):
                txn = f"s{i}-m{n}"
                final[txn] = (await sender.ok(
                    "PUT", f"/rooms/{room}/send/m.room.message/{txn}",
                    {"msgtype": "m.text", "body": txn},
                ))["event_id"]

        await asyncio.gather(*(retry_all(i, s) for i, s in enumerate(senders)))

        # An acknowledged message kept its event id: the retry found it, made nothing new.
        changed = {t: (e, final[t]) for t, e in acked.items() if final[t] != e}
        assert not changed, f"acknowledged messages answered with new events: {changed}"

        readers = [owner, senders[0], senders[-1]]
        timelines = [await r.timeline(room) for r in readers]
        ids = [[e["event_id"] for e in t] for t in timelines]
        assert ids[0] == ids[1] == ids[2], "readers see different orders"
        bodies = [e["content"]["body"] for e in timelines[0]]
        assert len(bodies) == len(set(bodies)), "a message appears twice"
        assert sorted(bodies) == sorted(final), "the room does not hold exactly the 500 messages"
        assert set(ids[0]) == set(final.values())
        # Each sender's messages are in the order it sent them.
        for i in range(SENDERS):
            mine = [b for b in bodies if b.startswith(f"s{i}-")]
            assert mine == [f"s{i}-m{n}" for n in range(PER_SENDER)]


@pytest.mark.parametrize("database", ["sqlite", "mysql"])
def test_sigkill_during_burst_loses_nothing_acknowledged(tmp_path: Path, database: str) -> None:
    with drill_server(tmp_path, database) as server:
        server.start()
        asyncio.run(_burst(server, signal.SIGKILL))


@pytest.mark.parametrize("database", ["sqlite", "mysql"])
def test_sigterm_during_burst_stops_in_bounded_time_losing_nothing(tmp_path: Path, database: str) -> None:
    assert STOP_BOUND <= 15
    with drill_server(tmp_path, database) as server:
        server.start()
        asyncio.run(_burst(server, signal.SIGTERM))
