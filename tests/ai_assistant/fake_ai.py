"""A local fake AI service for the assistant's tests (aiohttp). One `mode` at a time:

- answer: the simple format answers `{"reply": "echo: <message>"}`; OpenAI-compatible
  without streaming answers one choice with the same text;
- stream: OpenAI-compatible server-sent events, `chunks` pieces `delay_s` apart;
- delay: waits `delay_s`, then answers;
- hang: never answers (until the test ends);
- stall: streams the first 5 pieces, then sends nothing more (until the test ends);
- error500: HTTP 500; malformed: HTTP 200 with a body that is not JSON.
Every request body is kept in `requests`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import attrs
from aiohttp import web


@attrs.define
class FakeAI:
    mode: str = "answer"
    url: str = ""
    delay_s: float = 0.0
    chunks: int = 30
    requests: list[dict[str, Any]] = attrs.field(factory=list)
    release: asyncio.Event = attrs.field(factory=asyncio.Event)

    @staticmethod
    def message_of(body: dict[str, Any]) -> str:
        if "message" in body:
            return str(body["message"])
        return str(body["messages"][-1]["content"])

    def full_text(self, message: str) -> str:
        return " ".join(f"w{i}" for i in range(self.chunks)) + f" ({message})"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        message = self.message_of(body)
        openai = request.path.endswith("/chat/completions")
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "delay":
            await asyncio.sleep(self.delay_s)
        if self.mode == "error500":
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "malformed":
            return web.Response(text="<html>not json", content_type="application/json")
        if self.mode in ("stream", "stall") and openai and body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            words = self.full_text(message).split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(self.delay_s)
                if self.mode == "stall" and i == 4:
                    await self.release.wait()
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        reply = f"echo: {message}"
        if openai:
            return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]})
        return web.json_response({"reply": reply})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/simple", self.handle)
        app.router.add_post("/v1/chat/completions", self.handle)
        return app
