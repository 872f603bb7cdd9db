"""The one JSON-response helper and the one Matrix error body."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.core.canonical_json import encode_json


def ok(body: Any = None, status: int = 200) -> web.Response:
    """A JSON response; ``None`` is the empty object most Matrix endpoints answer."""
    return web.Response(
        text=encode_json({} if body is None else body), status=status, content_type="application/json",
    )


def error(status: int, errcode: str, message: str, **extra: Any) -> web.Response:
    """The standard error response body (spec: "Standard error response", client-server API)."""
    resp = ok({"errcode": errcode, "error": message, **extra}, status=status)
    if status == 429 and "retry_after_ms" in extra:
        resp.headers["Retry-After"] = str(max(1, int(extra["retry_after_ms"]) // 1000))
    return resp
