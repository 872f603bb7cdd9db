"""Reacting to state changes after commit (guests leaving when guest access closes, the
AI assistant joining a group that opts in).

`StateWatch` is a room-writer subscriber: it only notes which watched state changed (cheap
and synchronous, as fan-out subscribers must be). `StateReactor` has its own task that
hands each change to the handler for its event type, off the send path; a handler that
fails is logged and the next change is handled. A change committed just before a crash is
not reacted to after the restart (each handler says what that means for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

import attrs

from homeserver.services.fanout import Committed

log = logging.getLogger(__name__)


@attrs.frozen
class StateChange:
    room_id: str
    event_type: str
    state_key: str
    event_id: str  # the state event now in force


Handler = Callable[[StateChange], Awaitable[None]]


class StateWatch:
    def __init__(self, event_types: frozenset[str]) -> None:
        self._types = event_types
        self._changes: asyncio.Queue[StateChange] = asyncio.Queue()

    def on_committed(self, commit: Committed) -> None:
        if commit.head is None:
            return
        for (etype, skey), event_id in commit.state_delta.items():
            if etype in self._types and event_id is not None:
                self._changes.put_nowait(StateChange(commit.head.room_id, etype, skey, event_id))

    async def next_change(self) -> StateChange:
        return await self._changes.get()


class StateReactor:
    def __init__(self, *, watch: StateWatch, handlers: Mapping[str, Handler]) -> None:
        self._watch = watch
        self._handlers = dict(handlers)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            change = await self._watch.next_change()
            handler = self._handlers.get(change.event_type)
            if handler is None:
                continue
            try:
                await handler(change)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reacting to %s in %s failed", change.event_type, change.room_id)
