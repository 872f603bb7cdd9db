"""The post-commit worker with a progress mark that push evaluation and the search index
share: where a first run starts, that its mark is stored at once, that backfill commits
(positions below 0) reach the work and are waited for, and that a failing store is retried
without losing a commit."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from homeserver.services import commit_worker
from homeserver.services.commit_worker import CommitWorker
from homeserver.services.fanout import Committed
from tests.appservice.conftest import wait_until


def commit_at(position: int) -> Committed:
    """A commit whose highest position is `position` (a membership change carries it)."""
    return Committed(events=(), membership_changes=(("@a:hs.test", position),))


class Work:
    """Records what the worker hands over; `fail` makes the next applies raise."""

    def __init__(self, mark: int | None, stored: Sequence[int] = ()) -> None:
        self.mark = mark
        self.stored = list(stored)  # positions of stored events, for catch_up
        self.applied: list[tuple[list[int], int, int]] = []
        self.caught: list[int] = []
        self.fail = 0

    async def load_mark(self) -> int | None:
        return self.mark

    async def catch_up(self, after: int, upto: int) -> int | None:
        batch = [p for p in self.stored if after < p <= upto][:2]
        if not batch:
            return None
        self.caught += batch
        self.mark = batch[-1]
        return batch[-1]

    async def apply(self, commits: Sequence[Committed], done: int, position: int, save_mark: bool) -> bool:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database away")
        self.applied.append(([c.position for c in commits], done, position))
        if commits or save_mark:
            self.mark = position
            return True
        return False


async def test_a_first_run_from_the_newest_event_stores_its_mark_at_once() -> None:
    work = Work(mark=None, stored=[1, 2, 3])
    worker = CommitWorker(name="t", work=work, fresh_from_newest=True, wait_s=5)
    await worker.start(3)

    async def stored() -> bool:
        return work.mark is not None

    await wait_until(stored, "the worker's task to store its first mark", timeout=5)
    assert work.mark == 3  # where it started is remembered before anything else...
    assert work.caught == []  # ...and history is not processed
    await worker.stop()


async def test_a_restart_catches_up_from_its_mark_then_follows_commits() -> None:
    work = Work(mark=1, stored=[1, 2, 3, 4, 5])
    worker = CommitWorker(name="t", work=work, fresh_from_newest=True, wait_s=5)
    worker.on_committed(commit_at(6))  # heard while starting
    await worker.start(5)
    await worker.caught_up()
    assert work.caught == [2, 3, 4, 5]
    assert work.applied[-1] == ([6], 5, 6) and worker.done == 6
    await worker.stop()


async def test_backfill_commits_reach_the_work_and_are_waited_for() -> None:
    work = Work(mark=10)
    worker = CommitWorker(name="t", work=work, fresh_from_newest=False, wait_s=5)
    await worker.start(10)
    await worker.caught_up()
    worker.on_committed(commit_at(-4))  # backfilled history counts down from 0
    await worker.caught_up()
    assert work.applied[-1] == ([-4], 10, 10)  # handed over; the position does not go back
    assert worker.done == 10
    await worker.stop()


async def test_a_failing_store_is_retried_and_nothing_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commit_worker, "RETRY_S", 0.01)
    work = Work(mark=0)
    worker = CommitWorker(name="t", work=work, fresh_from_newest=False, wait_s=5)
    await worker.start(0)
    await worker.caught_up()
    work.fail = 2
    worker.on_committed(commit_at(1))
    worker.on_committed(commit_at(2))
    await worker.caught_up()
    assert [p for positions, _, _ in work.applied for p in positions] == [1, 2]
    assert work.mark == 2
    await worker.stop()
