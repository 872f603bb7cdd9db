"""Wakes long-polling /sync (and WebSocket) waiters.

NotifierPort is what the services use; Notifier is the in-process
implementation (a Redis-backed one can replace it to wake waiters on other
workers). Each idle waiter costs one future in a per-user set; a change wakes
only the users it concerns. Nothing polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from homeserver.services.fanout import Committed

# Appended streams keep old tokens parseable: missing trailing positions read as 0.
STREAMS = ("events", "account_data", "typing", "receipts", "presence", "to_device", "device_lists")
# Streams whose every change names exactly the users it concerns, so `maybe_changed` may
# answer per user (a woken /sync then skips their queries).
PER_USER_STREAMS = frozenset({"account_data", "to_device", "device_lists"})


@attrs.frozen
class SyncToken:
    """A position on every stream a client syncs. Opaque to clients:
    ``s{events}_{account_data}_{typing}_{receipts}_{presence}_{to_device}_{device_lists}``."""

    events: int = 0
    account_data: int = 0
    typing: int = 0
    receipts: int = 0
    presence: int = 0
    to_device: int = 0
    device_lists: int = 0

    def encode(self) -> str:
        return "s" + "_".join(str(getattr(self, s)) for s in STREAMS)

    @classmethod
    def parse(cls, token: str) -> SyncToken:
        if not token.startswith("s"):
            raise ValueError(token)
        parts = [int(p) for p in token[1:].split("_")]
        if not parts or len(parts) > len(STREAMS) or any(p < 0 for p in parts):
            raise ValueError(token)
        return cls(*parts)

    def is_after(self, other: SyncToken) -> bool:
        return any(getattr(self, s) > getattr(other, s) for s in STREAMS)


class NotifierPort(Protocol):
    """Stream positions and per-user wake-ups for long-polling clients."""

    @property
    def closed(self) -> bool:
        """True once the server is shutting down: waits end at once."""

    def close(self) -> int:
        """Wake every waiter and end later waits at once; how many were woken."""

    @property
    def events_position(self) -> int: ...

    def current_token(self) -> SyncToken: ...

    def seed(self, stream: str, position: int) -> None:
        """The stream's position at start-up (nothing older is known to have changed)."""

    def maybe_changed(self, stream: str, user_id: str, since: int) -> bool:
        """False only when certainly nothing on `stream` concerned the user after `since`."""

    def register(self, user_id: str) -> asyncio.Future[None]:
        """A future resolved the next time something concerns the user."""

    def unregister(self, user_id: str, fut: asyncio.Future[None]) -> None: ...

    def waiting_users(self) -> list[str]:
        """Users with a waiter now (woken all at once when a worker's commits were lost)."""

    def advance(self, stream: str, position: int, user_ids: Iterable[str]) -> None:
        """A stream moved to `position`; wake the users it concerns."""

    def on_events(self, position: int, user_ids: Iterable[str]) -> None: ...

    def on_account_data(self, position: int, user_id: str) -> None: ...


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._positions = dict.fromkeys(STREAMS, 0)
        # Per-user positions of changes seen since start (floor = position at start).
        self._floor = dict.fromkeys(STREAMS, 0)
        self._user_last: dict[tuple[str, str], int] = {}
        self._closed = False
        # Users woken per stream, for /metrics (synapse_notifier_users_woken_by_stream).
        self.woken: dict[str, int] = dict.fromkeys(STREAMS, 0)

    @property
    def waiting(self) -> int:
        """Waits registered now (long-polls and sockets between two pushes); read on scrape."""
        return sum(len(w) for w in self._waiters.values())

    @property
    def closed(self) -> bool:
        """True once the server is shutting down: waits end at once."""
        return self._closed

    def close(self) -> int:
        """Shutting down: wake every waiter now, and make later waits return at once,
        so long-polls answer instead of holding the shutdown for their whole timeout.
        Returns how many waiters were woken."""
        self._closed = True
        woken = 0
        for waiting in self._waiters.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_result(None)
                    woken += 1
        self._waiters.clear()
        return woken

    @property
    def events_position(self) -> int:
        return self._positions["events"]

    def current_token(self) -> SyncToken:
        return SyncToken(**self._positions)

    def seed(self, stream: str, position: int) -> None:
        self._positions[stream] = max(self._positions[stream], position)
        self._floor[stream] = self._positions[stream]

    def maybe_changed(self, stream: str, user_id: str, since: int) -> bool:
        """False only when certainly nothing on `stream` concerned the user after `since`."""
        return since < self._floor[stream] or self._user_last.get((stream, user_id), 0) > since

    def register(self, user_id: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            fut.set_result(None)
        else:
            self._waiters.setdefault(user_id, set()).add(fut)
        return fut

    def unregister(self, user_id: str, fut: asyncio.Future[None]) -> None:
        waiting = self._waiters.get(user_id)
        if waiting is not None:
            waiting.discard(fut)
            if not waiting:
                del self._waiters[user_id]

    def waiting_users(self) -> list[str]:
        return list(self._waiters)

    def advance(self, stream: str, position: int, user_ids: Iterable[str]) -> None:
        """A stream moved to `position`; wake the users it concerns."""
        self._positions[stream] = max(self._positions[stream], position)
        remember = stream in PER_USER_STREAMS
        for user_id in user_ids:
            if remember:
                self._user_last[(stream, user_id)] = position
            waiting = self._waiters.pop(user_id, None)
            if waiting:
                self.woken[stream] += 1
                for fut in waiting:
                    if not fut.done():
                        fut.set_result(None)

    def on_events(self, position: int, user_ids: Iterable[str]) -> None:
        self.advance("events", position, user_ids)

    def on_account_data(self, position: int, user_id: str) -> None:
        self.advance("account_data", position, (user_id,))


class WakeOnCommit:
    """A subscriber of the room writer: a commit that moved a room wakes its joined
    local users and anyone whose membership changed (an invite, a kick)."""

    def __init__(self, notifier: NotifierPort, server_name: str) -> None:
        self._notifier = notifier
        self._server_name = server_name

    def on_committed(self, commit: Committed) -> None:
        if commit.head is None and not commit.membership_changes:
            return
        wake = {user for user, _ in commit.membership_changes}
        if commit.head is not None:
            wake.update(commit.head.joined_local(self._server_name))
        self._notifier.on_events(commit.position, wake)
