"""A small hostile homeserver, in process: "evil.test" (and its sibling "evil2.test").

It owns ed25519 keys and serves, over TLS with a certificate from a test CA, what a
victim needs to check its signatures (``GET /_matrix/key/v2/server``); everything else
it answers politely (``PUT /send`` gets ``{"pdus": {}}``), from :attr:`EvilPeer.answers`
(canned lies, e.g. a forged ``/state``) or with 404, and records.
The test drives the attacks itself: :meth:`EvilPeer.auth` builds X-Matrix headers
(with any origin, destination or key), :meth:`EvilPeer.sign_pdu` hashes and signs
PDUs, and :class:`EvilRoom` tracks what a well-behaved member would put in
``prev_events``, ``auth_events`` and ``depth``.

One aiohttp server serves every name in :attr:`EvilPeer.keys`: the victim reaches it
through ``federation.static_map``; the Host header picks the key response and SNI the
certificate. It listens on 127.0.0.2, which the victim allows by ``ip_range_whitelist``
(:attr:`EvilPeer.ip_range_whitelist`) while the rest of loopback stays denied, so tests
can still show that a redirect to 127.0.0.1 or ``localhost`` is refused.
"""

from __future__ import annotations

import copy
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from config.tls import create_ca, issue_server_cert
from federation.outbound.xmatrix import sign_request
from homeserver.core.canonical_json import encode_json
from homeserver.core.events import compute_event_id, hash_and_sign_pdu
from homeserver.core.signing import SigningKey, generate_signing_key, sign_json
from homeserver.services.clock import now_ms

EVIL = "evil.test"
EVIL2 = "evil2.test"
HOST = "127.0.0.2"  # loopback, but not 127.0.0.1: see the module docstring
ROOM_VERSION = "10"
KEY_VALIDITY_MS = 24 * 3600 * 1000


@attrs.define
class EvilRoom:
    """What the peer knows of a room it joined: state ids, forward extremity, depth."""

    room_id: str
    state: dict[tuple[str, str], str]
    prev_events: list[str]
    depth: int

    def auth_for(self, sender: str, event_type: str, state_key: str | None) -> list[str]:
        wanted = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender)]
        if event_type == "m.room.member" and state_key is not None and state_key != sender:
            wanted.append(("m.room.member", state_key))
        return [self.state[k] for k in wanted if k in self.state]

    def advance(self, pdu: dict[str, Any], event_id: str) -> None:
        """Record an event the victim accepted: it becomes the forward extremity."""
        self.prev_events = [event_id]
        self.depth = max(self.depth, pdu["depth"])
        if "state_key" in pdu:
            self.state[(pdu["type"], pdu["state_key"])] = event_id


class EvilPeer:
    def __init__(self, tmp_path: Path, names: tuple[str, ...] = (EVIL, EVIL2), host: str = HOST) -> None:
        self.host = host
        self.dir = tmp_path / "evil"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names = names
        self.server_name = names[0]
        self.keys: dict[str, SigningKey] = {n: generate_signing_key("evil1") for n in names}
        self.ca_cert, self.ca_key = create_ca(str(self.dir))
        self.port = 0  # chosen by the OS in start()
        # Every request the victim made to us: (Host, method, path).
        self.requests: list[tuple[str, str, str]] = []
        # Canned 200 answers (lies, usually), by path prefix: e.g. what /state returns.
        self.answers: dict[str, Any] = {}
        # Handlers of our own, by path prefix, tried before ``answers`` (e.g. media files).
        self.handlers: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def key(self) -> SigningKey:
        return self.keys[self.server_name]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ip_range_whitelist(self) -> tuple[str, ...]:
        """What a victim's ``ip_range_whitelist`` needs to reach this peer."""
        return (f"{self.host}/32",)

    def static_map(self) -> dict[str, str]:
        return {n: self.address for n in self.names}

    # -- the HTTPS server -----------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        contexts: dict[str, ssl.SSLContext] = {}
        for name in self.names:
            cert, key = issue_server_cert(
                self.ca_cert, self.ca_key, name,
                str(self.dir / f"{name}.crt"), str(self.dir / f"{name}.key"),
            )
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            contexts[name] = ctx
        default = contexts[self.server_name]

        def pick(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if name in contexts:
                sock.context = contexts[name]

        default.sni_callback = pick  # type: ignore[assignment]
        return default

    def key_response(self, name: str) -> dict[str, Any]:
        key = self.keys[name]
        body = {
            "server_name": name,
            "verify_keys": {key.key_id: {"key": key.verify_key_base64}},
            "old_verify_keys": {},
            "valid_until_ts": now_ms() + KEY_VALIDITY_MS,
        }
        return sign_json(body, name, key)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        self.requests.append((host, request.method, request.path))
        name = host if host in self.keys else self.server_name
        if request.method == "GET" and request.path.rstrip("/").startswith("/_matrix/key/v2/server"):
            return _json(self.key_response(name))
        if request.method == "PUT" and request.path.startswith("/_matrix/federation/v1/send/"):
            return _json({"pdus": {}})
        for prefix, handler in self.handlers.items():
            if request.path.startswith(prefix):
                return await handler(request)
        for prefix, body in self.answers.items():
            if request.path.startswith(prefix):
                return _json(body)
        return _json({"errcode": "M_NOT_FOUND", "error": "evil.test does not say"}, 404)

    async def start(self) -> EvilPeer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self._ssl_context())
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- signing ----------------------------------------------------------------------

    def auth(
        self, method: str, uri: str, destination: str | None, content: Any = None, *,
        origin: str | None = None, key: SigningKey | None = None,
    ) -> str:
        """An ``Authorization: X-Matrix`` value for ``method uri`` (``uri`` exactly as sent)."""
        origin = origin or self.server_name
        key = key or self.keys.get(origin, self.key)
        return sign_request(key, origin, destination or "", method, uri, content)

    def sign_pdu(
        self, pdu: dict[str, Any], *, signer: str | None = None, room_version: str = ROOM_VERSION,
    ) -> dict[str, Any]:
        """Hash and sign ``pdu`` as ``signer`` (default: the peer's main name)."""
        signer = signer or self.server_name
        for k in ("hashes", "signatures", "unsigned", "event_id"):
            pdu.pop(k, None)
        return hash_and_sign_pdu(room_version, pdu, signer, self.keys[signer])

    def build_pdu(
        self, room: EvilRoom, event_type: str, content: Any, *, sender: str | None = None,
        state_key: str | None = None, signer: str | None = None, **extra: Any,
    ) -> dict[str, Any]:
        """A signed PDU as a well-behaved member of ``room`` would make it (then tamper away)."""
        sender = sender or self.user("mallory")
        pdu: dict[str, Any] = {
            "room_id": room.room_id, "sender": sender, "type": event_type, "content": content,
            "origin": self.server_name, "origin_server_ts": now_ms(), "depth": room.depth + 1,
            "prev_events": list(room.prev_events),
            "auth_events": room.auth_for(sender, event_type, state_key),
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        pdu.update(extra)
        return self.sign_pdu(pdu, signer=signer)

    def user(self, localpart: str, server: str | None = None) -> str:
        return f"@{localpart}:{server or self.server_name}"

    @staticmethod
    def event_id(pdu: dict[str, Any], room_version: str = ROOM_VERSION) -> str:
        return compute_event_id(room_version, pdu)

    @staticmethod
    def copy(pdu: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(pdu)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=encode_json(body), status=status, content_type="application/json")
