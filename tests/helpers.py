"""Small helpers so client API tests read like user stories.

``Matrix`` wraps an aiohttp test client (or any base URL session) bound to one
homeserver; ``User`` is a logged-in account on it. Every call checks the HTTP
status (``expect=200`` unless told otherwise) and returns the decoded JSON body,
so a test states what the user would see:

    alice = await hs.register("alice")
    room = await alice.create_room(name="Lunch")
    await alice.send(room, "hello")
    err = await bob.post(f"/rooms/{q(room)}/join", expect=403)
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient

CS = "/_matrix/client/v3"
PASSWORD = "correct horse battery staple"
_NO_BODY: Any = object()


def q(value: str) -> str:
    """Percent-encode one path segment (ids contain !, :, $, @ and #)."""
    return urllib.parse.quote(value, safe="")


def _params(params: dict[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, dict | list):
            value = json.dumps(value)
        out[key] = str(value)
    return out


@dataclass
class Resp:
    status: int
    headers: Any
    text: str
    json: Any


@dataclass
class BytesResp:
    """A response whose body is bytes (media), with the JSON decoded when it is JSON."""

    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class HttpError(AssertionError):
    pass


class Matrix:
    """One homeserver seen from the outside (plain HTTP through ``client``)."""

    def __init__(self, client: TestClient, server_name: str) -> None:
        self.client = client
        self.server_name = server_name

    def uid(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    async def raw(
        self, method: str, path: str, body: Any = _NO_BODY, *, token: str | None = None,
        params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
        data: bytes | str | None = None,
    ) -> Resp:
        """One request; ``path`` without ``/_matrix`` (or ``/.well-known``, ``/health``) is
        taken relative to ``/_matrix/client/v3``."""
        if not path.startswith(("/_matrix", "/_synapse", "/_tricolor", "/.well-known", "/health")):
            path = CS + path
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if body is not _NO_BODY:
            data = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        async with self.client.request(
            method, path, data=data, params=_params(params), headers=hdrs,
        ) as r:
            text = await r.text()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None
            return Resp(r.status, r.headers, text, parsed)

    async def raw_bytes(
        self, method: str, path: str, data: bytes | None = None, *, token: str | None = None,
        params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
    ) -> BytesResp:
        """One request with a bytes body and a bytes answer (uploads and downloads);
        ``path`` is absolute (``/_matrix/media/v3/upload``)."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self.client.request(
            method, path, data=data, params=_params(params), headers=hdrs,
        ) as r:
            return BytesResp(r.status, r.headers, await r.read())

    async def call(
        self, method: str, path: str, body: Any = _NO_BODY, *, expect: int = 200, **kw: Any,
    ) -> Any:
        """A request that must answer ``expect``; returns the JSON body."""
        r = await self.raw(method, path, body, **kw)
        if r.status != expect:
            raise HttpError(f"{method} {path}: expected HTTP {expect}, got {r.status}: {r.text[:600]}")
        return r.json

    async def register(
        self, localpart: str | None, password: str = PASSWORD, **extra: Any,
    ) -> User:
        """Register through the m.login.dummy flow and return the logged-in user."""
        body = {"username": localpart, "password": password, "auth": {"type": "m.login.dummy"}}
        if localpart is None:
            del body["username"]
        body.update(extra)
        got = await self.call("POST", "/register", body)
        return User(self, got["user_id"], got["access_token"], got["device_id"], password, got)

    async def users(self, *localparts: str) -> list[User]:
        """Register several users at once (alice, bob, ...)."""
        return [await self.register(name) for name in localparts]

    async def login(
        self, user: str, password: str = PASSWORD, *, expect: int = 200, **extra: Any,
    ) -> Any:
        body = {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password, **extra,
        }
        return await self.call("POST", "/login", body, expect=expect)

    async def login_user(self, user: str, password: str = PASSWORD, **extra: Any) -> User:
        got = await self.login(user, password, **extra)
        return User(self, got["user_id"], got["access_token"], got["device_id"], password, got)


@dataclass
class User:
    hs: Matrix
    user_id: str
    token: str
    device_id: str
    password: str = PASSWORD
    login_response: dict[str, Any] = field(default_factory=dict)
    _txn: int = 0

    # -- raw authenticated calls --------------------------------------------------

    async def get(self, path: str, *, expect: int = 200, **kw: Any) -> Any:
        return await self.hs.call("GET", path, expect=expect, token=self.token, **kw)

    async def post(self, path: str, body: Any = None, *, expect: int = 200, **kw: Any) -> Any:
        return await self.hs.call(
            "POST", path, {} if body is None else body, expect=expect, token=self.token, **kw,
        )

    async def put(self, path: str, body: Any = None, *, expect: int = 200, **kw: Any) -> Any:
        return await self.hs.call(
            "PUT", path, {} if body is None else body, expect=expect, token=self.token, **kw,
        )

    async def delete(self, path: str, *, expect: int = 200, **kw: Any) -> Any:
        return await self.hs.call("DELETE", path, expect=expect, token=self.token, **kw)

    # -- rooms --------------------------------------------------------------------

    async def create_room(self, **body: Any) -> str:
        return (await self.post("/createRoom", body))["room_id"]

    async def join(self, room: str, *, expect: int = 200) -> Any:
        return await self.post(f"/join/{q(room)}", expect=expect)

    async def invite(self, room: str, user: User | str, *, expect: int = 200) -> Any:
        target = user.user_id if isinstance(user, User) else user
        return await self.post(f"/rooms/{q(room)}/invite", {"user_id": target}, expect=expect)

    async def leave(self, room: str, *, expect: int = 200) -> Any:
        return await self.post(f"/rooms/{q(room)}/leave", expect=expect)

    def next_txn(self) -> str:
        self._txn += 1
        return f"txn{self._txn}"

    async def send(
        self, room: str, body: str | dict[str, Any] = "hello", *, type: str = "m.room.message",
        txn: str | None = None, expect: int = 200,
    ) -> str:
        """Send a message (a string becomes an m.text body); returns the event id."""
        content = {"msgtype": "m.text", "body": body} if isinstance(body, str) else body
        got = await self.put(
            f"/rooms/{q(room)}/send/{q(type)}/{q(txn or self.next_txn())}", content, expect=expect,
        )
        return got["event_id"] if expect == 200 else got

    async def state(
        self, room: str, type: str, key: str = "", *, expect: int = 200,
    ) -> Any:
        return await self.get(f"/rooms/{q(room)}/state/{q(type)}/{q(key)}", expect=expect)

    async def put_state(
        self, room: str, type: str, content: dict[str, Any], key: str = "", *, expect: int = 200,
    ) -> Any:
        got = await self.put(f"/rooms/{q(room)}/state/{q(type)}/{q(key)}", content, expect=expect)
        return got["event_id"] if expect == 200 else got

    async def room_state(self, room: str) -> dict[tuple[str, str], dict[str, Any]]:
        """The room's current state as {(type, state_key): event}."""
        events = await self.get(f"/rooms/{q(room)}/state")
        return {(e["type"], e["state_key"]): e for e in events}

    async def state_ids(self, room: str) -> dict[tuple[str, str], str]:
        """The room's current state as {(type, state_key): event_id}."""
        return {k: e["event_id"] for k, e in (await self.room_state(room)).items()}

    async def messages(self, room: str, dir: str = "b", **params: Any) -> Any:
        return await self.get(f"/rooms/{q(room)}/messages", params={"dir": dir, **params})

    async def joined_rooms(self) -> list[str]:
        return (await self.get("/joined_rooms"))["joined_rooms"]

    # -- sync ---------------------------------------------------------------------

    async def sync(self, since: str | None = None, **params: Any) -> Any:
        return await self.get("/sync", params={"since": since, **params})


def timeline(sync: dict[str, Any], room: str) -> list[dict[str, Any]]:
    """The joined room's timeline events in a sync response ([] if the room is absent)."""
    section = sync["rooms"]["join"].get(room)
    return section["timeline"]["events"] if section else []


def bodies(events: list[dict[str, Any]]) -> list[str]:
    """The text of the m.room.message events, in order."""
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


def assert_error(body: Any, errcode: str) -> None:
    assert isinstance(body, dict), body
    assert body.get("errcode") == errcode, body
    assert isinstance(body.get("error"), str), body


@dataclass
class CrossSigning:
    """A user's cross-signing keys as a client makes them: the master key, and the
    self-signing and user-signing keys signed by it (spec "Cross-signing")."""

    master: dict[str, Any]
    self_signing: dict[str, Any]
    user_signing: dict[str, Any]
    master_id: str  # the master key's id without "ed25519:" (how /keys/signatures/upload names it)
    usk: Any  # SigningKey of the user-signing key, to sign other users' master keys

    def upload_body(self) -> dict[str, Any]:
        return {"master_key": self.master, "self_signing_key": self.self_signing, "user_signing_key": self.user_signing}


def cross_signing_keys(user_id: str) -> CrossSigning:
    from homeserver.core.signing import SigningKey, generate_signing_key, sign_json

    def key(usage: str) -> tuple[dict[str, Any], Any]:
        raw = generate_signing_key(usage)
        pub = raw.verify_key_base64
        return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}, SigningKey(pub, raw.seed)

    master, master_signer = key("master")
    ssk, _ = key("self_signing")
    usk, usk_signer = key("user_signing")
    return CrossSigning(
        master, sign_json(ssk, user_id, master_signer), sign_json(usk, user_id, master_signer),
        master_signer.version, usk_signer,
    )
