"""X-Matrix request authentication for the federation sub-app.

Spec: "Request Authentication" (server-server API). Runs before any handler: a
request either carries a valid signature of its origin over {method, raw uri,
origin, destination=us, content?}, or it is answered here with a Matrix JSON
error. Handlers read the authenticated origin from ``request[ORIGIN]`` and never
trust ``origin`` fields in bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from federation.outbound.xmatrix import (
    XMatrixAuth,
    is_xmatrix,
    parse_xmatrix_header,
    request_json_for_signing,
)
from homeserver.core.canonical_json import parse_federation_json
from homeserver.core.errors import MatrixError
from homeserver.http.responses import error
from homeserver.services.ports import FederationRequestError, KeyringPort

log = logging.getLogger(__name__)

ORIGIN = web.RequestKey("origin", str)

FEDERATION_PREFIX = "/_matrix/federation/"
# Spec: these use no X-Matrix (/version is public; the other two carry their own auth).
UNAUTHENTICATED_PATHS = frozenset({
    "/_matrix/federation/v1/version",
    "/_matrix/federation/v1/openid/userinfo",
    "/_matrix/federation/v1/3pid/onbind",
})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _raw_target(request: web.Request) -> str:
    """The request target exactly as received (percent-encoding and query untouched)."""
    raw = request.raw_path
    # Absolute-form targets ("GET https://host/path") carry a scheme and host: drop them.
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


def needs_auth(path: str) -> bool:
    return path.startswith(FEDERATION_PREFIX) and path.rstrip("/") not in UNAUTHENTICATED_PATHS


async def authenticate(
    request: web.Request, server_name: str, keyring: KeyringPort,
    allowed: Callable[[str], bool] | None = None,
) -> str:
    """The authenticated origin of ``request``; MatrixError (401/403/400) otherwise.
    A server outside the domain lists (``allowed``) is refused before its keys are fetched."""
    headers = [h for h in request.headers.getall("Authorization", []) if is_xmatrix(h)]
    if not headers:
        raise MatrixError(401, "M_UNAUTHORIZED", "Missing X-Matrix Authorization header")
    try:
        auths: list[XMatrixAuth] = [parse_xmatrix_header(h) for h in headers]
    except ValueError as e:
        raise MatrixError(401, "M_UNAUTHORIZED", f"Malformed X-Matrix header: {e}") from e
    origin = auths[0].origin
    if any(a.origin != origin for a in auths):
        raise MatrixError(401, "M_UNAUTHORIZED", "X-Matrix headers name different origins")
    if any(a.destination is not None and a.destination != server_name for a in auths):
        raise MatrixError(401, "M_UNAUTHORIZED", "X-Matrix destination is not this server")
    if allowed is not None and not allowed(origin):
        raise MatrixError(403, "M_FORBIDDEN", "Federation with your server is not allowed")

    content: Any = None
    if request.body_exists:
        raw = await request.read()  # aiohttp caches it: the handler reads the same bytes
        if raw.strip():
            content = parse_federation_json(raw)  # 400 M_NOT_JSON / M_BAD_JSON; floats kept
    signed = request_json_for_signing(request.method, _raw_target(request), origin, server_name, content)
    signed["signatures"] = {origin: {a.key_id: a.sig for a in auths}}
    try:
        # at_ts=None: the origin's *current* keys only (old_verify_keys never sign requests).
        await keyring.verify_json(signed, origin)
    except FederationRequestError as e:  # the keyring should not leak these; be safe anyway
        raise MatrixError(401, "M_UNAUTHORIZED", f"Cannot fetch keys of {origin}: {e}") from e
    except MatrixError as e:
        raise MatrixError(401, "M_UNAUTHORIZED", f"Invalid X-Matrix signature: {e.error}") from e
    return origin


def make_xmatrix_middleware(
    server_name: str, keyring: KeyringPort, on_origin: Callable[[str], None] | None = None,
    allowed: Callable[[str], bool] | None = None,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """`on_origin` hears of every authenticated peer (the sender retries a peer that is back);
    `allowed` refuses peers outside federation.domain_whitelist / in domain_blacklist."""

    @web.middleware
    async def xmatrix_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if needs_auth(request.path):
            try:
                request[ORIGIN] = await authenticate(request, server_name, keyring, allowed)
            except MatrixError as e:
                if e.status == 401:
                    log.info("rejected federation request %s %s: %s", request.method, request.path, e.error)
                return error(e.status, e.errcode, e.error)
            if on_origin is not None:
                on_origin(request[ORIGIN])
        return await handler(request)

    return xmatrix_auth
