"""HTTP-only helpers for sytest-lite (no homeserver code is imported)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CS = "/_matrix/client/v3"
DEFAULT_PASSWORD = "sytest-lite-Pa55word!"
REQUEST_TIMEOUT = 60  # seconds; a hung server fails the test instead of hanging the run


# --------------------------------------------------------------------------- helpers


def rand_localpart(prefix: str = "u") -> str:
    """A unique, valid, lower-case localpart so re-runs on the same server never clash."""
    return f"sl{prefix}{int(time.time() * 1000) % 10**9}{secrets.token_hex(4)}"


def quote(s: str) -> str:
    """Percent-encode a path segment (IDs contain !, :, $, @ and #)."""
    return urllib.parse.quote(s, safe="")


@dataclass
class Resp:
    status: int
    headers: Any  # CIMultiDictProxy
    text: str
    json: Any = None

    @property
    def errcode(self) -> str | None:
        return self.json.get("errcode") if isinstance(self.json, dict) else None

    def expect(self, status: int) -> Any:
        assert self.status == status, (
            f"expected HTTP {status}, got {self.status}: {self.text[:500]}"
        )
        return self.json

    def expect_error(self, status: int, errcode: str | tuple[str, ...]) -> dict:
        codes = (errcode,) if isinstance(errcode, str) else errcode
        assert self.status == status, (
            f"expected HTTP {status} {codes}, got {self.status}: {self.text[:500]}"
        )
        assert isinstance(self.json, dict), f"error body is not a JSON object: {self.text[:500]}"
        assert self.errcode in codes, f"expected errcode {codes}, got {self.text[:500]}"
        return self.json


class HS:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url
        self.server_name: str | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | str | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        time_limit: float = REQUEST_TIMEOUT,
    ) -> Resp:
        """One HTTP request. ``path`` starting with ``/`` is appended to the base URL;
        a path without leading ``/`` is taken relative to ``/_matrix/client/v3/``."""
        if not path.startswith("/"):
            path = f"{CS}/{path}"
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        query: list[tuple[str, str]] | None = None
        if params:
            # A list value repeats the key (``via=a&via=b``); booleans are lower-cased.
            query = []
            for k, v in params.items():
                for item in v if isinstance(v, (list, tuple)) else [v]:
                    query.append((k, str(item).lower() if isinstance(item, bool) else str(item)))
        async with self.session.request(
            method,
            self.base_url + path,
            data=body,
            params=query,
            headers=hdrs,
            timeout=aiohttp.ClientTimeout(total=time_limit),
        ) as r:
            text = await r.text(errors="replace")
            parsed = None
            if text:
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
            return Resp(r.status, r.headers, text, parsed)

    async def register(
        self,
        localpart: str | None = None,
        password: str = DEFAULT_PASSWORD,
        device_id: str | None = None,
        prefix: str = "u",
    ) -> User:
        """Register a fresh user with the m.login.dummy flow.

        Sends ``auth: {"type": "m.login.dummy"}`` first; if the server insists on a
        user-interactive session (401 with ``session``), repeats with that session."""
        localpart = localpart or rand_localpart(prefix)
        body: dict[str, Any] = {
            "username": localpart,
            "password": password,
            "auth": {"type": "m.login.dummy"},
        }
        if device_id:
            body["device_id"] = device_id
        r = await self.request("POST", "register", json_body=body)
        if r.status == 401 and isinstance(r.json, dict) and "session" in r.json:
            body["auth"] = {"type": "m.login.dummy", "session": r.json["session"]}
            r = await self.request("POST", "register", json_body=body)
        j = r.expect(200)
        for key in ("user_id", "access_token", "device_id"):
            assert key in j, f"register response lacks {key}: {j}"
        if self.server_name is None:
            self.server_name = j["user_id"].split(":", 1)[1]
        return User(self, j["user_id"], j["access_token"], j["device_id"], password, localpart)

    async def register_admin(self, shared_secret: str, password: str = DEFAULT_PASSWORD) -> User:
        """A fresh server admin via ``/_synapse/admin/v1/register`` (HMAC-SHA1 of
        nonce, user, password and "admin", keyed with the shared secret)."""
        import hashlib
        import hmac

        localpart = rand_localpart("admin")
        nonce = (await self.request("GET", "/_synapse/admin/v1/register")).expect(200)["nonce"]
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), b"admin"]))
        j = (await self.request("POST", "/_synapse/admin/v1/register", json_body={
            "nonce": nonce, "username": localpart, "password": password, "admin": True,
            "mac": mac.hexdigest(),
        })).expect(200)
        if self.server_name is None:
            self.server_name = j["user_id"].split(":", 1)[1]
        return User(self, j["user_id"], j["access_token"], j["device_id"], password, localpart)

    async def login(
        self, user: str, password: str = DEFAULT_PASSWORD, device_id: str | None = None
    ) -> Resp:
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        }
        if device_id:
            body["device_id"] = device_id
        return await self.request("POST", "login", json_body=body)


@dataclass
class User:
    hs: HS
    user_id: str
    access_token: str
    device_id: str
    password: str
    localpart: str
    _txn: int = field(default=0)

    # ---- raw authenticated calls
    async def request(self, method: str, path: str, **kw: Any) -> Resp:
        kw.setdefault("token", self.access_token)
        return await self.hs.request(method, path, **kw)

    async def get(self, path: str, **kw: Any) -> Resp:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Resp:
        return await self.request("POST", path, json_body={} if body is None else body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Resp:
        return await self.request("PUT", path, json_body={} if body is None else body, **kw)

    def txn_id(self) -> str:
        self._txn += 1
        return f"sl{secrets.token_hex(4)}-{self._txn}"

    # ---- rooms
    async def create_room(self, **body: Any) -> str:
        j = (await self.post("createRoom", body)).expect(200)
        assert isinstance(j.get("room_id"), str) and j["room_id"].startswith("!"), j
        return j["room_id"]

    async def join(self, room_id_or_alias: str, via: list[str] | None = None) -> Resp:
        """``POST /join/{roomIdOrAlias}``; ``via`` (servers to join through, for a room
        this server is not in) is sent as both ``via`` (spec v1.12+) and ``server_name``
        (older servers)."""
        params = {"via": via, "server_name": via} if via else None
        return await self.post(f"join/{quote(room_id_or_alias)}", params=params)

    async def join_room_id(self, room_id: str) -> Resp:
        return await self.post(f"rooms/{quote(room_id)}/join")

    async def invite(self, room_id: str, user_id: str) -> Resp:
        return await self.post(f"rooms/{quote(room_id)}/invite", {"user_id": user_id})

    async def leave(self, room_id: str) -> Resp:
        return await self.post(f"rooms/{quote(room_id)}/leave")

    async def send_event(
        self, room_id: str, event_type: str, content: dict, txn_id: str | None = None
    ) -> Resp:
        txn_id = txn_id or self.txn_id()
        return await self.put(
            f"rooms/{quote(room_id)}/send/{quote(event_type)}/{quote(txn_id)}", content
        )

    async def send_message(self, room_id: str, body: str = "hello") -> str:
        r = await self.send_event(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
        j = r.expect(200)
        assert isinstance(j.get("event_id"), str) and j["event_id"].startswith("$"), j
        return j["event_id"]

    def state_path(self, room_id: str, event_type: str, state_key: str = "") -> str:
        path = f"rooms/{quote(room_id)}/state/{quote(event_type)}"
        return f"{path}/{quote(state_key)}" if state_key else path

    async def put_state(
        self, room_id: str, event_type: str, content: dict, state_key: str = ""
    ) -> Resp:
        return await self.put(self.state_path(room_id, event_type, state_key), content)

    async def get_state(self, room_id: str, event_type: str, state_key: str = "") -> Resp:
        return await self.get(self.state_path(room_id, event_type, state_key))

    async def membership(self, room_id: str, user_id: str) -> str | None:
        r = await self.get_state(room_id, "m.room.member", user_id)
        if r.status == 404:
            return None
        return r.expect(200).get("membership")

    async def joined_rooms(self) -> list[str]:
        return (await self.get("joined_rooms")).expect(200)["joined_rooms"]

    async def messages(self, room_id: str, **params: Any) -> Resp:
        params.setdefault("dir", "b")
        return await self.get(f"rooms/{quote(room_id)}/messages", params=params)

    # ---- ephemeral and profile
    async def set_typing(self, room_id: str, typing: bool = True, timeout_ms: int = 30000) -> Resp:
        body: dict[str, Any] = {"typing": typing}
        if typing:
            body["timeout"] = timeout_ms
        return await self.put(f"rooms/{quote(room_id)}/typing/{quote(self.user_id)}", body)

    async def send_receipt(self, room_id: str, event_id: str, receipt_type: str = "m.read") -> Resp:
        return await self.post(
            f"rooms/{quote(room_id)}/receipt/{quote(receipt_type)}/{quote(event_id)}", {}
        )

    async def set_displayname(self, displayname: str) -> Resp:
        return await self.put(
            f"profile/{quote(self.user_id)}/displayname", {"displayname": displayname}
        )

    async def profile(self, user_id: str, field: str | None = None) -> Resp:
        path = f"profile/{quote(user_id)}"
        return await self.get(f"{path}/{quote(field)}" if field else path)

    # ---- sync
    async def sync(
        self,
        since: str | None = None,
        timeout_ms: int = 0,
        filter: str | dict | None = None,
        **extra: Any,
    ) -> dict:
        params: dict[str, Any] = {"timeout": timeout_ms, **extra}
        params.setdefault("set_presence", "offline")  # keep presence noise out of long-polls
        if since:
            params["since"] = since
        if filter is not None:
            params["filter"] = filter if isinstance(filter, str) else json.dumps(filter)
        r = await self.get("sync", params=params, time_limit=REQUEST_TIMEOUT + timeout_ms / 1000)
        j = r.expect(200)
        assert isinstance(j.get("next_batch"), str) and j["next_batch"], (
            f"sync without next_batch: {j}"
        )
        return j

    async def sync_until(
        self,
        since: str | None,
        check: Callable[[dict], Any],
        *,
        deadline: float = 10.0,
        filter: str | dict | None = None,
    ) -> tuple[dict, Any]:
        """Long-poll /sync from ``since`` until ``check(response)`` is truthy.
        Returns (the response that satisfied it, check's value)."""
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"condition not met in /sync within {deadline}s")
            resp = await self.sync(since, timeout_ms=int(min(left, 5) * 1000), filter=filter)
            got = check(resp)
            if got:
                return resp, got
            since = resp["next_batch"]


# --------------------------------------------------------------------------- waiting


FEDERATION_DEADLINE = 30.0  # seconds: generous, servers may back off and retry a peer


async def eventually(
    probe: Callable[[], Awaitable[Any]],
    *,
    deadline: float = FEDERATION_DEADLINE,
    interval: float = 0.25,
    what: str = "condition",
) -> Any:
    """Await ``probe()`` until it returns something truthy and return that; fail after
    ``deadline`` seconds with the last value seen. For things that happen
    asynchronously (federation), never for timing assertions."""
    end = time.monotonic() + deadline
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() >= end:
            raise AssertionError(f"{what} not met within {deadline}s (last value: {last!r})")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- sync helpers


def joined(sync: dict, room_id: str) -> dict | None:
    return sync.get("rooms", {}).get("join", {}).get(room_id)


def timeline_events(sync: dict, room_id: str, section: str = "join") -> list[dict]:
    room = sync.get("rooms", {}).get(section, {}).get(room_id) or {}
    return room.get("timeline", {}).get("events", [])


def state_events(sync: dict, room_id: str, section: str = "join") -> list[dict]:
    room = sync.get("rooms", {}).get(section, {}).get(room_id) or {}
    return room.get("state", {}).get("events", [])


def find_event(events: list[dict], **match: Any) -> dict | None:
    for ev in events:
        if all(ev.get(k) == v for k, v in match.items()):
            return ev
    return None


def bodies(events: list[dict]) -> list[str]:
    return [
        e["content"]["body"]
        for e in events
        if e.get("type") == "m.room.message" and "body" in e.get("content", {})
    ]


def ephemeral_events(sync: dict, room_id: str, event_type: str | None = None) -> list[dict]:
    room = joined(sync, room_id) or {}
    events = room.get("ephemeral", {}).get("events", [])
    return [e for e in events if event_type is None or e.get("type") == event_type]


def invited(sync: dict, room_id: str) -> dict | None:
    return sync.get("rooms", {}).get("invite", {}).get(room_id)
