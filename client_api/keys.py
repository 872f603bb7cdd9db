"""End-to-end encryption: /keys/* and /sendToDevice (spec: client-server API,
"End-to-End Encryption" and "Send-to-Device messaging")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from client_api.account import _password_confirmed
from client_api.http import cs, json_body, requester, services
from homeserver.core.errors import MatrixError, bad_json
from homeserver.http.responses import ok
from homeserver.services.e2e import remote_timeout_s
from homeserver.services.notifier import SyncToken

routes = web.RouteTableDef()


def _user_map(body: dict[str, Any], field: str, value_ok: type | tuple[type, ...]) -> dict[str, Any]:
    raw = body.get(field)
    if not isinstance(raw, dict) or not all(isinstance(k, str) and k.startswith("@") for k in raw):
        raise bad_json(f"{field} must map user ids to values")
    if not all(isinstance(v, value_ok) for v in raw.values()):
        raise bad_json(f"{field} has a value of the wrong type")
    return raw


@routes.post(cs("/keys/upload"))
async def upload(request: web.Request) -> web.Response:
    """POST /keys/upload {device_keys?, one_time_keys?, fallback_keys?}"""
    req = await requester(request)
    body = await json_body(request, allow_empty=True)
    return ok(await services(request).e2e.upload(req, body))


@routes.post(cs("/keys/query"))
async def query(request: web.Request) -> web.Response:
    """POST /keys/query {device_keys: {userId: [deviceId]}, timeout?}"""
    req = await requester(request)
    body = await json_body(request)
    wanted = _user_map(body, "device_keys", list)
    if not all(isinstance(d, str) for devices in wanted.values() for d in devices):
        raise bad_json("device ids must be strings")
    return ok(await services(request).e2e.query(req, wanted, remote_timeout_s(body)))


@routes.post(cs("/keys/claim"))
async def claim(request: web.Request) -> web.Response:
    """POST /keys/claim {one_time_keys: {userId: {deviceId: algorithm}}, timeout?}"""
    await requester(request)
    body = await json_body(request)
    wanted = _user_map(body, "one_time_keys", dict)
    if not all(isinstance(a, str) for devices in wanted.values() for a in devices.values()):
        raise bad_json("algorithms must be strings")
    return ok(await services(request).e2e.claim(wanted, remote_timeout_s(body)))


@routes.get(cs("/keys/changes"))
async def changes(request: web.Request) -> web.Response:
    """GET /keys/changes?from=&to= (sync tokens)"""
    req = await requester(request)
    try:
        tokens = [SyncToken.parse(request.query[name]) for name in ("from", "to")]
    except KeyError:
        raise MatrixError(400, "M_MISSING_PARAM", "from and to are required") from None
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "from and to must be sync tokens") from None
    return ok(await services(request).e2e.changes(req, tokens[0], tokens[1]))


@routes.post(cs("/keys/device_signing/upload"))
async def device_signing_upload(request: web.Request) -> web.Response:
    """POST /keys/device_signing/upload {master_key?, self_signing_key?, user_signing_key?, auth?}

    UIA (m.login.password) once a master key exists; the first upload needs none (as
    the spec allows since v1.11, so clients can bootstrap cross-signing after login)."""
    req = await requester(request)
    body = await json_body(request)
    e2e = services(request).e2e
    if await e2e.has_master_key(req.user_id):
        req = await _password_confirmed(request, body)
    await e2e.upload_cross_signing(req, body)
    return ok()


@routes.post(cs("/keys/signatures/upload"))
async def signatures_upload(request: web.Request) -> web.Response:
    """POST /keys/signatures/upload {userId: {keyIdOrDeviceId: signed object}}"""
    req = await requester(request)
    return ok(await services(request).e2e.upload_signatures(req, await json_body(request)))


@routes.put(cs("/sendToDevice/{event_type}/{txn_id}"))
async def send_to_device(request: web.Request) -> web.Response:
    """PUT /sendToDevice/{eventType}/{txnId} {messages: {userId: {deviceId|*: content}}}"""
    req = await requester(request)
    messages = _user_map(await json_body(request), "messages", dict)
    await services(request).e2e.send_to_device(
        req, request.match_info["event_type"], request.match_info["txn_id"], messages,
    )
    return ok()
