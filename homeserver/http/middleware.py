"""Middlewares: Matrix errors and CORS on the root app, a body limit per sub-app.

aiohttp runs the root app's middlewares for every request, including paths no
sub-app matches, so errors and CORS live there; each sub-app adds its own limit
(and the federation sub-app its X-Matrix check) in front of its handlers.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.core import request_id
from homeserver.core.errors import MatrixError, StorageFull, StorageUnavailable
from homeserver.http.responses import error

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

# Spec: "Web Browser Clients" (client-server API) lists these headers for every response.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, x-token",
}


# Header lines longer than this get a Matrix error from ``matrix_errors``. aiohttp's own
# parser limit (``PARSER_LIMITS``, far higher) answers before any middleware runs, with a
# plain-text body, so it is raised to where only a hostile client would reach it.
MAX_HEADER_LINE = 8190
PARSER_LIMITS: dict[str, Any] = {"max_line_size": 65536, "max_field_size": 65536}


def _too_large() -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", "Request body too large")


@web.middleware
async def matrix_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a Matrix JSON error, every response with CORS headers."""
    if request.method == "OPTIONS":  # a CORS preflight: answered on any path, without auth
        return _with_cors(web.Response(status=204))
    try:
        _check_request_head(request)
        resp = await handler(request)
    except (StorageUnavailable, StorageFull) as e:  # an outage the operator must hear of
        log.warning("%s %s: %s: %s", request.method, request.path, e.error, e.detail)
        resp = error(e.status, e.errcode, e.error, **e.extra)
    except MatrixError as e:
        resp = error(e.status, e.errcode, e.error, **e.extra)
    except web.HTTPRequestEntityTooLarge:
        resp = error(413, "M_TOO_LARGE", "Request body too large")
    except web.HTTPMethodNotAllowed:
        resp = error(405, "M_UNRECOGNIZED", "Unrecognized request")
    except web.HTTPNotFound:
        resp = error(404, "M_UNRECOGNIZED", "Unrecognized request")
    except web.HTTPUnauthorized as e:
        if e.content_type == "application/json":  # a user-interactive auth challenge
            resp = web.Response(body=e.body, status=401, content_type="application/json")
        else:
            resp = error(401, "M_UNKNOWN_TOKEN", e.reason)
    except web.HTTPException as e:
        if e.status >= 400:
            resp = error(e.status, "M_UNKNOWN", e.reason)
        else:
            raise
    except Exception:
        # A bug, never an answer a client caused on purpose (issue 18: the fuzz run fails on
        # any). The request id is in the log line and the answer (and the X-Request-Id
        # header), so a user's report finds the trace.
        incident = request_id.current.get() or request_id.new_id()
        log.exception("unhandled error %s in %s %s", incident, request.method, request.path)
        resp = error(500, "M_UNKNOWN", f"Internal server error (request {incident})")
    return _with_cors(resp)


def _check_request_head(request: web.Request) -> None:
    """Refuse what no handler should see: over-long headers, and a path or query whose
    percent-escapes are not UTF-8 (spec "API Standards": all strings are UTF-8; aiohttp
    would pass the undecodable escapes on verbatim)."""
    if len(request.raw_path) > MAX_HEADER_LINE or any(
        len(name) + len(value) + 2 > MAX_HEADER_LINE for name, value in request.raw_headers
    ):
        raise MatrixError(431, "M_TOO_LARGE", "Request header too large")
    path, _, query = request.raw_path.partition("?")
    try:
        urllib.parse.unquote_to_bytes(path).decode("utf-8")
        urllib.parse.unquote_to_bytes(query.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise MatrixError(400, "M_INVALID_PARAM", "The path or query is not UTF-8") from None


def body_limit(max_bytes: int) -> Middleware:
    """Refuse bodies over ``max_bytes`` for one sub-app: by Content-Length before any
    work, and while reading for chunked bodies (aiohttp sizes requests by the root
    app, so the request is re-made with this sub-app's limit)."""

    @web.middleware
    async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_bytes:
            raise _too_large()
        if request.client_max_size != max_bytes:
            request = request.clone(client_max_size=max_bytes)
        return await handler(request)

    return limit_body


def _with_cors(resp: web.StreamResponse) -> web.StreamResponse:
    if not resp.prepared:
        resp.headers.update(CORS_HEADERS)
    return resp
