"""Pushers: where a user's notifications go beyond /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-notifications ("Pushers").

- kind "http": each notification is POSTed to the pusher's gateway in the push gateway
  format (`core/push_gateway.py`) through `PushGatewayPort`, by one task per pusher, with
  exponential backoff on failure; pushkeys the gateway rejects lose their pusher.
- kind "email": a digest of the user's unread notifications is mailed through
  `MailerPort`, `notif_delay_ms` after the first one, unless read meanwhile.

Both are fed by the evaluator's `deliver` hook after its rows are stored: the send
path never waits for a gateway or a mail server. The hook only hands rows to our task,
which writes them to a durable queue (`PushQueueStore`: one row per delivery, one
pending digest per user) with a progress mark over the notifications table, in one
transaction; on start, notifications after the mark are queued first. Two workers deliver
from the queue, each sleeping until the next row is due or new rows arrive (no polling):
a delivery leaves the queue once the gateway took it, so a restart resumes exactly the
ones not delivered, with their backoff. A notification whose event was redacted
meanwhile is not pushed (its row is gone, spec "Redactions").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from homeserver.core.errors import MatrixError, bad_json
from homeserver.core.push_gateway import GatewayAnswer, notify_body
from homeserver.core.records import DueDigest, Notification, QueuedPush
from homeserver.services.clock import now_ms
from homeserver.services.push import UnreadCache, is_read
from homeserver.services.reader import EventReader
from storage.stores.push import PushStore
from storage.stores.push_queue import PushQueueStore

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
        self, *, store: PushStore, queue: PushQueueStore, unread: UnreadCache, reader: EventReader,
        gateway: PushGatewayPort, mailer: MailerPort | None, email_delay_ms: int, server_name: str,
    ) -> None:
        self._store = store
        self._queue = queue
        self._unread = unread
        self._reader = reader
        self._gateway = gateway
        self._mailer = mailer
        self._email_delay_ms = email_delay_ms
        self._server_name = server_name
        self._incoming: asyncio.Queue[list[Notification]] = asyncio.Queue()
        self._mark = 0  # notifications up to here are in the durable queue
        # New rows queued: each worker looks again (one event per worker, each clears its own).
        self._wakes = {"push": asyncio.Event(), "email": asyncio.Event()}
        self._tasks: list[asyncio.Task[None]] = []
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

    # -- queueing ----------------------------------------------------------------------

    def deliver(self, rows: Sequence[Notification]) -> None:
        """The evaluator's hook: cheap, hands the rows to our own task."""
        if not self._stopped and rows:
            self._incoming.put_nowait(list(rows))

    async def start(self) -> None:
        """Queue what was evaluated but not queued before the last stop, then follow the
        evaluator and deliver. A database that never ran pushers starts at its newest
        notification (no history is pushed). Call before the evaluator starts."""
        mark = await self._queue.mark()
        if mark is None:
            mark = await self._queue.newest_notification()
            await self._queue.enqueue([], mark, now_ms(), self._email_delay_ms)
        self._mark = mark
        while rows := await self._queue.notifications_after(self._mark, 200):
            await self._enqueue(rows)
        self._tasks = [
            asyncio.create_task(self._follow()),
            asyncio.create_task(self._worker("push", self._push_due, self._queue.next_push_due)),
            asyncio.create_task(self._worker("email", self._mail_due, self._queue.next_digest_due)),
        ]

    async def stop(self) -> None:
        self._stopped = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _follow(self) -> None:
        while True:
            batches = [await self._incoming.get()]
            while not self._incoming.empty():
                batches.append(self._incoming.get_nowait())
            rows = [n for batch in batches for n in batch if n.stream_ordering > self._mark]
            while rows:
                try:
                    await self._enqueue(rows)
                    break
                except Exception:
                    # The database is away: try again rather than lose the deliveries.
                    log.exception("could not queue %d push deliveries; retrying", len(rows))
                    await asyncio.sleep(1)

    async def _enqueue(self, rows: Sequence[Notification]) -> None:
        mark = max(n.stream_ordering for n in rows)
        await self._queue.enqueue(rows, mark, now_ms(), self._email_delay_ms)
        self._mark = max(self._mark, mark)
        for wake in self._wakes.values():
            wake.set()

    # -- delivery ----------------------------------------------------------------------

    async def _worker(
        self, name: str, deliver_due: Callable[[], Awaitable[None]], next_due: Callable[[], Awaitable[int | None]],
    ) -> None:
        """Deliver what is due, then sleep until the next row is due or new rows come."""
        wake = self._wakes[name]
        while True:
            wake.clear()
            try:
                await deliver_due()
                due = await next_due()
            except Exception:
                log.exception("%s delivery failed; trying again", name)
                await asyncio.sleep(1)
                continue
            timeout = None if due is None else max(due - now_ms(), 0) / 1000
            if timeout == 0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    async def _push_due(self) -> None:
        due = await self._queue.due_pushes(now_ms(), 100)
        by_pusher: dict[tuple[str, str, str], list[QueuedPush]] = {}
        for row in due:
            by_pusher.setdefault((row.user_id, row.app_id, row.pushkey_sha256), []).append(row)
        await asyncio.gather(*(self._push_in_order(rows) for rows in by_pusher.values()))

    async def _push_in_order(self, rows: Sequence[QueuedPush]) -> None:
        """One pusher's due deliveries, in order; a failure leaves the rest behind it."""
        for row in rows:
            pusher = row.pusher
            if pusher is None or row.actions is None:
                await self._queue.delivered(row.id)  # the pusher or the notification is gone
                continue
            answer = await self._gateway.notify(pusher["data"]["url"], await self._body(pusher, row, row.actions))
            if answer.retry:
                if row.attempts + 1 >= MAX_ATTEMPTS:
                    log.warning("gave up pushing %s to %s", row.event_id, pusher["data"]["url"])
                    await self._queue.delivered(row.id)
                    continue
                backoff_s = min(FIRST_BACKOFF_S * 2 ** row.attempts, MAX_BACKOFF_S)
                await self._queue.retry_later(row, now_ms() + int(backoff_s * 1000))
                return
            if pusher["pushkey"] in answer.rejected:
                # Spec (push gateway API): a rejected pushkey's pusher must go.
                await self._store.delete_pusher(row.user_id, row.app_id, pusher["pushkey"])
                await self._queue.drop_pusher(row)
                self._by_user = None
                return
            await self._queue.delivered(row.id)

    async def _body(self, pusher: dict[str, Any], n: QueuedPush, actions: list[Any]) -> dict[str, Any]:
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
            pusher=pusher, event=event, actions=actions, unread=await self._unread_total(n.user_id),
            sender_display_name=sender_name if isinstance(sender_name, str) else None,
            room_name=room_name if isinstance(room_name, str) else None,
            user_is_target=event.get("state_key") == n.user_id,
        )

    async def _unread_rows(self, user_id: str) -> list[Notification]:
        rows, read = await self._unread.get(user_id)
        return [n for n in rows if not is_read(n, read)]

    async def _unread_total(self, user_id: str) -> int:
        return len(await self._unread_rows(user_id))

    async def _mail_due(self) -> None:
        for digest in await self._queue.due_digests(now_ms()):
            await self._send_digest(digest)

    async def _send_digest(self, digest: DueDigest) -> None:
        """Mail what is still unread and was not mailed before, to each email pusher."""
        user_id = digest.user_id
        emails = [p for p in await self._pushers_of(user_id) if p["kind"] == "email"]
        unread = sorted(
            (n for n in await self._unread_rows(user_id) if n.stream_ordering > digest.mailed_upto),
            key=lambda n: n.stream_ordering,
        )
        if not unread or not emails or self._mailer is None:
            await self._queue.digest_done(user_id, digest.mailed_upto)  # read (or unsubscribed) meanwhile
            return
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
        sent = [await self._mailer.send(p["pushkey"], subject, text) for p in emails]
        if all(sent) or digest.attempts + 1 >= MAX_ATTEMPTS:
            await self._queue.digest_done(user_id, unread[-1].stream_ordering)
        else:
            backoff_s = min(FIRST_BACKOFF_S * 2 ** digest.attempts, MAX_BACKOFF_S)
            await self._queue.digest_later(digest, now_ms() + int(backoff_s * 1000))
