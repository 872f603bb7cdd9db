"""Server-side search benchmark: POST /search latency over N messages. Prints JSON.

    .venv/bin/python bench/search_bench.py                         # own Tricolor on SQLite, 100,000 messages
    .venv/bin/python bench/search_bench.py --database-url mysql+asyncmy://root@127.0.0.1:3306/DB
    .venv/bin/python bench/search_bench.py --url URL --messages 10000   # any homeserver already running

The messages go in through the client API (10 senders, 10 rooms), so they are indexed the
way a live server indexes them (after commit, by the search indexer). Words come from a
fixed synthetic vocabulary (Zipf-like: some words are in most messages, most are rare) plus
a Chinese sentence in one message of 20. Each query kind runs `--queries` times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from typing import Any

import aiohttp
from harness import Client, percentile, tricolor

CHINESE = ["我们明天去北京吃烤鸭", "今天天气很好", "上海的夜景非常漂亮", "请把文件发给我"]


def vocabulary(n: int = 5000) -> list[str]:
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def message(rng: random.Random, words: list[str], i: int) -> str:
    # Zipf-ish: index ~ n * u^3 makes the first words common, the tail rare.
    text = " ".join(words[int(len(words) * rng.random() ** 3)] for _ in range(rng.randint(4, 14)))
    if i % 20 == 0:
        text += " " + CHINESE[i // 20 % len(CHINESE)]
    return text


async def fill(s: aiohttp.ClientSession, base: str, total: int, senders: int) -> tuple[Client, float]:
    reader = await Client(s, base).register("reader")
    writers = [await Client(s, base).register("writer") for _ in range(senders)]
    rooms = []
    for w in writers:
        room = (await w.req("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await reader.req("POST", f"/join/{room}", {})
        rooms.append(room)
    words = vocabulary()
    per = total // senders

    async def blast(n: int) -> None:
        rng = random.Random(n)
        for i in range(per):
            await writers[n].send(rooms[n], message(rng, words, i))

    t0 = time.perf_counter()
    await asyncio.gather(*(blast(n) for n in range(senders)))
    return reader, per * senders / (time.perf_counter() - t0)


async def timed(c: Client, criteria: dict[str, Any], n: int) -> dict[str, Any]:
    lat: list[float] = []
    count = 0
    for _ in range(n):
        t = time.perf_counter()
        got = await c.req("POST", "/search", {"search_categories": {"room_events": criteria}})
        lat.append((time.perf_counter() - t) * 1000)
        count = got["search_categories"]["room_events"].get("count", 0)
    return {"p50_ms": round(percentile(lat, 50), 1), "p95_ms": round(percentile(lat, 95), 1), "count": count}


async def measure(base: str, total: int, senders: int, queries: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        reader, rate = await fill(s, base, total, senders)
        words = vocabulary()
        kinds = {
            "common_word_rank": {"search_term": words[0]},
            "common_word_recent": {"search_term": words[0], "order_by": "recent"},
            "rare_word": {"search_term": words[-3]},
            "two_words": {"search_term": f"{words[1]} {words[2]}"},
            "prefix": {"search_term": words[5][:3]},
            "chinese": {"search_term": "北京"},
            "with_context": {"search_term": words[10], "event_context": {"before_limit": 3, "after_limit": 3}},
            "no_match": {"search_term": "zzzzqqqq"},
        }
        out: dict[str, Any] = {"messages": total, "send_rate_per_s": round(rate)}
        for name, criteria in kinds.items():
            out[name] = await timed(reader, criteria, queries)
        return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--database-url")
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--senders", type=int, default=10)
    ap.add_argument("--queries", type=int, default=30)
    args = ap.parse_args()
    if args.url:
        result = await measure(args.url, args.messages, args.senders, args.queries)
    else:
        async with tricolor(database_url=args.database_url) as (base, _pid):
            result = await measure(base, args.messages, args.senders, args.queries)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    asyncio.run(main())
