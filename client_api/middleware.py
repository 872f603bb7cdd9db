"""Middlewares: Matrix errors as JSON, CORS on everything, size limits."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.core.canonical_json import encode_json
from homeserver.core.errors import MatrixError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, x-token",
}


def _error(status: int, errcode: str, message: str, **extra: object) -> web.Response:
    resp = web.Response(
        text=encode_json({"errcode": errcode, "error": message, **extra}), status=status,
        content_type="application/json",
    )
    if status == 429 and "retry_after_ms" in extra:
        resp.headers["Retry-After"] = str(max(1, int(extra["retry_after_ms"]) // 1000))  # type: ignore[call-overload]
    return resp


def make_error_middleware(max_request_bytes: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def matrix_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return _with_cors(web.Response(status=204))
        if request.content_length is not None and request.content_length > max_request_bytes:
            return _with_cors(_error(413, "M_TOO_LARGE", "Request body too large"))
        try:
            resp = await handler(request)
        except MatrixError as e:
            resp = _error(e.status, e.errcode, e.error, **e.extra)
        except web.HTTPRequestEntityTooLarge:
            resp = _error(413, "M_TOO_LARGE", "Request body too large")
        except web.HTTPMethodNotAllowed:
            resp = _error(405, "M_UNRECOGNIZED", "Unrecognized request")
        except web.HTTPNotFound:
            resp = _error(404, "M_UNRECOGNIZED", "Unrecognized request")
        except web.HTTPUnauthorized as e:
            if e.content_type == "application/json":  # a user-interactive auth challenge
                resp = web.Response(body=e.body, status=401, content_type="application/json")
            else:
                resp = _error(401, "M_UNKNOWN_TOKEN", e.reason)
        except web.HTTPException as e:
            if e.status >= 400:
                resp = _error(e.status, "M_UNKNOWN", e.reason)
            else:
                raise
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            resp = _error(500, "M_UNKNOWN", "Internal server error")
        return _with_cors(resp)

    return matrix_errors


def _with_cors(resp: web.StreamResponse) -> web.StreamResponse:
    if not resp.prepared:
        resp.headers.update(CORS_HEADERS)
    return resp
