"""A small client of the WebSocket sync transport (docs/websocket.md), written from the
protocol document, for the API and integration tests. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

WS_PATH = "/_matrix/client/unstable/org.tricolor.ws/connect"
WAIT = 15.0


class Closed(AssertionError):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"socket closed: {code} {reason}")
        self.code = code
        self.reason = reason


class WsClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []  # every frame received, in order
        self._next_id = 0
        self.ready: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls, session: Any, url: str, token: str | None, *, since: str | None = None,
        header: bool = False, filter: str | None = None, presence: str | None = None,
        ready: bool = True, heartbeat: float | None = None,
    ) -> WsClient:
        """`session` is an aiohttp ClientSession or TestClient (then `url` is a path);
        `heartbeat`: send WebSocket pings this often (seconds), which keep the socket alive."""
        params = {}
        headers = {}
        if header:
            headers["Authorization"] = f"Bearer {token}"
            if since:
                params["since"] = since
        ws = await session.ws_connect(url, headers=headers, params=params, autoping=True, heartbeat=heartbeat)
        client = cls(ws)
        if not header and token is not None:
            hello: dict[str, Any] = {"op": "auth", "access_token": token}
            if since:
                hello["since"] = since
            if filter:
                hello["filter"] = filter
            if presence:
                hello["set_presence"] = presence
            await ws.send_str(json.dumps(hello))
        if ready:
            client.ready = await client.next_frame(lambda f: f["op"] == "ready")
        return client

    async def _receive(self, timeout: float) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code = msg.data if msg.type is aiohttp.WSMsgType.CLOSE else self.ws.close_code
            raise Closed(code, str(msg.extra or ""))
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        self.frames.append(frame)
        return frame

    async def next_frame(self, pred: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self._receive(max(0.01, deadline - loop.time()))
            if pred(frame):
                return frame

    async def closed(self, timeout: float = WAIT) -> Closed:
        """Read until the server closes; the close code and reason."""
        try:
            while True:
                await self._receive(timeout)
        except Closed as c:
            return c

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """An op with an id; its `result`/`pong`/`error` frame."""
        self._next_id += 1
        msg_id = f"r{self._next_id}"
        await self.ws.send_str(json.dumps({"op": op, "id": msg_id, **fields}))
        return await self.next_frame(lambda f: f.get("id") == msg_id and f["op"] in ("result", "pong", "error"))

    async def sync_frame(self, pred: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        return await self.next_frame(lambda f: f["op"] == "sync" and pred(f), timeout)

    async def ack(self, frame: dict[str, Any]) -> None:
        got = await self.request("ack", next_batch=frame["next_batch"])
        assert got["op"] == "result", got

    async def close(self) -> None:
        await self.ws.close()


def bodies_in(frame: dict[str, Any], room: str) -> list[str]:
    section = frame.get("rooms", {}).get("join", {}).get(room, {})
    return [e["content"].get("body") for e in section.get("timeline", {}).get("events", [])
            if e["type"] == "m.room.message"]


def all_bodies(frames: list[dict[str, Any]], room: str) -> list[str]:
    return [b for f in frames if f["op"] == "sync" for b in bodies_in(f, room)]


def typing_in(frame: dict[str, Any]) -> bool:
    return any(
        e["type"] == "m.typing"
        for s in frame.get("rooms", {}).get("join", {}).values()
        for e in s.get("ephemeral", {}).get("events", [])
    )
