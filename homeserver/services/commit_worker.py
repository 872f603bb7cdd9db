"""A post-commit worker with a durable progress mark (what push evaluation and the search
index share).

A room-writer subscriber must be cheap and synchronous (docs/architecture.md, "fan-out
after commit"); work that needs the database is queued here and done by the worker's own
task, never on the send path. The work stores its output together with its progress mark
in one transaction, so after a crash the events after the mark are processed again on
start (the work must be idempotent over a re-run). Under load everything queued is taken
at once: one transaction for many commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from homeserver.services.fanout import Committed

log = logging.getLogger(__name__)
T = TypeVar("T")
# The mark is written with every batch that changes something, else at most once per this
# many stream positions: a restart repeats at most that much work.
PROGRESS_EVERY = 1000
RETRY_S = 1.0


class MarkedWork(Protocol):
    """What a worker does; each method stores its output and the mark in one transaction."""

    async def load_mark(self) -> int | None:
        """The stored progress mark; None when the work never ran on this database."""

    async def catch_up(self, after: int, upto: int) -> int | None:
        """Process (a batch of) the stored events in (after, upto] and store the mark at the
        last one processed; return that position, or None when there was nothing."""

    async def apply(self, commits: Sequence[Committed], done: int, position: int, save_mark: bool) -> bool:
        """Process what the commits hold beyond `done`; store the output with the mark at
        `position` when there is output or `save_mark`; True when the mark was stored."""


class CommitWorker:
    def __init__(self, *, name: str, work: MarkedWork, fresh_from_newest: bool, wait_s: float) -> None:
        """`fresh_from_newest`: on a database the work never ran on, start at the newest
        event (history is not processed) instead of the beginning. `wait_s` bounds
        `wait_for` (only a stuck database makes readers wait that long)."""
        self._name = name
        self._work = work
        self._fresh_from_newest = fresh_from_newest
        self._wait_s = wait_s
        self._queue: asyncio.Queue[Committed] = asyncio.Queue()
        self._done = 0
        self._saved = 0  # the mark as stored
        self._heard = 0  # commits heard of ...
        self._handled = 0  # ... and handled (backfill commits have no new position to wait on)
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def done(self) -> int:
        return self._done

    def on_committed(self, commit: Committed) -> None:
        self._heard += 1
        self._queue.put_nowait(commit)

    async def start(self, upto: int) -> None:
        """Follow the writer; first (in the worker's task) process what the last run did not."""
        stored = await self._work.load_mark()
        mark = stored if stored is not None else (upto if self._fresh_from_newest else 0)
        self._done = mark
        # A first run stores its starting mark at once: otherwise a crash before the first
        # save would start the next run at its own newest event, skipping what came between.
        self._saved = mark if stored is not None else -1
        self._task = asyncio.create_task(self._run(upto))

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if self._queue.empty() and self._done > self._saved:
            try:
                await self._work.apply((), self._done, self._done, True)
            except Exception:
                log.exception("%s: could not save the progress mark", self._name)

    async def caught_up(self) -> None:
        """Until every commit heard of so far is processed (bounded by wait_s)."""
        heard = self._heard
        await self._until(lambda: self._handled >= heard, f"{heard - self._handled} commits")

    async def wait_for(self, position: int) -> None:
        """Until everything up to `position` is processed (bounded by wait_s)."""
        await self._until(lambda: self._done >= position, f"{self._done} < {position}")

    async def _until(self, reached: Callable[[], bool], behind: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        while not reached() and self._task is not None and not self._task.done():
            self._advanced.clear()
            try:
                await asyncio.wait_for(self._advanced.wait(), max(deadline - loop.time(), 0))
            except TimeoutError:
                log.warning("%s is behind (%s)", self._name, behind)
                return

    async def _run(self, upto: int) -> None:
        while self._done < upto:
            last = await self._retrying(self._work.catch_up, self._done, upto)
            if last is None:
                break
            self._done = self._saved = last
            self._advanced.set()
        self._done = max(self._done, upto)
        if self._saved < self._done:
            await self._retrying(self._work.apply, (), self._done, self._done, True)
            self._saved = self._done
        self._advanced.set()
        while True:
            commits = [await self._queue.get()]
            while not self._queue.empty():
                commits.append(self._queue.get_nowait())
            # Commits of backfilled history (positions counting down from 0) are handed over
            # too; the work decides what they mean to it (search indexes them, push does not).
            position = max(self._done, *(c.position for c in commits))
            must_mark = position - self._saved >= PROGRESS_EVERY
            if await self._retrying(self._work.apply, commits, self._done, position, must_mark):
                self._saved = position
            self._done = position
            self._handled += len(commits)
            self._advanced.set()

    async def _retrying(self, step: Callable[..., Awaitable[T]], *args: Any) -> T:
        while True:
            try:
                return await step(*args)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is away: try again rather than lose the work.
                log.exception("%s failed; retrying", self._name)
                await asyncio.sleep(RETRY_S)
