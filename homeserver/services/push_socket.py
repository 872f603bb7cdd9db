"""WebSocket push: the sync engine's push transport (protocol: docs/websocket.md).

A socket is a device's /sync that never ends: each time the notifier says something
concerns the user, the engine computes what the device gets since the last position
sent, and the answer goes out as one `sync` frame. The database is the offline queue:
a device that comes back resumes from the position it acknowledged last (kept per
device in `sync_acks`), so whatever was sent but not acknowledged is sent again.

What a socket holds in memory is bounded: the positions sent and not acknowledged.
Past `coalesce_after` of them, frames carrying only typing or presence are dropped (and
mixed frames lose those sections); past `max_unacked` the socket is closed with
CLOSE_BEHIND and the client resumes from its acknowledged position.

The user-level part of a frame (rooms, presence, account data) is serialised once per
(user, filter, since, now) and shared by every device at the same position; only the
per-device sections (to-device, device lists, key counts) are encoded per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs

from homeserver.core.errors import MatrixError
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.ephemeral import PresenceService
from homeserver.services.filtering import SyncFilter
from homeserver.services.lru import LruCache
from homeserver.services.notifier import SyncToken
from homeserver.services.room_material import encode_sync
from homeserver.services.sync_engine import SyncEngine
from storage.stores.sync_acks import SyncAckStore

log = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's, RFC 6455 section 7.4.2).
CLOSE_GOING_AWAY = 1001  # server shutting down: reconnect elsewhere / later
CLOSE_TOO_BIG = 1009  # a client frame over the size limit
CLOSE_BAD_REQUEST = 4000  # a frame before `auth` that is not `auth`, or a bad `since`
CLOSE_UNAUTHORIZED = 4001  # token missing, unknown, or revoked (logout)
CLOSE_HEARTBEAT = 4002  # no frame from the client within dead_after_ms
CLOSE_REPLACED = 4003  # a newer socket of the same device took over
CLOSE_BEHIND = 4008  # too many unacknowledged frames: resume from the acknowledged position

_DEVICE_KEYS = ("next_batch", "to_device", "device_lists", "device_one_time_keys_count",
                "device_unused_fallback_key_types")
ACK_FLUSH_S = 1.0  # acknowledged positions are stored at most this late (and at close)
_PRESENCE_RANK = {"offline": 0, "unavailable": 1, "online": 2}
_encode = encode_sync  # room events may be shared pre-serialised bytes


@attrs.frozen
class SocketLimits:
    heartbeat_interval_ms: int = 30_000  # advertised: the client pings this often
    dead_after_ms: int = 60_000  # no frame for this long: the socket is closed
    coalesce_after: int = 32  # unacked frames before typing/presence are dropped
    max_unacked: int = 256  # unacked frames before the socket is closed (CLOSE_BEHIND)
    max_frame_bytes: int = 65_536 + 4096  # a client frame: an event plus its envelope


class FrameSink(Protocol):
    """What a transport gives a session: send bytes, close with a code."""

    @property
    def closed(self) -> bool: ...

    async def send(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@attrs.define(eq=False)
class PushSession:
    requester: Requester
    sync_filter: SyncFilter
    filter_key: str
    sink: FrameSink
    presence: str = "online"
    position: SyncToken | None = None  # last position sent (None: nothing yet)
    acked: SyncToken | None = None  # last position the client acknowledged
    unacked: deque[SyncToken] = attrs.Factory(deque)
    dropped_ephemeral: int = 0  # frames (or sections) dropped while coalescing

    @property
    def key(self) -> tuple[str, str]:
        return (self.requester.user_id, self.requester.device_id)


class SocketRegistry:
    """Live sockets by device, with no dependencies, so that logout (AuthService's
    device-deleted hook) can reach them. One socket per device: a newer one wins."""

    def __init__(self) -> None:
        self._by_device: dict[tuple[str, str], PushSession] = {}
        self._by_user: dict[str, set[PushSession]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._by_device)

    def add(self, session: PushSession) -> PushSession | None:
        """Register `session`; the device's previous socket (now replaced) is returned."""
        old = self._by_device.get(session.key)
        if old is not None:
            self._by_user[old.requester.user_id].discard(old)
        self._by_device[session.key] = session
        self._by_user.setdefault(session.requester.user_id, set()).add(session)
        return old

    def remove(self, session: PushSession) -> bool:
        """Forget `session`; False if it had already been replaced."""
        users = self._by_user.get(session.requester.user_id)
        if users is not None:
            users.discard(session)
            if not users:
                del self._by_user[session.requester.user_id]
        if self._by_device.get(session.key) is session:
            del self._by_device[session.key]
            return True
        return False

    def of_user(self, user_id: str) -> set[PushSession]:
        return self._by_user.get(user_id, set())

    def _close_later(self, session: PushSession, code: int, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(session.sink.close(code, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def device_gone(self, user_id: str, device_id: str) -> None:
        """Logout or device deletion: the token is revoked, so its socket closes."""
        session = self._by_device.get((user_id, device_id))
        if session is not None:
            self._close_later(session, CLOSE_UNAUTHORIZED, "M_UNKNOWN_TOKEN: logged out")

    async def close_all(self, code: int, reason: str) -> int:
        sessions = list(self._by_device.values())
        await asyncio.gather(*(s.sink.close(code, reason) for s in sessions), return_exceptions=True)
        return len(sessions)


class PushSockets:
    """Runs the sessions: resume point, frames, acknowledgements, presence."""

    def __init__(
        self, *, engine: SyncEngine, acks: SyncAckStore, presence: PresenceService,
        registry: SocketRegistry, limits: SocketLimits,
    ) -> None:
        self._engine = engine
        self._notifier = engine.notifier
        self._acks = acks
        self._presence = presence
        self.registry = registry
        self.limits = limits
        # (user, filter, since, now) -> (response without device sections, its bytes)
        self._shared: LruCache[tuple[str, str, str, str], tuple[dict[str, Any], bytes]] = LruCache(4096)
        self.frames_encoded = 0  # shared parts encoded (the rest were reused)
        self._dirty: dict[tuple[str, str], str] = {}  # acknowledged, not yet stored
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    # -- session life ----------------------------------------------------------

    async def open(
        self, requester: Requester, sync_filter: SyncFilter, filter_key: str, sink: FrameSink,
        since: str | None, presence: str,
    ) -> PushSession:
        """Where the session starts: the client's `since`, else the device's acknowledged
        position, else an initial sync. Replaces the device's previous socket."""
        if presence not in _PRESENCE_RANK:
            raise MatrixError(400, "M_INVALID_PARAM", "presence must be online, offline or unavailable")
        key = (requester.user_id, requester.device_id)
        # An acknowledgement not written yet (its socket may still be closing) is newer.
        start = since or self._dirty.get(key) or await self._acks.get(*key)
        position: SyncToken | None = None
        if start:
            try:
                position = SyncToken.parse(start)
            except ValueError:
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid since token") from None
        session = PushSession(requester, sync_filter, filter_key, sink, presence, position, position)
        if since and position is not None:
            # A client resuming from `since` has processed everything before it.
            self._mark_acked(session.key, since)
        old = self.registry.add(session)
        if old is not None:
            await old.sink.close(CLOSE_REPLACED, "replaced by a newer connection of this device")
        await self._presence_changed(requester.user_id)
        return session

    async def closed(self, session: PushSession) -> None:
        """The socket ended (any reason): presence is the max over the user's other sockets."""
        await self.flush_acks(only=session.key)
        if self.registry.remove(session):
            await self._presence_changed(session.requester.user_id)

    def ready_frame(self, session: PushSession) -> bytes:
        return _encode({
            "op": "ready", "user_id": session.requester.user_id,
            "device_id": session.requester.device_id,
            "since": session.position.encode() if session.position else None,
            "heartbeat_interval_ms": self.limits.heartbeat_interval_ms,
            "dead_after_ms": self.limits.dead_after_ms,
        })

    async def pump(self, session: PushSession) -> None:
        """Send frames until the socket closes: woken by the notifier, never polling."""
        user = session.requester.user_id
        first = session.position is None
        while not session.sink.closed:
            waiter = self._notifier.register(user)
            try:
                now = self._notifier.current_token()
                if first or session.position is None or now.is_after(session.position):
                    first = False
                    if not await self._push(session, now):
                        return
                    continue  # the position may stop short of now (to-device batches)
                if self._notifier.closed:
                    return
                await waiter
            finally:
                self._notifier.unregister(user, waiter)

    async def _push(self, session: PushSession, now: SyncToken) -> bool:
        """One frame from the session's position to `now`; False once the socket is closed."""
        since = session.position
        req = session.requester
        key = (req.user_id, session.filter_key, since.encode() if since else "", now.encode())
        shared = self._shared.get(key)
        if shared is None:
            resp = await self._engine.compute(req, since, session.sync_filter, False, now, device=False)
            for k in _DEVICE_KEYS:
                resp.pop(k, None)
            shared = (resp, _encode(resp))
            self._shared.put(key, shared)
            self.frames_encoded += 1
        resp, body = shared
        acked_td = session.acked.to_device if session.acked is not None else 0
        device = await self._engine.device_part(req, since, now, resp["rooms"], acked_td)
        position = SyncToken.parse(device["next_batch"])
        coalescing = len(session.unacked) >= self.limits.coalesce_after
        content, ephemeral = _weigh(resp, device)
        if since is not None and not content and not ephemeral:
            session.position = position  # nothing for this device
            return True
        if len(session.unacked) >= self.limits.max_unacked:
            await session.sink.close(CLOSE_BEHIND, "too far behind: resume from the acknowledged position")
            return False
        if coalescing and since is not None:
            if not content:
                session.position = position  # only typing/presence: dropped
                session.dropped_ephemeral += 1
                return True
            if ephemeral:
                body = _encode(_without_typing_presence(resp))
                session.dropped_ephemeral += 1
        head = _encode({"op": "sync", **device})
        frame = head[:-1] + b"," + body[1:]
        try:
            await session.sink.send(frame)
        except (ConnectionError, RuntimeError):
            return False
        session.position = position
        session.unacked.append(position)
        return True

    # -- client operations -----------------------------------------------------

    async def ack(self, session: PushSession, next_batch: str) -> None:
        """The client processed everything up to `next_batch` (a position we sent)."""
        try:
            token = SyncToken.parse(next_batch)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid next_batch") from None
        if token not in session.unacked:
            if token == session.acked:
                return  # acknowledged twice: nothing to do
            raise MatrixError(400, "M_INVALID_PARAM", "next_batch was not sent on this connection")
        while session.unacked:
            if session.unacked.popleft() == token:
                break
        session.acked = token
        # Written in batches (ACK_FLUSH_S) and when the socket closes: one transaction
        # for many acks. A crash in between re-sends at most that much (never loses any).
        self._mark_acked(session.key, next_batch)

    def _mark_acked(self, key: tuple[str, str], position: str) -> None:
        self._dirty[key] = position
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(ACK_FLUSH_S, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        task = asyncio.get_running_loop().create_task(self.flush_acks())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush_acks(self, only: tuple[str, str] | None = None) -> None:
        """Persist acknowledged positions (all, or one device's)."""
        if only is not None:
            position = self._dirty.get(only)
            rows = [(only[0], only[1], position)] if position is not None else []
        else:
            rows = [(u, d, p) for (u, d), p in self._dirty.items()]
        try:
            await self._acks.put_many(rows, now_ms())
        except Exception:
            log.exception("could not store %d acknowledged positions", len(rows))
            return
        # Kept in memory until written, so a reconnect meanwhile resumes from it.
        for u, d, p in rows:
            if self._dirty.get((u, d)) == p:
                del self._dirty[(u, d)]

    async def set_presence(self, session: PushSession, presence: str, status_msg: str | None) -> None:
        """The device's own state; the user's is the most present of their devices."""
        if presence not in _PRESENCE_RANK:
            raise MatrixError(400, "M_INVALID_PARAM", "presence must be online, offline or unavailable")
        session.presence = presence
        await self._presence_changed(session.requester.user_id, status_msg, force=status_msg is not None)

    async def _presence_changed(self, user_id: str, status_msg: str | None = None, force: bool = False) -> None:
        states = [s.presence for s in self.registry.of_user(user_id)]
        best = max(states, key=_PRESENCE_RANK.__getitem__) if states else "offline"
        current = self._presence.get(user_id).get("presence", "offline")
        if best != current or force:
            await self._presence.set(user_id, user_id, best, status_msg)


def _weigh(resp: dict[str, Any], device: dict[str, Any]) -> tuple[bool, bool]:
    """(carries anything but typing/presence, carries typing/presence)."""
    rooms = resp["rooms"]
    ephemeral = bool(resp["presence"]["events"])
    content = bool(
        rooms["invite"] or rooms["leave"] or rooms.get("knock") or resp["account_data"]["events"]
        or device["to_device"]["events"] or device["device_lists"]["changed"]
        or device["device_lists"]["left"]
    )
    for section in rooms["join"].values():
        events = section.get("ephemeral", {}).get("events", [])
        if any(e.get("type") == "m.typing" for e in events):
            ephemeral = True
        if (
            section["timeline"]["events"] or section["state"]["events"]
            or section["account_data"]["events"]
            or any(e.get("type") != "m.typing" for e in events)
        ):
            content = True
    return content, ephemeral


def _without_typing_presence(resp: dict[str, Any]) -> dict[str, Any]:
    """A coalescing frame: the newest typing state will come with a later frame."""
    rooms = dict(resp["rooms"])
    join: dict[str, Any] = {}
    for room_id, section in rooms["join"].items():
        events = [e for e in section.get("ephemeral", {}).get("events", []) if e.get("type") != "m.typing"]
        join[room_id] = {**section, "ephemeral": {"events": events}}
    rooms["join"] = join
    return {**resp, "rooms": rooms, "presence": {"events": []}}


async def run_guarded(coro: Awaitable[None], on_error: Callable[[BaseException], None]) -> None:
    """Await `coro`; an exception is reported, never raised into the transport."""
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await coro
        except Exception as exc:  # a failing session must not take the server down
            on_error(exc)
