"""Removes recalled (redacted) events' original content from storage once
``recall_content_retention_ms`` has passed (with the default 0 the event store does
it in the redaction's own commit and this task has nothing to do).

A commit subscriber: a commit with redactions wakes the task, which sleeps until the
earliest due purge. No polling: with nothing pending it waits for the next redaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from homeserver.services.clock import now_ms
from homeserver.services.fanout import Committed
from storage.stores.events import EventStore

log = logging.getLogger(__name__)


class RecallPurger:
    def __init__(self, events: EventStore) -> None:
        self._events = events
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def on_committed(self, commit: Committed) -> None:
        if commit.redactions:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="recall-purger")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                while await self._events.purge_due(now_ms()):
                    pass
                due = await self._events.next_purge_ts()
            except Exception:
                log.exception("purging recalled content failed; trying again in a minute")
                due = now_ms() + 60_000
            timeout = None if due is None else max(0.0, (due - now_ms()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
