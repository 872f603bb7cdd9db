"""Shared request helpers for client API handlers: body parsing, auth, paths."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.core.canonical_json import parse_json
from homeserver.core.errors import MatrixError, bad_json, forbidden
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


async def json_body(request: web.Request, allow_empty: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise MatrixError(400, "M_NOT_JSON", "Content not JSON.")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise bad_json("Content must be a JSON object.")
    return body


async def requester(request: web.Request) -> Requester:
    cached = request.get(REQUESTER)
    if cached is not None:
        return cached
    token = token_from_headers(
        request.headers.get("Authorization"), request.headers.get("x-token"),
        request.query.get("access_token"),
    )
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    req = await services(request).auth.authenticate(token)
    request[REQUESTER] = req
    return req


def require_own_user(request: web.Request, user_id: str) -> None:
    """Paths under /user/{userId}/... (filters, account data) are the requester's own."""
    if request.match_info["user_id"] != user_id:
        raise forbidden("You can only access your own data")


def query_int(request: web.Request, name: str, default: int, minimum: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be an integer") from None
    return max(value, minimum)


def str_field(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing {name}")
        return None
    if not isinstance(value, str):
        raise bad_json(f"{name} must be a string")
    return value
