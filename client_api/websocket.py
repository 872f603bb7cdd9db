"""WebSocket sync transport: ``GET /_matrix/client/unstable/org.tricolor.ws/connect``.

The adapter owns the socket: authentication (first frame, or the Authorization header;
never the URL), the heartbeat deadline, parsing client frames and answering them. What
the device receives, and when, is PushSockets' (homeserver/services/push_socket.py).
Protocol: docs/websocket.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

import attrs
import msgspec
from aiohttp import WSMsgType, web

from client_api.ephemeral import put_receipt
from client_api.http import services, validate
from homeserver.core.canonical_json import parse_json
from homeserver.core.errors import MatrixError
from homeserver.services.auth import Requester, token_from_headers
from homeserver.services.container import Services
from homeserver.services.push_socket import (
    CLOSE_BAD_REQUEST,
    CLOSE_HEARTBEAT,
    CLOSE_UNAUTHORIZED,
    PushSession,
    run_guarded,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
PATH = "/unstable/org.tricolor.ws/connect"  # under /_matrix/client
_encode = msgspec.json.Encoder().encode


@attrs.frozen
class Hello:
    """The first frame (`op: auth`), or the query string when the header authenticates."""

    access_token: str | None = None
    since: str | None = None
    filter: str | None = None
    set_presence: Literal["online", "offline", "unavailable"] = "online"


@attrs.frozen
class AckOp:
    next_batch: str


@attrs.frozen
class SendOp:
    room_id: str
    type: str
    content: dict[str, Any]
    txn_id: str


@attrs.frozen
class TypingOp:
    room_id: str
    typing: bool
    timeout: int = 30_000


@attrs.frozen
class ReceiptOp:
    room_id: str
    event_id: str
    receipt_type: Literal["m.read", "m.read.private", "m.fully_read"] = "m.read"
    thread_id: str | None = None


@attrs.frozen
class PresenceOp:
    presence: Literal["online", "offline", "unavailable"]
    status_msg: str | None = None


class _Sink:
    """Frames out of one socket: text frames, one writer at a time."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self._lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, data: bytes) -> None:
        async with self._lock:
            if self._ws.closed:
                raise ConnectionError("socket closed")
            await self._ws.send_frame(data, WSMsgType.TEXT)

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close(code=code, message=reason.encode()[:120])


def _frame(op: str, msg_id: Any, **fields: Any) -> bytes:
    return _encode({"op": op, "id": msg_id, **fields})


def _decode(msg: Any) -> dict[str, Any]:
    if msg.type is not WSMsgType.TEXT:
        raise MatrixError(400, "M_NOT_JSON", "Frames are JSON text")
    body = parse_json(msg.data)
    if not isinstance(body, dict):
        raise MatrixError(400, "M_BAD_JSON", "A frame is a JSON object")
    return body


@routes.get(PATH)
async def connect(request: web.Request) -> web.WebSocketResponse:
    svc = services(request)
    sockets = svc.sockets
    limits = sockets.limits
    ws = web.WebSocketResponse(max_msg_size=limits.max_frame_bytes, timeout=5.0)
    await ws.prepare(request)
    sink = _Sink(ws)
    dead_after = limits.dead_after_ms / 1000
    session = await _authenticate(request, ws, sink, svc, dead_after)
    if session is None:
        return ws
    pump = asyncio.get_running_loop().create_task(run_guarded(
        sockets.pump(session), lambda exc: log.exception("websocket push failed", exc_info=exc),
    ))
    try:
        await sink.send(sockets.ready_frame(session))
        while not ws.closed:
            try:
                msg = await ws.receive(timeout=dead_after)
            except TimeoutError:
                await sockets.closed(session)  # presence is settled before the client hears
                await sink.close(CLOSE_HEARTBEAT, "no frame within dead_after_ms")
                break
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            await _answer(svc, session, sink, msg)
    except ConnectionError:
        pass
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await sockets.closed(session)
        await sink.close(ws.close_code or 1000, "")
    return ws


async def _authenticate(
    request: web.Request, ws: web.WebSocketResponse, sink: _Sink, svc: Services, dead_after: float,
) -> PushSession | None:
    """The session, or None after closing the socket with the reason."""
    header = token_from_headers(request.headers.get("Authorization"), None, None)
    try:
        if header is not None:
            hello = validate(dict(request.query), Hello, errcode="M_INVALID_PARAM", strict=False)
            token: str | None = header
        else:
            try:
                msg = await ws.receive(timeout=dead_after)
            except TimeoutError:
                await sink.close(CLOSE_UNAUTHORIZED, "M_MISSING_TOKEN: no auth frame")
                return None
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return None
            first = _decode(msg)
            if first.get("op") != "auth":
                await sink.close(CLOSE_BAD_REQUEST, "M_MISSING_TOKEN: the first frame must be auth")
                return None
            hello = validate(first, Hello)
            token = hello.access_token
        if not token:
            await sink.close(CLOSE_UNAUTHORIZED, "M_MISSING_TOKEN: missing access token")
            return None
        try:
            req: Requester = await svc.auth.authenticate(token)
        except MatrixError as e:
            await sink.close(CLOSE_UNAUTHORIZED, f"{e.errcode}: {e.error}")
            return None
        flt = await svc.filters.for_sync(req.user_id, hello.filter)
        return await svc.sockets.open(req, flt, hello.filter or "", sink, hello.since, hello.set_presence)
    except MatrixError as e:
        await sink.close(CLOSE_BAD_REQUEST, f"{e.errcode}: {e.error}")
        return None


async def _answer(svc: Services, session: PushSession, sink: _Sink, msg: Any) -> None:
    """One client frame: its reply, or an error frame naming what was wrong."""
    msg_id: Any = None
    try:
        frame = _decode(msg)
        msg_id = frame.get("id")
        reply = await _dispatch(svc, session, frame)
        await sink.send(_frame("result", msg_id, **reply) if frame.get("op") != "ping" else _frame("pong", msg_id))
    except MatrixError as e:
        await sink.send(_frame("error", msg_id, **e.to_json()))  # with retry_after_ms when limited


async def _dispatch(svc: Services, session: PushSession, frame: dict[str, Any]) -> dict[str, Any]:
    op = frame.get("op")
    req = session.requester
    if op == "ping":
        return {}
    if op == "ack":
        await svc.sockets.ack(session, validate(frame, AckOp).next_batch)
        return {}
    if op == "send":
        send = validate(frame, SendOp)
        if len(_encode(send.content)) > svc.max_event_bytes:
            raise MatrixError(413, "M_TOO_LARGE", "Event too large")
        # The same bucket as the HTTP send: a socket is no way around rc_message.
        await svc.limiter.check("rc_message", req.user_id, user_id=req.user_id, exempt=not req.rate_limited)
        # Same txn-id idempotency as PUT /rooms/{roomId}/send/{eventType}/{txnId}.
        event_id = await svc.rooms.send(req, send.room_id, send.type, send.content, txn_id=send.txn_id)
        return {"event_id": event_id}
    if op == "typing":
        typing = validate(frame, TypingOp)
        await svc.rooms.require_joined(req, typing.room_id)
        svc.typing.set_typing(typing.room_id, req.user_id, typing.typing, typing.timeout)
        return {}
    if op == "receipt":
        r = validate(frame, ReceiptOp)
        await put_receipt(svc, req, r.room_id, r.receipt_type, r.event_id, r.thread_id)
        return {}
    if op == "presence":
        p = validate(frame, PresenceOp)
        await svc.sockets.set_presence(session, p.presence, p.status_msg)
        return {}
    if op == "auth":
        raise MatrixError(400, "M_INVALID_PARAM", "Already authenticated")
    raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown op {op!r}")
