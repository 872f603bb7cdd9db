"""Registration, login, logout, whoami, refresh, devices, password."""

from __future__ import annotations

import secrets
from typing import Any, Literal

import attrs
from aiohttp import web

from client_api.http import (
    appservice_of,
    cs,
    parse_body,
    parse_query,
    rate_limit,
    requester,
    require_own_user,
    services,
)
from homeserver.core.canonical_json import encode_json
from homeserver.core.errors import MatrixError, bad_json, forbidden
from homeserver.http.responses import ok
from homeserver.services.accounts import InvalidRegistrationToken
from homeserver.services.auth import PasswordError, Requester
from homeserver.services.login_tokens import LOGIN_TOKEN

routes = web.RouteTableDef()

APPSERVICE_LOGIN = "m.login.application_service"
_DUMMY_FLOWS = {"flows": [{"stages": ["m.login.dummy"]}], "params": {}}
TOKEN_STAGE = "m.login.registration_token"
_TOKEN_FLOWS = {"flows": [{"stages": [TOKEN_STAGE]}], "params": {}}
_PASSWORD_FLOWS = {"flows": [{"stages": ["m.login.password"]}], "params": {}}

AuthData = dict[str, Any]  # spec "User-interactive authentication API": checked per stage


@attrs.frozen
class RegisterQuery:
    kind: Literal["user", "guest"] = "user"


@attrs.frozen
class RegisterBody:
    username: str | None = None
    password: str | None = None
    device_id: str | None = None
    initial_device_display_name: str | None = None
    inhibit_login: bool = False
    refresh_token: bool = False
    auth: AuthData | None = None
    type: str | None = None  # "m.login.application_service": a service registering a user
    guest_access_token: str | None = None


@attrs.frozen
class AvailableQuery:
    username: str


@attrs.frozen
class LoginBody:
    type: str
    identifier: dict[str, Any] | None = None
    user: str | None = None
    password: str | None = None
    device_id: str | None = None
    initial_device_display_name: str | None = None
    refresh_token: bool = False
    token: Any = None  # m.login.token


@attrs.frozen
class TokenValidityQuery:
    token: str | None = None


@attrs.frozen
class RefreshBody:
    refresh_token: str


@attrs.frozen
class PasswordBody:
    new_password: str
    logout_devices: bool = True
    auth: AuthData | None = None


@attrs.frozen
class DeviceBody:
    display_name: str | None = None


@attrs.frozen
class UiaBody:
    """DELETE /devices/{id} and /account/deactivate: only the auth stage is read."""
    auth: AuthData | None = None
    erase: bool = False
    id_server: str | None = None


def _uia_challenge(
    flows: dict[str, Any], auth: Any, errcode: str | None = None, error: str | None = None,
) -> web.HTTPUnauthorized:
    """The 401 that starts (or continues) user-interactive auth, raised as an exception;
    with `errcode`, the failed stage's error (spec "User-interactive authentication API")."""
    session = auth.get("session") if isinstance(auth, dict) else None
    body = {**flows, "session": session or secrets.token_urlsafe(16)}
    if errcode is not None:
        body.update(errcode=errcode, error=error or "")
    return web.HTTPUnauthorized(text=encode_json(body), content_type="application/json")


@routes.post(cs("/register"))
async def register(request: web.Request) -> web.Response:
    """POST /register: user-interactive auth with a single m.login.dummy stage."""
    kind = parse_query(request, RegisterQuery).kind
    body = await parse_body(request, RegisterBody, allow_empty=kind == "guest")
    accounts = services(request).accounts
    if body.type == APPSERVICE_LOGIN:
        # Spec "Server admin style permissions": the as_token authenticates; no UIA.
        service = appservice_of(request)
        if body.username is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing username")
        await accounts.check_available(body.username, service)
        return ok(await accounts.register(
            body.username, body.password, body.device_id, body.initial_device_display_name,
            body.inhibit_login, body.refresh_token, service=service,
        ))
    if not accounts.registration_enabled:
        raise forbidden("Registration has been disabled")
    if kind == "guest":
        return ok(await accounts.register_guest(body.initial_device_display_name, accounts.guests_allowed))
    if body.guest_access_token is not None:
        # Spec "Guest access": a guest upgrades to a full account, keeping its user id.
        guest = await services(request).auth.authenticate(body.guest_access_token)
        return ok(await accounts.upgrade_guest(
            guest, body.password, body.device_id, body.initial_device_display_name, body.inhibit_login,
        ))
    if body.username is not None:
        await accounts.check_available(body.username)
    token: str | None = None
    if accounts.requires_token:
        # Spec "Token-authenticated registration": the one stage is m.login.registration_token.
        if body.auth is None or body.auth.get("type") != TOKEN_STAGE:
            raise _uia_challenge(_TOKEN_FLOWS, body.auth)
        token = body.auth.get("token")
        if not isinstance(token, str) or not token:
            raise _uia_challenge(_TOKEN_FLOWS, body.auth, "M_MISSING_PARAM", "The stage needs a token")
    elif body.auth is None or body.auth.get("type") != "m.login.dummy":
        raise _uia_challenge(_DUMMY_FLOWS, body.auth)
    await rate_limit(request, "rc_registration")
    try:
        got = await accounts.register(
            body.username, body.password, body.device_id, body.initial_device_display_name,
            body.inhibit_login, body.refresh_token, registration_token=token,
        )
    except InvalidRegistrationToken as e:
        raise _uia_challenge(_TOKEN_FLOWS, body.auth, e.errcode, e.error) from None
    return ok(got)


@routes.get("/v1/register/m.login.registration_token/validity")
async def registration_token_validity(request: web.Request) -> web.Response:
    """GET /v1/register/m.login.registration_token/validity?token="""
    token = parse_query(request, TokenValidityQuery).token
    await rate_limit(request, "rc_registration_token_validity")  # per client IP: no guessing tokens
    if not token:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing token")
    return ok({"valid": await services(request).accounts.registration_token_valid(token)})


@routes.get(cs("/register/available"))
async def register_available(request: web.Request) -> web.Response:
    """GET /register/available?username="""
    username = parse_query(request, AvailableQuery).username
    if not username:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing username")
    await services(request).accounts.check_available(username)
    return ok({"available": True})


@routes.get(cs("/login"))
async def login_flows(request: web.Request) -> web.Response:
    """GET /login"""
    flows: list[dict[str, Any]] = [{"type": "m.login.password"}, {"type": APPSERVICE_LOGIN}]
    if services(request).login_tokens.enabled:
        # Spec "Login: m.login.token": `get_login_token` says POST /login/get_token is offered.
        flows.append({"type": LOGIN_TOKEN, "get_login_token": True})
    return ok({"flows": flows})


@routes.post(cs("/login"))
async def login(request: web.Request) -> web.Response:
    """POST /login with m.login.password (localpart, @user:server or user@server)."""
    body = await parse_body(request, LoginBody)
    if body.type == LOGIN_TOKEN:
        await rate_limit(request, "rc_login.address")
        return ok(await services(request).login_tokens.login(
            body.token, body.device_id, body.initial_device_display_name, body.refresh_token,
        ))
    if body.type not in ("m.login.password", APPSERVICE_LOGIN):
        raise MatrixError(400, "M_UNKNOWN", "Unknown login type")
    user: Any = body.user
    if body.identifier is not None:
        if body.identifier.get("type", "m.id.user") != "m.id.user":
            raise MatrixError(400, "M_UNKNOWN", "Unsupported identifier type")
        user = body.identifier.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_json("identifier.user must be a string")
    if not user:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing user identifier")
    if body.type == APPSERVICE_LOGIN:
        service = appservice_of(request)
        return ok(await services(request).accounts.login_appservice(
            service, user, body.device_id, body.initial_device_display_name, body.refresh_token,
        ))
    if body.password is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing password")
    await rate_limit(request, "rc_login.address")
    account = _login_bucket(request, user)
    await rate_limit(request, "rc_login.account", key=account)
    try:
        return ok(await services(request).accounts.login_password(
            user, body.password, body.device_id, body.initial_device_display_name, body.refresh_token,
        ))
    except PasswordError:
        # Guessing passwords: each failure takes a token; past the burst it is 429 (Synapse's
        # rc_login.failed_attempts).
        await rate_limit(request, "rc_login.failed_attempts", key=account)
        raise


def _login_bucket(request: web.Request, user: str) -> str:
    """One rate-limit bucket per account, whichever form names it (``alice``, ``ALICE``,
    ``@alice:server``): otherwise each spelling would get its own burst of guesses."""
    try:
        return services(request).accounts.resolve_login_user(user).lower()
    except PasswordError:
        return user.lower()


@routes.post(cs("/refresh"))
async def refresh(request: web.Request) -> web.Response:
    """POST /refresh"""
    body = await parse_body(request, RefreshBody)
    return ok(await services(request).auth.refresh(body.refresh_token))


@routes.post(cs("/logout"))
async def logout(request: web.Request) -> web.Response:
    """POST /logout: revoke this token and delete its device."""
    req = await requester(request)
    await services(request).auth.logout(req)
    return ok()


@routes.post(cs("/logout/all"))
async def logout_all(request: web.Request) -> web.Response:
    """POST /logout/all"""
    req = await requester(request)
    await services(request).auth.logout_all(req.user_id)
    return ok()


@routes.get(cs("/account/whoami"))
async def whoami(request: web.Request) -> web.Response:
    """GET /account/whoami"""
    req = await requester(request)
    return ok({"user_id": req.user_id, "device_id": req.device_id, "is_guest": req.is_guest})


@attrs.frozen
class OpenIdBody:
    """POST /user/{userId}/openid/request_token: the spec's body is an empty object."""


@routes.post(cs("/user/{user_id}/openid/request_token"))
async def openid_request_token(request: web.Request) -> web.Response:
    """POST /user/{userId}/openid/request_token: a token a third party checks with our
    federation /openid/userinfo."""
    req = await requester(request)
    require_own_user(request, req.user_id)
    await parse_body(request, OpenIdBody, allow_empty=True)
    return ok(services(request).auth.issue_openid(req.user_id))


@routes.get(cs("/account/3pid"))
async def threepids(request: web.Request) -> web.Response:
    """GET /account/3pid: no third-party ids are supported."""
    await requester(request)
    return ok({"threepids": []})


async def _password_confirmed(request: web.Request, auth: AuthData | None) -> Requester:
    """The requester, once an m.login.password UIA stage proves it is them (else a 401 challenge)."""
    req = await requester(request)
    if auth is None or auth.get("type") != "m.login.password":
        raise _uia_challenge(_PASSWORD_FLOWS, auth)
    accounts = services(request).accounts
    ident = auth.get("identifier")
    who = ident.get("user") if isinstance(ident, dict) else auth.get("user", req.user_id)
    password = auth.get("password")
    if not isinstance(who, str) or not isinstance(password, str):
        raise bad_json("auth needs a user and a password")
    if accounts.resolve_login_user(who) != req.user_id:
        raise forbidden("You can only authenticate as yourself")
    await accounts.verify_password(req.user_id, password)
    return req


@attrs.frozen
class GetTokenBody:
    auth: AuthData | None = None


@routes.post("/v1/login/get_token")
async def get_login_token(request: web.Request) -> web.Response:
    """POST /_matrix/client/v1/login/get_token (UIA m.login.password unless configured off):
    a single-use token another device logs in with (`m.login.token`)."""
    body = await parse_body(request, GetTokenBody, allow_empty=True)
    tokens = services(request).login_tokens
    if not tokens.enabled:
        raise MatrixError(404, "M_UNRECOGNIZED", "Login with an existing session is not enabled")
    req = await _password_confirmed(request, body.auth) if tokens.require_ui_auth else await requester(request)
    await rate_limit(request, "rc_login.account", key=req.user_id)
    return ok(await tokens.mint(req))


@routes.post(cs("/account/password"))
async def change_password(request: web.Request) -> web.Response:
    """POST /account/password (UIA m.login.password) {new_password, logout_devices}"""
    body = await parse_body(request, PasswordBody)
    req = await _password_confirmed(request, body.auth)
    await services(request).accounts.change_password(req, body.new_password, body.logout_devices)
    return ok()


@routes.get(cs("/devices"))
async def list_devices(request: web.Request) -> web.Response:
    """GET /devices"""
    req = await requester(request)
    return ok({"devices": await services(request).devices.list(req.user_id)})


@routes.get(cs("/devices/{device_id}"))
async def get_device(request: web.Request) -> web.Response:
    """GET /devices/{deviceId}"""
    req = await requester(request)
    return ok(await services(request).devices.get(req.user_id, request.match_info["device_id"]))


@routes.put(cs("/devices/{device_id}"))
async def put_device(request: web.Request) -> web.Response:
    """PUT /devices/{deviceId} {display_name}"""
    req = await requester(request)
    body = await parse_body(request, DeviceBody)
    await services(request).devices.rename(req.user_id, request.match_info["device_id"], body.display_name)
    return ok()


@routes.delete(cs("/devices/{device_id}"))
async def delete_device(request: web.Request) -> web.Response:
    """DELETE /devices/{deviceId} (UIA m.login.password)"""
    body = await parse_body(request, UiaBody, allow_empty=True)
    req = await _password_confirmed(request, body.auth)
    await services(request).devices.delete(req.user_id, [request.match_info["device_id"]])
    return ok()


@attrs.frozen
class DeleteDevicesBody:
    devices: list[str]
    auth: AuthData | None = None


@routes.post(cs("/delete_devices"))
async def delete_devices(request: web.Request) -> web.Response:
    """POST /delete_devices {devices} (UIA m.login.password)"""
    body = await parse_body(request, DeleteDevicesBody)
    req = await _password_confirmed(request, body.auth)
    await services(request).devices.delete(req.user_id, body.devices)
    return ok()


@routes.post(cs("/account/deactivate"))
async def deactivate(request: web.Request) -> web.Response:
    """POST /account/deactivate {erase} (UIA m.login.password): leaves every room (and
    rejects every invite), clears the profile when `erase`, then locks the account."""
    body = await parse_body(request, UiaBody, allow_empty=True)
    req = await _password_confirmed(request, body.auth)
    await services(request).accounts.deactivate(req, body.erase)
    # No identity server is ever told of our users' 3PIDs, so there is nothing to unbind.
    return ok({"id_server_unbind_result": "no-support"})
