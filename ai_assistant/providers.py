"""AI service clients: the design's simple format and the OpenAI-compatible chat API.

Both take the patient's message and the room's history (`[{"role": "user"|"assistant",
"content": ...}]`) and return the reply; streaming ones also call `on_partial` with the
text so far. Every failure is a ProviderError that says whether repeating the request is
safe (nothing was shown yet and the service may answer next time: unreachable, 429, 5xx,
timeout) or not (garbage, 4xx).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from ai_assistant.config import ProviderConfig

Partial = Callable[[str], Awaitable[None]]


class ProviderError(Exception):
    def __init__(self, message: str, *, retryable: bool, response: Any = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.response = response


class Provider(Protocol):
    name: str

    def request_body(self, message: str, history: list[dict[str, str]]) -> dict[str, Any]: ...

    async def reply(self, body: dict[str, Any], on_partial: Partial) -> tuple[str, Any]:
        """(reply text, the raw response kept in the record)."""
        ...


def _headers(cfg: ProviderConfig) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    return headers


def _status_error(status: int, text: str) -> ProviderError:
    return ProviderError(
        f"AI service answered HTTP {status}", retryable=status == 429 or status >= 500, response=text[:2000],
    )


class SimpleProvider:
    """`POST {url}` `{"message": ..., "history": [...]}` -> `{"reply": ...}` (the design's format)."""

    def __init__(self, cfg: ProviderConfig, session: aiohttp.ClientSession, timeout_s: float) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def request_body(self, message: str, history: list[dict[str, str]]) -> dict[str, Any]:
        return {"message": message, "history": history}

    async def reply(self, body: dict[str, Any], on_partial: Partial) -> tuple[str, Any]:
        try:
            async with self._session.post(
                self._cfg.url, json=body, headers=_headers(self._cfg), timeout=self._timeout,
            ) as resp:
                text = await resp.text(errors="replace")
                if resp.status != 200:
                    raise _status_error(resp.status, text)
        except TimeoutError:
            raise ProviderError("AI service timed out", retryable=True) from None
        except aiohttp.ClientError as e:
            raise ProviderError(f"AI service unreachable: {e}", retryable=True) from None
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ProviderError("AI service answered with malformed JSON", retryable=False, response=text[:2000]) from None
        reply = parsed.get("reply") if isinstance(parsed, dict) else None
        if not isinstance(reply, str) or not reply.strip():
            raise ProviderError("AI service answer has no reply", retryable=False, response=parsed)
        return reply, parsed


class OpenAIProvider:
    """OpenAI-compatible `POST /v1/chat/completions`, with `stream: true` read as server-sent
    events (`data: {...choices[0].delta.content}` lines, ending with `data: [DONE]`)."""

    def __init__(
        self, cfg: ProviderConfig, session: aiohttp.ClientSession, timeout_s: float, stall_s: float,
    ) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._session = session
        self._timeout_s = timeout_s
        self._stall_s = stall_s

    def request_body(self, message: str, history: list[dict[str, str]]) -> dict[str, Any]:
        messages = [{"role": "system", "content": self._cfg.system_prompt}] if self._cfg.system_prompt else []
        messages += [*history, {"role": "user", "content": message}]
        body: dict[str, Any] = {"model": self._cfg.model, "messages": messages}
        if self._cfg.stream:
            body["stream"] = True
        return body

    async def reply(self, body: dict[str, Any], on_partial: Partial) -> tuple[str, Any]:
        try:
            return await asyncio.wait_for(self._reply(body, on_partial), self._timeout_s)
        except TimeoutError:
            raise ProviderError("AI service timed out", retryable=True) from None

    async def _reply(self, body: dict[str, Any], on_partial: Partial) -> tuple[str, Any]:
        # sock_read: the stall watchdog; no bytes for that long ends the request.
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._stall_s if body.get("stream") else None)
        shown = False
        try:
            async with self._session.post(self._cfg.url, json=body, headers=_headers(self._cfg), timeout=timeout) as resp:
                if resp.status != 200:
                    raise _status_error(resp.status, await resp.text(errors="replace"))
                if not body.get("stream"):
                    text = await resp.text(errors="replace")
                    try:
                        parsed = json.loads(text)
                        reply = parsed["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        raise ProviderError(
                            "AI service answered with malformed JSON", retryable=False, response=text[:2000],
                        ) from None
                    if not isinstance(reply, str) or not reply.strip():
                        raise ProviderError("AI service answer has no content", retryable=False, response=parsed)
                    return reply, parsed
                parts: list[str] = []
                done = False
                async for raw_line in resp.content:
                    line = raw_line.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        delta = json.loads(data)["choices"][0].get("delta", {}).get("content") or ""
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                        raise ProviderError(
                            "AI service stream has a malformed chunk", retryable=not shown and not parts,
                            response="".join(parts),
                        ) from None
                    if delta:
                        parts.append(delta)
                        shown = True
                        await on_partial("".join(parts))
                text = "".join(parts)
                if not done and not text:
                    raise ProviderError("AI service stream ended without an answer", retryable=True)
                if not text.strip():
                    raise ProviderError("AI service answer has no content", retryable=False)
                return text, {"streamed": True, "content": text, "complete": done}
        except TimeoutError:
            raise ProviderError("AI service stream stalled", retryable=not shown, response=None) from None
        except aiohttp.ClientError as e:
            raise ProviderError(f"AI service unreachable: {e}", retryable=not shown) from None


def make_provider(
    cfg: ProviderConfig, session: aiohttp.ClientSession, timeout_s: float, stall_s: float,
) -> Provider:
    if cfg.kind == "simple":
        return SimpleProvider(cfg, session, timeout_s)
    return OpenAIProvider(cfg, session, timeout_s, stall_s)
