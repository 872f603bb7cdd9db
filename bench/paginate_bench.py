"""Topological pagination (/messages pages, search results' event_context, /context) on a
MariaDB room of 100,000 events: the time of EventStore.paginate, backwards and forwards,
from positions spread over the room. Rows are written with SQL directly (fast), into a
database migrated like the server's. Prints one JSON object.

    ../.venv/bin/python paginate_bench.py [--events 100000] [--calls 30]

Needs MariaDB at 127.0.0.1:3306 (root, no password), as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.engine import create_engine
from storage.stores.events import EventStore
from tests.conftest import create_mysql_database, drop_mysql_database


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=30)
    args = ap.parse_args()
    url = await create_mysql_database(migrated=True)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts) "
                "VALUES ('!big', '10', '@a:x', 0, 0), ('!small', '10', '@a:x', 0, 0)",
            )
            # One room in fifty events is another room's, so the index holds more than one room.
            await conn.exec_driver_sql(f"""
                INSERT INTO events (stream_ordering, event_id, room_id, type, sender, depth,
                                    origin_server_ts, received_ts, json, rejected, outlier, soft_failed)
                SELECT seq, CONCAT('$e', seq), IF(MOD(seq, 50) = 0, '!small', '!big'), 'm.room.message',
                       '@a:x', seq, seq, seq,
                       CONCAT('{{"type":"m.room.message","room_id":"!big","sender":"@a:x",',
                              '"content":{{"body":"hello ', seq, '"}},"depth":', seq,
                              ',"origin_server_ts":', seq, ',"prev_events":[],"auth_events":[]}}'),
                       0, 0, 0
                FROM seq_1_to_{args.events}""")
            await conn.exec_driver_sql("ANALYZE TABLE events")
        store = EventStore(engine)
        timings = []
        for i in range(args.calls):
            at = (i + 1) * args.events // (args.calls + 1)
            t = time.perf_counter()
            await store.paginate("!big", (at, at), i % 2 == 0, 10)
            timings.append((time.perf_counter() - t) * 1000)
        timings.sort()
        print(json.dumps({
            "events": args.events, "calls": args.calls,
            "paginate_ms": {"p50": round(timings[len(timings) // 2], 2), "max": round(timings[-1], 2)},
        }))
    finally:
        await engine.dispose()
        await drop_mysql_database(url)


if __name__ == "__main__":
    asyncio.run(main())
