"""Third-party identifiers (spec: "Adding Account Administrative Contact Information").

This server has no identity-server support and sends no email or SMS, so no 3PID is ever
validated or bound. Every endpoint still validates its body and answers with the spec's
error for that situation, never 404:
- requestToken for registration or a new 3PID: 403 M_THREEPID_DENIED;
- requestToken for a password reset: 400 M_THREEPID_NOT_FOUND (no account has a 3PID);
- add (and the deprecated POST /account/3pid): 400 M_THREEPID_AUTH_FAILED (no session
  can have been validated);
- bind: 400 M_SERVER_NOT_TRUSTED (we trust no identity server);
- delete and unbind: 200 with `id_server_unbind_result: "no-support"` (nothing is bound).
"""

from __future__ import annotations

import attrs
from aiohttp import web

from client_api.http import cs, parse_body, rate_limit, requester
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()

_MEDIUM = "{medium:(?:email|msisdn)}"


@attrs.frozen
class EmailTokenBody:
    """Spec: "RequestEmailToken"."""
    client_secret: str
    email: str
    send_attempt: int
    next_link: str | None = None
    id_server: str | None = None
    id_access_token: str | None = None


@attrs.frozen
class MsisdnTokenBody:
    """Spec: "RequestMsisdnToken"."""
    client_secret: str
    country: str
    phone_number: str
    send_attempt: int
    next_link: str | None = None
    id_server: str | None = None
    id_access_token: str | None = None


async def _token_request(request: web.Request) -> None:
    schema = EmailTokenBody if request.match_info["medium"] == "email" else MsisdnTokenBody
    await parse_body(request, schema)
    await rate_limit(request, "rc_3pid_validation")  # per client IP, as Synapse


def _denied() -> MatrixError:
    return MatrixError(403, "M_THREEPID_DENIED", "This server does not accept third-party identifiers")


@routes.post(cs(f"/register/{_MEDIUM}/requestToken"))
async def register_request_token(request: web.Request) -> web.Response:
    """POST /register/{email|msisdn}/requestToken"""
    await _token_request(request)
    raise _denied()


@routes.post(cs(f"/account/3pid/{_MEDIUM}/requestToken"))
async def add_request_token(request: web.Request) -> web.Response:
    """POST /account/3pid/{email|msisdn}/requestToken"""
    await _token_request(request)
    raise _denied()


@routes.post(cs(f"/account/password/{_MEDIUM}/requestToken"))
async def password_request_token(request: web.Request) -> web.Response:
    """POST /account/password/{email|msisdn}/requestToken"""
    await _token_request(request)
    raise MatrixError(400, "M_THREEPID_NOT_FOUND", "No account has this third-party identifier")


@attrs.frozen
class SessionBody:
    client_secret: str
    sid: str
    auth: dict[str, object] | None = None


@attrs.frozen
class LegacyAddBody:
    three_pid_creds: SessionBody


def _auth_failed() -> MatrixError:
    return MatrixError(400, "M_THREEPID_AUTH_FAILED", "No validated third-party identifier session")


@routes.post(cs("/account/3pid"))
async def add_threepid_legacy(request: web.Request) -> web.Response:
    """POST /account/3pid {three_pid_creds} (deprecated)"""
    await requester(request)
    await parse_body(request, LegacyAddBody)
    raise _auth_failed()


@routes.post(cs("/account/3pid/add"))
async def add_threepid(request: web.Request) -> web.Response:
    """POST /account/3pid/add {client_secret, sid}"""
    await requester(request)
    await parse_body(request, SessionBody)
    raise _auth_failed()


@attrs.frozen
class BindBody:
    client_secret: str
    sid: str
    id_server: str
    id_access_token: str


@routes.post(cs("/account/3pid/bind"))
async def bind_threepid(request: web.Request) -> web.Response:
    """POST /account/3pid/bind {client_secret, id_server, id_access_token, sid}"""
    await requester(request)
    await parse_body(request, BindBody)
    raise MatrixError(400, "M_SERVER_NOT_TRUSTED", "This server does not use identity servers")


@attrs.frozen
class ThreePidBody:
    medium: str
    address: str
    id_server: str | None = None


@routes.post(cs("/account/3pid/{action:(?:delete|unbind)}"))
async def delete_threepid(request: web.Request) -> web.Response:
    """POST /account/3pid/delete and /account/3pid/unbind {medium, address, id_server}"""
    await requester(request)
    await parse_body(request, ThreePidBody)
    return ok({"id_server_unbind_result": "no-support"})
