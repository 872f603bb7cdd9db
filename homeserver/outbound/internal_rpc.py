"""Forwarded room writes between workers of one homeserver (docs/workers.md): the
client half of client_api/internal.py. Internal HTTP with a shared secret was chosen
over RabbitMQ RPC because every worker already serves HTTP, Redis tells where each one
listens, and a deployment without RabbitMQ must still have workers."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from homeserver.core.errors import MatrixError
from homeserver.core.shards import NOT_OWNER, SECRET_HEADER, NotOwner, Unreachable

PATH = "/_tricolor/internal/v1/writer/"


class HttpWriterRpc:
    def __init__(self, secret: str, timeout_s: float = 60.0) -> None:
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def call(self, url: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                url.rstrip("/") + PATH + method, data=json.dumps(body),
                headers={SECRET_HEADER: self._secret, "Content-Type": "application/json"},
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(f"{url}: {exc}") from exc
        try:
            answer = json.loads(text)
        except ValueError:
            raise Unreachable(f"{url}: answered {status} without JSON") from None
        if status == 200:
            return dict(answer)
        if answer.get("errcode") == NOT_OWNER:
            raise NotOwner(url)
        raise MatrixError(status, str(answer.get("errcode", "M_UNKNOWN")), str(answer.get("error", "")),
                          **{k: v for k, v in answer.items() if k not in ("errcode", "error")})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
