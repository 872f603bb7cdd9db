"""What each server's sender thinks of its peers, for ``testnet status``: read from the
server's own database (the persisted retry state and outbox), so it works whether the
server runs or not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from storage.engine import create_engine
from storage.stores.outbox import OutboxStore

# As the sender: after this many failures in a row a destination is in catch-up (its
# queue is collapsed), which is what an operator calls "down".
DOWN_AFTER_FAILURES = 3


def destinations_status(database_url: str) -> dict[str, dict[str, Any]]:
    """Per destination with failures or queued PDUs: state ("down" / "retrying" / "ok"),
    failures in a row, seconds until the next attempt, PDUs queued."""
    return asyncio.run(_read(database_url))


async def _read(database_url: str) -> dict[str, dict[str, Any]]:
    engine = create_engine(database_url, pool_size=1)
    try:
        outbox = OutboxStore(engine)
        failing = await outbox.failing_destinations()
        names = sorted(set(failing) | set(await outbox.pending_destinations()))
        now = int(time.time() * 1000)
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            retry = failing.get(name)
            failures = retry.failure_count if retry is not None else 0
            out[name] = {
                "state": "down" if failures >= DOWN_AFTER_FAILURES else "retrying" if failures else "ok",
                "failures": failures,
                "next_attempt_in_s": max(0, (retry.retry_after_ts - now) // 1000) if retry is not None else 0,
                "queued_pdus": await outbox.pending_count(name),
            }
        return out
    finally:
        await engine.dispose()
