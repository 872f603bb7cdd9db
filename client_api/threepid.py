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

from typing import Any

from aiohttp import web

from client_api.http import cs, json_body, requester, str_field
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()

_MEDIUM = "{medium:(?:email|msisdn)}"


def _token_request(body: dict[str, Any], medium: str) -> None:
    """The fields every requestToken body carries (spec: "RequestEmailToken"/"RequestMsisdnToken")."""
    str_field(body, "client_secret")
    if medium == "email":
        str_field(body, "email")
    else:
        str_field(body, "country")
        str_field(body, "phone_number")
    attempt = body.get("send_attempt")
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        raise MatrixError(400, "M_BAD_JSON" if attempt is not None else "M_MISSING_PARAM", "send_attempt must be an integer")
    for name in ("id_server", "id_access_token", "next_link"):
        str_field(body, name, required=False)


def _denied() -> MatrixError:
    return MatrixError(403, "M_THREEPID_DENIED", "This server does not accept third-party identifiers")


@routes.post(cs(f"/register/{_MEDIUM}/requestToken"))
async def register_request_token(request: web.Request) -> web.Response:
    """POST /register/{email|msisdn}/requestToken"""
    _token_request(await json_body(request), request.match_info["medium"])
    raise _denied()


@routes.post(cs(f"/account/3pid/{_MEDIUM}/requestToken"))
async def add_request_token(request: web.Request) -> web.Response:
    """POST /account/3pid/{email|msisdn}/requestToken"""
    _token_request(await json_body(request), request.match_info["medium"])
    raise _denied()


@routes.post(cs(f"/account/password/{_MEDIUM}/requestToken"))
async def password_request_token(request: web.Request) -> web.Response:
    """POST /account/password/{email|msisdn}/requestToken"""
    _token_request(await json_body(request), request.match_info["medium"])
    raise MatrixError(400, "M_THREEPID_NOT_FOUND", "No account has this third-party identifier")


def _session_fields(body: dict[str, Any]) -> None:
    str_field(body, "client_secret")
    str_field(body, "sid")


@routes.post(cs("/account/3pid"))
async def add_threepid_legacy(request: web.Request) -> web.Response:
    """POST /account/3pid {three_pid_creds} (deprecated)"""
    await requester(request)
    body = await json_body(request)
    creds = body.get("three_pid_creds")
    if not isinstance(creds, dict):
        raise MatrixError(400, "M_BAD_JSON" if creds is not None else "M_MISSING_PARAM", "three_pid_creds must be an object")
    _session_fields(creds)
    raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "No validated third-party identifier session")


@routes.post(cs("/account/3pid/add"))
async def add_threepid(request: web.Request) -> web.Response:
    """POST /account/3pid/add {client_secret, sid}"""
    await requester(request)
    _session_fields(await json_body(request))
    raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "No validated third-party identifier session")


@routes.post(cs("/account/3pid/bind"))
async def bind_threepid(request: web.Request) -> web.Response:
    """POST /account/3pid/bind {client_secret, id_server, id_access_token, sid}"""
    await requester(request)
    body = await json_body(request)
    _session_fields(body)
    str_field(body, "id_server")
    str_field(body, "id_access_token")
    raise MatrixError(400, "M_SERVER_NOT_TRUSTED", "This server does not use identity servers")


def _threepid(body: dict[str, Any]) -> None:
    str_field(body, "medium")
    str_field(body, "address")
    str_field(body, "id_server", required=False)


@routes.post(cs("/account/3pid/{action:(?:delete|unbind)}"))
async def delete_threepid(request: web.Request) -> web.Response:
    """POST /account/3pid/delete and /account/3pid/unbind {medium, address, id_server}"""
    await requester(request)
    _threepid(await json_body(request))
    return ok({"id_server_unbind_result": "no-support"})
