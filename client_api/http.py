"""Shared request helpers for client API handlers: body parsing, auth, paths.

Every endpoint reads its body and query through one schema (docs/inputs.md):
``parse_body(request, Schema)`` and ``parse_query(request, Schema)`` check the JSON (or the
query string) against an attrs class with msgspec and answer a wrong type, a missing field or
a value outside an allowed set with the Matrix error, before any service is called.
"""

from __future__ import annotations

import keyword
import re
import typing
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from homeserver.core.appservice import AppService
from homeserver.core.canonical_json import parse_json
from homeserver.core.errors import MatrixError, bad_json, forbidden
from homeserver.services.auth import Requester, token_from_headers
from homeserver.services.container import Services

T = TypeVar("T")

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


async def json_body(
    request: web.Request, allow_empty: bool = False, allow_floats: bool = False,
) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise MatrixError(400, "M_NOT_JSON", "Content not JSON.")
    body = parse_json(raw, allow_floats)
    if not isinstance(body, dict):
        raise bad_json("Content must be a JSON object.")
    return body


def validate(value: object, schema: type[T], *, errcode: str = "M_BAD_JSON", strict: bool = True) -> T:
    """``value`` as a ``schema`` instance, or the Matrix error naming what was wrong.

    A missing required field is M_MISSING_PARAM; a value outside a ``Literal`` set is
    M_INVALID_PARAM; any other mismatch (a string where a boolean belongs) is ``errcode``.
    Unknown fields are ignored, as the spec lets clients send more than an endpoint reads.
    """
    try:
        return msgspec.convert(value, schema, strict=strict)
    except msgspec.ValidationError as e:
        message = str(e)
        if message.startswith("Object missing required field"):
            raise MatrixError(400, "M_MISSING_PARAM", message) from None
        if message.startswith("Invalid enum value"):
            raise MatrixError(400, "M_INVALID_PARAM", message) from None
        raise MatrixError(400, errcode, message) from None


async def parse_body(request: web.Request, schema: type[T], allow_empty: bool = False) -> T:
    """The JSON object body checked against ``schema`` (spec: wrong types are M_BAD_JSON)."""
    return validate(await json_body(request, allow_empty), schema)


def parse_query(request: web.Request, schema: type[T]) -> T:
    """The query string checked against ``schema``: strings become the declared ints and
    booleans ("true"/"false"), ``list`` fields collect repeated parameters, a parameter
    named by a Python keyword fills the field with a trailing underscore (``from`` ->
    ``from_``), and anything else is M_INVALID_PARAM."""
    lists = {name for name, hint in typing.get_type_hints(schema).items() if typing.get_origin(hint) is list}
    raw: dict[str, Any] = {}
    for key in request.query.keys():
        name = key + "_" if keyword.iskeyword(key) else key
        raw[name] = request.query.getall(key) if name in lists else request.query[key]
    return validate(raw, schema, errcode="M_INVALID_PARAM", strict=False)


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
