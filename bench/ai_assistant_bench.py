"""Chat with the AI assistant's service failing: send latency and /sync wake-up latency
in a group that opted in, for four cases: no assistant, the AI hanging, the AI answering
garbage, the AI's port closed. The assistant runs embedded in the homeserver process (the
worst case: it shares the server's event loop). Prints one JSON object.

    ../.venv/bin/python ai_assistant_bench.py [--messages 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml
from aiohttp import web
from harness import ROOT, Client, free_port, percentile, wait_healthy

AI = "ai-assistant"


async def fake_ai(mode: str) -> tuple[web.AppRunner, int]:
    async def handle(request: web.Request) -> web.Response:
        if mode == "hang":
            await asyncio.sleep(3600)
        return web.Response(text="<html>garbage", content_type="application/json")

    app = web.Application()
    app.router.add_post("/ai", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def run_case(mode: str, messages: int) -> dict[str, Any]:
    port = free_port()
    name = f"localhost:{port}"
    runner = None
    with tempfile.TemporaryDirectory(prefix="tricolor-ai-bench-") as d:
        cfg_path = os.path.join(d, "hs.yaml")
        subprocess.run([sys.executable, "-m", "homeserver", "generate-config", "--server-name", name, "--port",
                        str(port), "-o", cfg_path], check=True, cwd=ROOT, capture_output=True)
        if mode != "none":
            ai_port = free_port()
            if mode in ("hang", "garbage"):
                runner, ai_port = await fake_ai(mode)
            reg = os.path.join(d, "ai.registration.yaml")
            with open(reg, "w") as f:
                yaml.safe_dump({
                    "id": AI, "url": f"http://127.0.0.1:{port}/_tricolor/ai-assistant", "as_token": "bench-as",
                    "hs_token": "bench-hs", "sender_localpart": AI, "rate_limited": False,
                    "namespaces": {"users": [{"exclusive": True, "regex": f"@{AI}:.*"}]},
                }, f)
            with open(os.path.join(d, "ai.yaml"), "w") as f:
                yaml.safe_dump({
                    "homeserver_url": f"http://127.0.0.1:{port}", "registration": reg,
                    "request_timeout_s": 2, "retries": 1,
                    "providers": {"main": {"kind": "simple", "url": f"http://127.0.0.1:{ai_port}/ai"}},
                }, f)
            with open(cfg_path) as f:
                cfg = yaml.safe_load(f)
            cfg["app_services"] = {"config_files": [reg]}
            cfg["ai_assistant"] = {"config_file": os.path.join(d, "ai.yaml")}
            with open(cfg_path, "w") as f:
                yaml.safe_dump(cfg, f)
        with open(cfg_path) as f:
            cfg = yaml.safe_load(f)
        cfg["rc_enabled"] = False  # the bench measures latency, not the message rate limit
        with open(cfg_path, "w") as f:
            yaml.safe_dump(cfg, f)
        env = dict(os.environ, TRICOLOR_BCRYPT_ROUNDS="4", TRICOLOR_LOG_LEVEL="WARNING")
        log = open(os.path.join(d, "hs.log"), "w")
        proc = subprocess.Popen([sys.executable, "-m", "homeserver", "run", "-c", cfg_path], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_healthy(base)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
                return await measure(s, base, mode, name, messages)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            if runner is not None:
                await runner.cleanup()


async def measure(s: aiohttp.ClientSession, base: str, mode: str, name: str, messages: int) -> dict[str, Any]:
    doctor = await Client(s, base).register("doc")
    patient = await Client(s, base).register("pat")
    room = (await doctor.req("POST", "/createRoom", {}))["room_id"]
    r = quote(room, safe="")
    await doctor.req("PUT", f"/rooms/{r}/state/tricolor.ai", {"enabled": True})
    await doctor.req("POST", f"/rooms/{r}/invite", {"user_id": patient.user_id})
    await patient.req("POST", f"/join/{r}", {})
    await doctor.req("PUT", f"/rooms/{r}/state/tricolor.member_role/{quote('user:' + patient.user_id)}", {"role": "PATIENT"})
    if mode != "none":
        assistant = f"@{AI}:{name}"  # invited by the opt-in (homeserver/services/ai_groups.py)
        deadline = time.monotonic() + 30
        while assistant not in (await doctor.req("GET", f"/rooms/{r}/joined_members"))["joined"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the assistant did not join")
            await asyncio.sleep(0.1)
    send, wake = [], []
    since = (await doctor.sync())["next_batch"]
    for i in range(messages):
        waiter = asyncio.create_task(doctor.sync(since, timeout=30000))
        await asyncio.sleep(0.01)  # let the long-poll park
        t = time.perf_counter()
        await patient.send(r, f"symptom {i}")
        send.append((time.perf_counter() - t) * 1000)
        got = await waiter
        wake.append((time.perf_counter() - t) * 1000)
        since = got["next_batch"]
    return {
        "send_ms": {"p50": round(percentile(send, 50), 2), "p95": round(percentile(send, 95), 2)},
        "sync_wake_ms": {"p50": round(percentile(wake, 50), 2), "p95": round(percentile(wake, 95), 2)},
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100)
    args = ap.parse_args()
    out = {"messages": args.messages}
    for mode in ("none", "hang", "garbage", "killed"):
        out[mode] = await run_case(mode, args.messages)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
