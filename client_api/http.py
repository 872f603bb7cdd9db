"""Shared request helpers for client API handlers: body parsing, auth, paths.

Every endpoint reads its body and query through one schema (docs/inputs.md):
``parse_body(request, Schema)`` and ``parse_query(request, Schema)`` check the JSON (or the
query string) against an attrs class with msgspec and answer a wrong type, a missing field or
a value outside an allowed set with the Matrix error, before any service is called.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from homeserver.core.appservice import AppService
from homeserver.core.errors import MatrixError, bad_json, forbidden

# Re-exported: every client-API module reads its inputs through these (docs/inputs.md).
from homeserver.http.inputs import json_body as json_body
from homeserver.http.inputs import parse_body as parse_body
from homeserver.http.inputs import parse_query as parse_query
from homeserver.http.inputs import validate as validate
from homeserver.services.auth import Requester, token_from_headers
from homeserver.services.container import Services

SERVICES = web.AppKey("services", Services)
REQUESTER = web.RequestKey("requester", Requester)


PREFIX = "/_matrix/client"  # where homeserver.app mounts this sub-app
VERSIONED = "/{_version:(?:v3|r0)}"


def cs(path: str) -> str:
    """A client-server route under v3 and its r0 alias, with an optional trailing slash
    (relative to the sub-app's PREFIX)."""
    return VERSIONED + path + "{_slash:/?}"


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def requester(request: web.Request) -> Requester:
    cached = request.get(REQUESTER)
    if cached is not None:
        return cached
    if "access_token" in request.query and (
        "Authorization" in request.headers or "x-token" in request.headers
    ):
        # Spec "Using access tokens": a token goes in the header or the (deprecated) query
        # string. Two may disagree, so neither is trusted: refused like a missing token (as
        # Synapse does), which clients already handle as an authentication failure.
        raise MatrixError(401, "M_MISSING_TOKEN", "Give the access token in the header or the query, not both")
    token = token_from_headers(
        request.headers.get("Authorization"), request.headers.get("x-token"),
        request.query.get("access_token"),
    )
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    # Spec "Identity assertion": an application service's as_token, acting as `user_id`.
    req = await services(request).appservices.authenticate(token, request.query.get("user_id"))
    if req is None:
        req = await services(request).auth.authenticate(token)
    if req.is_guest and not guest_allowed(request.method, request.path):
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed for this API")
    request[REQUESTER] = req
    return req


def appservice_of(request: web.Request) -> AppService:
    """The application service whose as_token authenticates this request, without the
    masquerading checks: `/register` and `/login` with `m.login.application_service` act
    for a user who may not exist yet (mautrix sends its puppet's `user_id` here)."""
    token = token_from_headers(
        request.headers.get("Authorization"), request.headers.get("x-token"), request.query.get("access_token"),
    )
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "m.login.application_service needs an as_token")
    service = services(request).appservices.by_token(token)
    if service is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "m.login.application_service needs an as_token")
    return service


def guest_allowed(method: str, path: str) -> bool:
    """Spec "Guest access": the client-server endpoints a guest account may use."""
    match = _CLIENT_PATH.match(path)
    rest = match.group(1) if match else path
    return any(m == method and pattern.fullmatch(rest) for m, pattern in _GUEST_ROUTES)


_CLIENT_PATH = re.compile(r"^/_matrix/client/(?:r0|v3|v1)(/.*?)/?$")
_GUEST_ROUTES = [(m, re.compile(p)) for m, p in (
    ("GET", r"/rooms/[^/]+/(state|state/[^/]+(/[^/]*)?|context/[^/]+|event/[^/]+|messages|members|initialSync)"),
    ("GET", r"/sync"), ("GET", r"/events"), ("GET", r"/events/[^/]+"),
    ("GET", r"/profile/[^/]+(/(displayname|avatar_url))?"), ("PUT", r"/profile/[^/]+/(displayname|avatar_url)"),
    ("GET", r"/presence/[^/]+/status"), ("PUT", r"/presence/[^/]+/status"),
    ("POST", r"/rooms/[^/]+/join"), ("POST", r"/join/[^/]+"), ("POST", r"/rooms/[^/]+/leave"),
    ("PUT", r"/rooms/[^/]+/send/m\.room\.message/[^/]+"), ("PUT", r"/sendToDevice/[^/]+/[^/]+"),
    ("GET", r"/keys/changes"), ("POST", r"/keys/(upload|query|claim)"),
    ("GET", r"/devices(/[^/]+)?"), ("PUT", r"/devices/[^/]+"),
    ("GET", r"/account/whoami"), ("GET", r"/capabilities"), ("GET", r"/voip/turnServer"),
    ("PUT", r"/rooms/[^/]+/typing/[^/]+"), ("POST", r"/rooms/[^/]+/receipt/[^/]+/[^/]+"),
    ("POST", r"/rooms/[^/]+/read_markers"),
    ("GET", r"/user/[^/]+/account_data/[^/]+"), ("PUT", r"/user/[^/]+/account_data/[^/]+"),
    ("GET", r"/user/[^/]+/rooms/[^/]+/account_data/[^/]+"), ("PUT", r"/user/[^/]+/rooms/[^/]+/account_data/[^/]+"),
    ("POST", r"/user/[^/]+/filter"), ("GET", r"/user/[^/]+/filter/[^/]+"),
    ("GET", r"/publicRooms"), ("GET", r"/directory/room/[^/]+"), ("GET", r"/pushrules/.*"),
    ("POST", r"/logout"), ("POST", r"/register"),
)]


async def rate_limit(request: web.Request, action: str, req: Requester | None = None, key: str | None = None) -> None:
    """Take a token from ``action``'s bucket (config ``rc_*``): per user when ``req`` is
    given (an override for that user applies; admins are exempt), else per client IP."""
    limiter = services(request).limiter
    if req is not None:
        await limiter.check(action, key or req.user_id, user_id=req.user_id, exempt=not req.rate_limited)
    else:
        await limiter.check(action, key or request.remote or "unknown")


def require_own_user(request: web.Request, user_id: str) -> None:
    """Paths under /user/{userId}/... (filters, account data) are the requester's own."""
    if request.match_info["user_id"] != user_id:
        raise forbidden("You can only access your own data")


def query_int(request: web.Request, name: str, default: int, minimum: int = 0) -> int:
    """Superseded by ``parse_query``; kept while endpoints written alongside it are merged."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be an integer") from None
    return max(value, minimum)


def str_field(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    """Superseded by ``parse_body``; kept while endpoints written alongside it are merged."""
    value = body.get(name)
    if value is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing {name}")
        return None
    if not isinstance(value, str):
        raise bad_json(f"{name} must be a string")
    return value
