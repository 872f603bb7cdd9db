"""The runner every listener uses: aiohttp's, with Matrix errors for requests that never
reach a handler.

aiohttp answers a request it cannot parse (a header line over ``max_field_size``, a bad
request line) from its connection handler, before any middleware, with a plain-text body.
Spec "API Standards": every error is a JSON object with ``errcode`` and ``error``, so
``MatrixRequestHandler.handle_error`` renders those answers as Matrix errors too. aiohttp
has no public hook for its connection-handler class; the two ``__class__`` swaps below are
the narrowest seam (same slots, only ``handle_error`` differs), and
tests/homeserver/http/test_server.py breaks if an aiohttp upgrade moves it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from homeserver.http.responses import error


class MatrixRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs; checks nothing was sent
        if isinstance(exc, LineTooLong) or (status == 400 and "too long" in str(exc or "").lower()):
            # RFC 6585 §5: 431 for header fields too large.
            resp = error(431, "M_TOO_LARGE", "Request header too large")
        elif status >= 500:
            resp = error(status, "M_UNKNOWN", "Internal server error")
        else:
            resp = error(plain.status, "M_UNKNOWN", "Malformed HTTP request")
        resp.force_close()  # the stream cannot be trusted after a parse error
        return resp


class _MatrixServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = MatrixRequestHandler
        return handler


class MatrixAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer unparseable requests with Matrix errors."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _MatrixServer
        return server
