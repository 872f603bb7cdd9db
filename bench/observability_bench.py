"""What observing every request costs: the same trivial handler behind the root app's
error middleware alone, and behind the observing middleware too (request id, counters,
response-time histogram, access log line to a file), over real TCP with keep-alive.
Also the price of one /metrics scrape of a fresh process registry.

    ../.venv/bin/python observability_bench.py [--requests 5000]

Prints one JSON object: CPU microseconds per request (client and server, one process) for
each stack (median of 5 rounds, alternating), their difference, and the scrape time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.exposition import generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from homeserver.http import observability
from homeserver.http.middleware import matrix_errors
from homeserver.http.responses import ok
from homeserver.logs import TEXT_FORMAT, RequestIdFilter
from homeserver.services.metrics import Metrics


async def versions(request: web.Request) -> web.Response:
    return ok({"versions": ["v1.11"]})


async def serve(observed: bool, access_lines: bool = True) -> tuple[web.AppRunner, str]:
    middlewares = [matrix_errors]
    if observed:
        middlewares.insert(0, observability.observe(Metrics.create(), access_lines))
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/_matrix/client/versions", versions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/_matrix/client/versions"


async def round_us(url: str, requests: int) -> float:
    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # warm the connection and the label children
            async with session.get(url) as r:
                await r.read()
        # CPU time of this process (client and server both): on a shared, loaded machine
        # wall-clock time mostly measures the neighbours.
        start = time.process_time()
        for _ in range(requests):
            async with session.get(url) as r:
                await r.read()
        return (time.process_time() - start) / requests * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    log_file = Path(tempfile.mkdtemp()) / "access.log"
    handler = logging.FileHandler(log_file)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)

    plain_runner, plain = await serve(False)
    observed_runner, observed = await serve(True)
    quiet_runner, quiet = await serve(True, access_lines=False)
    plain_us, observed_us, quiet_us = [], [], []
    for _ in range(5):
        plain_us.append(await round_us(plain, args.requests))
        observed_us.append(await round_us(observed, args.requests))
        quiet_us.append(await round_us(quiet, args.requests))
    for runner in (plain_runner, observed_runner, quiet_runner):
        await runner.cleanup()

    registry = Metrics.create().registry
    start = time.perf_counter()
    for _ in range(100):
        generate_latest(registry)
    scrape_ms = (time.perf_counter() - start) / 100 * 1000
    print(json.dumps({
        "requests_per_round": args.requests,
        "plain_cpu_us_per_request": round(statistics.median(plain_us), 1),
        "observed_cpu_us_per_request": round(statistics.median(observed_us), 1),
        "observed_no_access_line_cpu_us_per_request": round(statistics.median(quiet_us), 1),
        "observing_costs_us": round(statistics.median(observed_us) - statistics.median(plain_us), 1),
        "observing_without_access_line_costs_us": round(statistics.median(quiet_us) - statistics.median(plain_us), 1),
        "access_log_lines": sum(1 for _ in log_file.open()),
        "scrape_fresh_registry_ms": round(scrape_ms, 2),
    }))


if __name__ == "__main__":
    asyncio.run(main())
