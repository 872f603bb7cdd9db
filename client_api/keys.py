"""End-to-end encryption: /keys/* and /sendToDevice (spec: client-server API,
"End-to-End Encryption" and "Send-to-Device messaging")."""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

from client_api.account import AuthData, _password_confirmed
from client_api.http import cs, json_body, parse_body, parse_query, requester, services
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok
from homeserver.services.e2e import REMOTE_TIMEOUT_MS
from homeserver.services.notifier import SyncToken

routes = web.RouteTableDef()


@attrs.frozen
class UploadBody:
    # Keys are signed objects checked by the service (core.e2e_keys); a one-time key may be a string.
    device_keys: dict[str, Any] | None = None
    one_time_keys: dict[str, dict[str, Any] | str] | None = None
    fallback_keys: dict[str, dict[str, Any] | str] | None = None


@attrs.frozen
class QueryBody:
    device_keys: dict[str, list[str]]
    timeout: int = REMOTE_TIMEOUT_MS


@attrs.frozen
class ClaimBody:
    one_time_keys: dict[str, dict[str, str]]
    timeout: int = REMOTE_TIMEOUT_MS


@attrs.frozen
class ChangesQuery:
    from_: str
    to: str


@attrs.frozen
class DeviceSigningBody:
    master_key: dict[str, Any] | None = None
    self_signing_key: dict[str, Any] | None = None
    user_signing_key: dict[str, Any] | None = None
    auth: AuthData | None = None


@attrs.frozen
class SendToDeviceBody:
    messages: dict[str, dict[str, dict[str, Any]]]


def _timeout_s(ms: int) -> float:
    """How long to wait for other servers: the request's `timeout`, at most a minute."""
    return max(0, min(ms, 60_000)) / 1000


@routes.post(cs("/keys/upload"))
async def upload(request: web.Request) -> web.Response:
    """POST /keys/upload {device_keys?, one_time_keys?, fallback_keys?}"""
    req = await requester(request)
    body = await parse_body(request, UploadBody, allow_empty=True)
    return ok(await services(request).e2e.upload(req, attrs.asdict(body)))


@routes.post(cs("/keys/query"))
async def query(request: web.Request) -> web.Response:
    """POST /keys/query {device_keys: {userId: [deviceId]}, timeout?}"""
    req = await requester(request)
    body = await parse_body(request, QueryBody)
    return ok(await services(request).e2e.query(req, body.device_keys, _timeout_s(body.timeout)))


@routes.post(cs("/keys/claim"))
async def claim(request: web.Request) -> web.Response:
    """POST /keys/claim {one_time_keys: {userId: {deviceId: algorithm}}, timeout?}"""
    await requester(request)
    body = await parse_body(request, ClaimBody)
    return ok(await services(request).e2e.claim(body.one_time_keys, _timeout_s(body.timeout)))


@routes.get(cs("/keys/changes"))
async def changes(request: web.Request) -> web.Response:
    """GET /keys/changes?from=&to= (sync tokens)"""
    req = await requester(request)
    params = parse_query(request, ChangesQuery)
    try:
        tokens = [SyncToken.parse(t) for t in (params.from_, params.to)]
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "from and to must be sync tokens") from None
    return ok(await services(request).e2e.changes(req, tokens[0], tokens[1]))


@routes.post(cs("/keys/device_signing/upload"))
async def device_signing_upload(request: web.Request) -> web.Response:
    """POST /keys/device_signing/upload {master_key?, self_signing_key?, user_signing_key?, auth?}

    UIA (m.login.password) once a master key exists; the first upload needs none (as
    the spec allows since v1.11, so clients can bootstrap cross-signing after login)."""
    req = await requester(request)
    body = await parse_body(request, DeviceSigningBody)
    e2e = services(request).e2e
    if await e2e.has_master_key(req.user_id):
        req = await _password_confirmed(request, body.auth)
    await e2e.upload_cross_signing(req, attrs.asdict(body))
    return ok()


@routes.post(cs("/keys/signatures/upload"))
async def signatures_upload(request: web.Request) -> web.Response:
    """POST /keys/signatures/upload {userId: {keyIdOrDeviceId: signed object}}: any object
    by definition, each signed object checked by the service."""
    req = await requester(request)
    return ok(await services(request).e2e.upload_signatures(req, await json_body(request)))


@routes.put(cs("/sendToDevice/{event_type}/{txn_id}"))
async def send_to_device(request: web.Request) -> web.Response:
    """PUT /sendToDevice/{eventType}/{txnId} {messages: {userId: {deviceId|*: content}}}"""
    req = await requester(request)
    body = await parse_body(request, SendToDeviceBody)
    await services(request).e2e.send_to_device(
        req, request.match_info["event_type"], request.match_info["txn_id"], body.messages,
    )
    return ok()
