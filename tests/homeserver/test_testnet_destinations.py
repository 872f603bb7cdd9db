"""``testnet status`` shows, per server, how its sender sees each peer — read from the
server's database: a peer that failed 3+ times in a row is "down", with its backlog."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from homeserver.core.records import RetryState
from homeserver.testnet.destinations import destinations_status
from storage.engine import create_engine
from storage.migrate import migrate
from storage.stores.outbox import OutboxStore


def test_down_retrying_and_queued_destinations(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hs.db'}"

    async def seed() -> None:
        engine = create_engine(url)
        await migrate(engine)
        outbox = OutboxStore(engine)
        now = int(time.time() * 1000)
        await outbox.set_retry("gone.test", RetryState(7, now + 600_000, None))
        await outbox.set_retry("flaky.test", RetryState(1, now + 2_000, now - 5_000))
        await outbox.set_retry("fine.test", RetryState(0, 0, now))
        await outbox.append(["gone.test", "gone.test", "queued.test"], '{"type":"m.room.message"}', now)
        await engine.dispose()

    asyncio.run(seed())
    got = destinations_status(url)
    assert set(got) == {"gone.test", "flaky.test", "queued.test"}  # healthy and empty: not listed
    assert got["gone.test"]["state"] == "down" and got["gone.test"]["failures"] == 7
    assert got["gone.test"]["queued_pdus"] == 2 and 590 <= got["gone.test"]["next_attempt_in_s"] <= 600
    assert got["flaky.test"]["state"] == "retrying" and got["flaky.test"]["queued_pdus"] == 0
    assert got["queued.test"] == {"state": "ok", "failures": 0, "next_attempt_in_s": 0, "queued_pdus": 1}
