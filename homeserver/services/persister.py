"""Batches event writes: every room's pending batch goes into one commit.

A single writer task drains the queue, merges what is waiting into one
transaction, and resolves each caller's future once it is durable. Stream
positions are allocated just before enqueueing (no await in between), so
commits happen in stream order and a reader never sees a gap fill in later.
"""

from __future__ import annotations

import asyncio
import logging

from homeserver.core.records import PersistBatch, StoreConflict
from storage.stores.events import EventStore

log = logging.getLogger(__name__)


class IdGenerator:
    """Monotonic in-process ids, seeded from the database at start-up (step -1 counts down)."""

    def __init__(self, start: int, step: int = 1) -> None:
        self._last = start
        self._step = step

    def next(self) -> int:
        self._last += self._step
        return self._last

    @property
    def last(self) -> int:
        return self._last


class Persister:
    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._queue: list[tuple[PersistBatch, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-persister")

    async def stop(self) -> None:
        """Finish every queued write (nothing acknowledged may be lost), then end."""
        if self._task is not None:
            self._stopping = True
            self._wakeup.set()
            await self._task
            self._task = None

    def enqueue(self, batch: PersistBatch) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, fut))
        self._wakeup.set()
        return fut

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                pending, self._queue = self._queue, []
                await self._write(pending)
            if self._stopping:
                return

    async def _write(self, pending: list[tuple[PersistBatch, asyncio.Future[None]]]) -> None:
        if len(pending) > 1:
            merged = PersistBatch()
            for batch, _ in pending:
                merged.extend(batch)
            try:
                await self._store.persist(merged)
            except StoreConflict:
                log.info("a batched write met a uniqueness conflict; retrying batches one by one")
            except Exception:
                log.exception("batched write failed; retrying batches one by one")
            else:
                for _, fut in pending:
                    if not fut.done():
                        fut.set_result(None)
                return
        for batch, fut in pending:
            try:
                await self._store.persist(batch)
            except Exception as exc:  # the caller sees the failure; others proceed
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(None)
