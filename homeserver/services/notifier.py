"""Wakes long-polling /sync (and WebSocket) waiters.

Each idle waiter costs one future in a per-user set; a new event wakes only
the users it concerns. Nothing polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import attrs


@attrs.frozen
class SyncToken:
    """A position on every stream a client syncs. Opaque to clients: ``s{events}_{account_data}``."""

    events: int = 0
    account_data: int = 0

    def encode(self) -> str:
        return f"s{self.events}_{self.account_data}"

    @classmethod
    def parse(cls, token: str) -> SyncToken:
        if not token.startswith("s"):
            raise ValueError(token)
        parts = [int(p) for p in token[1:].split("_")]
        if not parts or any(p < 0 for p in parts):
            raise ValueError(token)
        return cls(*parts[:2])

    def is_after(self, other: SyncToken) -> bool:
        return self.events > other.events or self.account_data > other.account_data


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.events_position = 0
        self.account_data_position = 0

    def current_token(self) -> SyncToken:
        return SyncToken(self.events_position, self.account_data_position)

    def register(self, user_id: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(user_id, set()).add(fut)
        return fut

    def unregister(self, user_id: str, fut: asyncio.Future[None]) -> None:
        waiting = self._waiters.get(user_id)
        if waiting is not None:
            waiting.discard(fut)
            if not waiting:
                del self._waiters[user_id]

    def waiting_count(self) -> int:
        return sum(len(v) for v in self._waiters.values())

    def on_events(self, position: int, user_ids: Iterable[str]) -> None:
        self.events_position = max(self.events_position, position)
        self._wake(user_ids)

    def on_account_data(self, position: int, user_id: str) -> None:
        self.account_data_position = max(self.account_data_position, position)
        self._wake((user_id,))

    def _wake(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            for fut in self._waiters.pop(user_id, ()):
                if not fut.done():
                    fut.set_result(None)
