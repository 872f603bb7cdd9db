"""Pushers: where a user's notifications go beyond /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-notifications ("Pushers").

- kind "http": each notification is POSTed to the pusher's gateway in the push gateway
  format (`core/push_gateway.py`) through `PushGatewayPort`, by one task per pusher, with
  exponential backoff on failure; pushkeys the gateway rejects lose their pusher.
- kind "email": a digest of the user's unread notifications is mailed through
  `MailerPort`, `notif_delay_ms` after the first one, unless read meanwhile.

Both are fed by the evaluator's `deliver` hook after its rows are stored: the send
path never waits for a gateway or a mail server. Deliveries queued in memory are lost on
restart (a notification is then only in /sync and GET /notifications).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from homeserver.core.errors import MatrixError, bad_json
from homeserver.core.push_gateway import GatewayAnswer, notify_body
from homeserver.core.records import Notification
from homeserver.services.clock import now_ms
from homeserver.services.push import UnreadCache, is_read
from homeserver.services.reader import EventReader
from storage.stores.push import PushStore

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 12
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 600.0
_STRING_FIELDS = ("app_id", "pushkey", "kind", "app_display_name", "device_display_name", "lang")


class PushGatewayPort(Protocol):
    async def notify(self, url: str, body: dict[str, Any]) -> GatewayAnswer:
        """POST the body to the gateway; never raises for a delivery failure."""


class MailerPort(Protocol):
    async def send(self, to: str, subject: str, text: str) -> bool:
        """Send one mail; False when it should be tried again later."""


@attrs.frozen
class PusherKey:
    user_id: str
    app_id: str
    pushkey: str


def check_pusher(body: dict[str, Any]) -> dict[str, Any] | None:
    """The pusher to store from a POST /pushers/set body, or None for kind null
    (delete). Bad input is a Matrix error."""
    kind = body.get("kind")
    for name in ("app_id", "pushkey"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise MatrixError(400, "M_MISSING_PARAM", f"{name} is required")
    if len(body["app_id"]) > 64 or len(body["pushkey"].encode()) > 512:
        raise MatrixError(400, "M_INVALID_PARAM", "app_id is at most 64 characters, pushkey 512 bytes")
    if kind is None:
        return None
    for name in _STRING_FIELDS:
        if not isinstance(body.get(name), str):
            raise MatrixError(400, "M_MISSING_PARAM", f"{name} is required and must be a string")
    if kind not in ("http", "email"):
        raise MatrixError(400, "M_INVALID_PARAM", "kind must be http, email or null")
    data = body.get("data")
    if not isinstance(data, dict):
        raise MatrixError(400, "M_MISSING_PARAM", "data is required")
    if kind == "http":
        url = data.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise MatrixError(400, "M_INVALID_PARAM", "data.url must be an http(s) URL")
        if not url.split("?")[0].endswith("/_matrix/push/v1/notify"):
            raise MatrixError(400, "M_INVALID_PARAM", "data.url must end with /_matrix/push/v1/notify")
    if "format" in data and data["format"] != "event_id_only":
        raise MatrixError(400, "M_INVALID_PARAM", "data.format may only be event_id_only")
    profile_tag = body.get("profile_tag")
    if profile_tag is not None and not isinstance(profile_tag, str):
        raise bad_json("profile_tag must be a string")
    pusher = {name: body[name] for name in _STRING_FIELDS}
    pusher["data"] = data
    if profile_tag is not None:
        pusher["profile_tag"] = profile_tag
    return pusher


class PusherService:
    def __init__(
        self, *, store: PushStore, unread: UnreadCache, reader: EventReader, gateway: PushGatewayPort,
        mailer: MailerPort | None, email_delay_ms: int, server_name: str,
    ) -> None:
        self._store = store
        self._unread = unread
        self._reader = reader
        self._gateway = gateway
        self._mailer = mailer
        self._email_delay_s = email_delay_ms / 1000
        self._server_name = server_name
        self._queues: dict[PusherKey, asyncio.Queue[Notification]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._digests: dict[str, asyncio.Task[None]] = {}  # user id -> pending digest
        self._emailed: dict[str, int] = {}  # user id -> last stream position mailed
        # Every pusher by user, read once (the table is small); None: read it again.
        self._by_user: dict[str, list[dict[str, Any]]] | None = None
        self._stopped = False

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        return [p for _, p in await self._store.pushers(user_id)]

    async def set(self, user_id: str, body: dict[str, Any]) -> None:
        """POST /pushers/set: add, replace (same app_id and pushkey), or delete (kind null).
        Unless `append` is true, the same app_id and pushkey of other users is removed
        (spec: the device now belongs to this user)."""
        pusher = check_pusher(body)
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise bad_json("append must be a boolean")
        if pusher is None:
            await self._store.delete_pusher(user_id, body["app_id"], body["pushkey"])
        else:
            pusher["pushkey_ts"] = now_ms() // 1000
            await self._store.put_pusher(user_id, pusher, now_ms(), exclusive=not append)
        self._by_user = None  # other users' pushers may have gone too

    async def _pushers_of(self, user_id: str) -> list[dict[str, Any]]:
        if self._by_user is None:
            by_user: dict[str, list[dict[str, Any]]] = {}
            for owner, p in await self._store.pushers():
                by_user.setdefault(owner, []).append(p)
            self._by_user = by_user
        return self._by_user.get(user_id, [])

    # -- delivery ----------------------------------------------------------------------

    def deliver(self, rows: Sequence[Notification]) -> None:
        """The evaluator's hook: cheap, hands the rows to our own tasks."""
        if self._stopped:
            return
        task = asyncio.create_task(self._route(list(rows)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self._stopped = True
        tasks = [*self._tasks, *self._digests.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _route(self, rows: list[Notification]) -> None:
        users = {n.user_id for n in rows}
        for user_id in users:
            for pusher in await self._pushers_of(user_id):
                mine = [n for n in rows if n.user_id == user_id]
                if pusher["kind"] == "http":
                    key = PusherKey(user_id, pusher["app_id"], pusher["pushkey"])
                    queue = self._queues.get(key)
                    if queue is None:
                        queue = self._queues[key] = asyncio.Queue()
                        self._spawn(self._http_worker(key, queue))
                    for n in mine:
                        queue.put_nowait(n)
                elif pusher["kind"] == "email" and self._mailer is not None and user_id not in self._digests:
                    self._digests[user_id] = asyncio.create_task(self._digest_later(user_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _http_worker(self, key: PusherKey, queue: asyncio.Queue[Notification]) -> None:
        while True:
            n = await queue.get()
            pusher = await self._current(key)
            if pusher is None:
                self._queues.pop(key, None)
                return  # the pusher was removed meanwhile
            body = await self._body(pusher, n)
            delay = FIRST_BACKOFF_S
            for _ in range(MAX_ATTEMPTS):
                answer = await self._gateway.notify(pusher["data"]["url"], body)
                if not answer.retry:
                    if key.pushkey in answer.rejected:
                        # Spec (push gateway API): a rejected pushkey's pusher must go.
                        await self._store.delete_pusher(key.user_id, key.app_id, key.pushkey)
                        self._by_user = None
                        self._queues.pop(key, None)
                        return
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
            else:
                log.warning("gave up pushing %s to %s", n.event_id, pusher["data"]["url"])

    async def _current(self, key: PusherKey) -> dict[str, Any] | None:
        for p in await self._pushers_of(key.user_id):
            if p["app_id"] == key.app_id and p["pushkey"] == key.pushkey:
                return p
        return None

    async def _body(self, pusher: dict[str, Any], n: Notification) -> dict[str, Any]:
        se = await self._reader.get_event(n.event_id)
        event = {**(se.event.pdu if se is not None else {}), "event_id": n.event_id, "room_id": n.room_id}
        event.setdefault("type", "")
        event.setdefault("sender", "")
        head = await self._reader.room_head(n.room_id)
        sender_name = room_name = None
        if head is not None:
            state = await self._reader.state_events({
                k: head.state[k] for k in (("m.room.member", event["sender"]), ("m.room.name", ""))
                if k in head.state
            })
            member, name = state.get(("m.room.member", event["sender"])), state.get(("m.room.name", ""))
            sender_name = member.content.get("displayname") if member is not None else None
            room_name = name.content.get("name") if name is not None else None
        return notify_body(
            pusher=pusher, event=event, actions=n.actions, unread=await self._unread_total(n.user_id),
            sender_display_name=sender_name if isinstance(sender_name, str) else None,
            room_name=room_name if isinstance(room_name, str) else None,
            user_is_target=event.get("state_key") == n.user_id,
        )

    async def _unread_rows(self, user_id: str) -> list[Notification]:
        rows, read = await self._unread.get(user_id)
        return [n for n in rows if not is_read(n, read)]

    async def _unread_total(self, user_id: str) -> int:
        return len(await self._unread_rows(user_id))

    async def _digest_later(self, user_id: str) -> None:
        try:
            await asyncio.sleep(self._email_delay_s)
            await self._send_digest(user_id)
        finally:
            self._digests.pop(user_id, None)

    async def _send_digest(self, user_id: str) -> None:
        """Mail what is still unread and was not mailed before, to each email pusher."""
        assert self._mailer is not None
        since = self._emailed.get(user_id, 0)
        unread = sorted(
            (n for n in await self._unread_rows(user_id) if n.stream_ordering > since),
            key=lambda n: n.stream_ordering,
        )
        if not unread:
            return  # read meanwhile
        lines = []
        events = await self._reader.get_events([n.event_id for n in unread])
        for n in unread:
            se = events.get(n.event_id)
            if se is None:
                continue
            body = se.event.content.get("body")
            what = body if isinstance(body, str) else se.event.type
            lines.append(f"{se.event.sender} in {n.room_id}: {what}")
        rooms = len({n.room_id for n in unread})
        subject = f"{len(unread)} unread message{'s' * (len(unread) != 1)} in {rooms} room{'s' * (rooms != 1)}"
        text = "You have unread messages on " + self._server_name + ":\n\n" + "\n".join(lines) + "\n"
        for pusher in await self._pushers_of(user_id):
            if pusher["kind"] != "email":
                continue
            delay = FIRST_BACKOFF_S
            for _ in range(MAX_ATTEMPTS):
                if await self._mailer.send(pusher["pushkey"], subject, text):
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
        self._emailed[user_id] = unread[-1].stream_ordering
