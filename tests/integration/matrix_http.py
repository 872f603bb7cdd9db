"""A tiny Matrix client for integration tests against real server processes."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp


def q(value: str) -> str:
    return quote(value, safe="")


class MatrixUser:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.s = session
        self.base = base
        self.token = ""
        self.user_id = ""
        self.next_batch: str | None = None

    async def call(self, method: str, path: str, body: Any = None, params: Any = None,
                   expect: int | None = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.s.request(method, f"{self.base}/_matrix/client/v3{path}", json=body,
                                  params=params, headers=headers) as r:
            data = await r.json()
            if expect is not None:
                assert r.status == expect, f"{method} {path}: {r.status} {data}"
            return data

    async def register(self, prefix: str) -> MatrixUser:
        name = f"{prefix}{secrets.token_hex(3)}"
        data = await self.call("POST", "/register", {
            "username": name, "password": "pw", "auth": {"type": "m.login.dummy"},
        })
        self.token, self.user_id = data["access_token"], data["user_id"]
        return self

    async def create_room(self, **body: Any) -> str:
        return (await self.call("POST", "/createRoom", body))["room_id"]

    async def send(self, room: str, text: str) -> str:
        txn = secrets.token_hex(6)
        data = await self.call("PUT", f"/rooms/{q(room)}/send/m.room.message/{txn}",
                               {"msgtype": "m.text", "body": text})
        return data["event_id"]

    async def sync(self, timeout: int = 0) -> dict[str, Any]:
        params = {"timeout": str(timeout)}
        if self.next_batch:
            params["since"] = self.next_batch
        data = await self.call("GET", "/sync", params=params)
        self.next_batch = data["next_batch"]
        return data

    async def sync_until(self, predicate: Callable[[dict[str, Any]], bool], within: float = 30.0) -> dict[str, Any]:
        """Long-poll until a sync response satisfies `predicate` (bounded wait)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            data = await self.sync(timeout=2000)
            if predicate(data):
                return data
        raise AssertionError(f"{self.user_id}: condition not met within {within}s")

    async def messages(self, room: str, limit: int = 100) -> list[dict[str, Any]]:
        data = await self.call("GET", f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": str(limit)})
        return list(reversed(data["chunk"]))

    async def state_ids(self, room: str) -> list[tuple[str, str, str]]:
        state = await self.call("GET", f"/rooms/{q(room)}/state")
        return sorted((e["type"], e["state_key"], e["event_id"]) for e in state)


def timeline_bodies(data: dict[str, Any], room: str) -> list[str]:
    section = data["rooms"]["join"].get(room, {})
    return [e["content"].get("body") for e in section.get("timeline", {}).get("events", [])
            if e["type"] == "m.room.message"]


async def eventually(check: Callable[[], Any], within: float = 30.0, every: float = 0.25) -> Any:
    """Poll an async check until it returns something truthy (bounded)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {within}s (last: {last!r})")
