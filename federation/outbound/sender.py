"""Outbound federation: one transaction queue per destination.

Spec: Server-Server API, "Transactions" (https://spec.matrix.org/v1.11/server-server-api/#transactions).
This module queues, batches, backs off and persists; how a transaction travels, and what the
peer's answer means, is the business of a ``Transport`` (``federation.outbound.transport``).

PDUs are durable. ``send_pdu`` commits one ``federation_outbox`` row per destination before it
returns; a row is deleted only after the transport reported the transaction that carried it
delivered, so a crash or restart loses nothing (``start()`` resends every pending row).
EDUs are best effort: they live in memory, coalesced per destination, and ride along with the
next transaction.

One asyncio worker per destination, started on demand and gone when it has nothing to send,
keeps one transaction in flight at a time: up to ``max_pdus`` PDUs (oldest first) and
``max_edus`` EDUs. A batch keeps its txnId and body across retries, so a peer that already
processed it (and we missed the answer) replays its stored response. txnIds are a
per-process random prefix plus a counter, never an outbox id: SQLite reuses rowids once the
newest rows are deleted, and a reused txnId would be deduplicated away by the receiver.

Outcomes of one attempt (``Transport.deliver``):

- ``Delivered``: per-PDU errors in it mean the peer looked at the PDU and refused it;
  retrying cannot help, so they are logged and count as delivered. The rows are deleted;
  the backoff resets.
- ``Retry``: retry the same batch with exponential backoff (``backoff_initial_ms`` doubling
  to ``backoff_max_ms``, +/-20 % jitter; longer if the peer asked for it, up to
  ``backoff_max_ms``). The failure count and the next retry time are kept in
  ``federation_destinations``, so the backoff survives restarts. PDUs wait forever.
- ``Held``: the transport handed nothing over because the way to the peer is backlogged
  (AMQP: its queue on our broker is not draining). The batch is dropped from memory (its
  rows stay) so that later PDUs join it in a full batch; the backoff does not grow; the
  worker asks again after the transport's ``after_ms``.
- ``Refused``: the peer answered but refused the whole transaction. The batch's EDUs are
  dropped (they are best effort, and a bad EDU must not keep spoiling the transaction), the
  PDUs are retried in a new transaction (new txnId: the body changed) with the same backoff.
  After ``max_rejections`` refused attempts of the same batch its PDUs are dropped with an
  error log, and the queue moves on: a peer that can never accept a transaction must not
  block everything behind it. Some refusals are transient (a peer that cannot fetch our
  keys yet), hence the retries first.

Two ways in besides send_pdu/send_edu:

- ``wake(destinations)`` (FederationSenderPort): rows were committed to ``federation_outbox``
  by someone else (the event persister, in the events' own transaction); start or nudge those
  workers. Like new PDUs and EDUs, it never shortens a backoff: a dead peer is not retried
  once per new event.
- ``retry_now(destination)``: skip the current backoff, because the peer shows signs of life
  (it sent us a request).

Catch-up that scales (as Synapse's catch-up does): a destination that failed
``catch_up_after_failures`` times in a row with more than ``catch_up_backlog`` PDUs queued
has its queue collapsed before the next attempt (``OutboxStore.collapse``): per room only
the newest PDU, plus every state event (memberships are never dropped); the peer fetches
the history before them with /get_missing_events, /state or backfill, as it would for any
gap. So a peer back after a long outage gets a transaction or so per room, not every
message, and a destination that is down for good cannot grow its queue without bound: the
collapse runs again after each further failure. Typing EDUs older than their useful life
(``typing_ttl_ms``) are dropped instead of sent late.

Whoever commits outbox rows must call ``wake`` *after* the commit: a worker stops when a read
found the queue short and nothing woke it since the read began.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import attrs

from federation.outbound.transport.base import (
    Delivered,
    DeliveryResult,
    Held,
    Refused,
    Retry,
    Transaction,
    Transport,
)
from homeserver.core.canonical_json import encode_canonical_json
from homeserver.core.records import RetryState
from storage.stores.outbox import OutboxStore

logger = logging.getLogger(__name__)

# last_success_ts is refreshed at most this often while a destination is healthy.
_SUCCESS_WRITE_INTERVAL_MS = 60_000


def _now_ms() -> int:
    return int(time.time() * 1000)


@attrs.define
class _Batch:
    txn_id: str
    ids: list[int]
    pdus: list[dict[str, Any]]
    edus: list[dict[str, Any]]
    origin_server_ts: int
    rejections: int = 0
    edu_ids: list[int] = attrs.Factory(list)  # durable EDUs among `edus`


class _Worker:
    """State of one destination's running worker."""

    __slots__ = ("batch", "collapse_due", "poked", "skip_backoff", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.skip_backoff = asyncio.Event()  # set by retry_now()
        self.poked = False  # new PDUs/EDUs since the worker last looked at the queue
        self.batch: _Batch | None = None  # the transaction in flight / being retried
        # A catch-up collapse may be needed (a new worker, or a failure since the last one).
        self.collapse_due = True


class _EduQueue:
    """Pending EDUs of one destination in arrival order, coalesced where a newer one
    supersedes an older one: typing per (room, user), receipts and presence merged."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._items: dict[Hashable, dict[str, Any]] = {}
        self._queued_at: dict[Hashable, int] = {}  # typing only: when it was queued (ms)
        self._seq = itertools.count()
        self.dropped = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, edu_type: str, content: Mapping[str, Any], now_ms: int = 0) -> None:
        if edu_type == "m.typing":
            key: Hashable = (edu_type, content.get("room_id"), content.get("user_id"))
            self._items.pop(key, None)  # the latest typing state wins, at the back
            self._items[key] = {"edu_type": edu_type, "content": dict(content)}
            self._queued_at[key] = now_ms
        elif edu_type == "m.receipt":
            key = (edu_type,)
            edu = self._items.get(key)
            if edu is None:
                edu = self._items[key] = {"edu_type": edu_type, "content": {}}
            merged = edu["content"]
            for room_id, by_type in content.items():
                room = merged.setdefault(room_id, {})
                for receipt_type, by_user in by_type.items():
                    room.setdefault(receipt_type, {}).update(by_user)
        elif edu_type == "m.presence":
            key = (edu_type,)
            edu = self._items.get(key)
            if edu is None:
                edu = self._items[key] = {"edu_type": edu_type, "content": {"push": []}}
            by_user = {p.get("user_id"): p for p in edu["content"]["push"]}
            by_user.update((p.get("user_id"), p) for p in content.get("push", ()))
            edu["content"]["push"] = list(by_user.values())
        else:  # device lists, to-device, unknown types: every one counts, in order
            self._items[("", next(self._seq))] = {"edu_type": edu_type, "content": dict(content)}
        while len(self._items) > self._cap:
            oldest = next(iter(self._items))
            del self._items[oldest]
            self._queued_at.pop(oldest, None)
            self.dropped += 1

    def take(self, limit: int, now_ms: int = 0, typing_ttl_ms: int | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` EDUs, oldest first; typing queued more than ``typing_ttl_ms``
        ago is dropped: it would tell the peer someone types who long stopped."""
        if typing_ttl_ms is not None:
            for key in [k for k, at in self._queued_at.items() if now_ms - at > typing_ttl_ms]:
                del self._items[key]
                del self._queued_at[key]
                self.expired += 1
        keys = list(itertools.islice(self._items, limit))
        for k in keys:
            self._queued_at.pop(k, None)
        return [self._items.pop(k) for k in keys]


class FederationSender:
    """Implements ``FederationSenderPort``; see the module docstring for the behaviour."""

    def __init__(
        self, server_name: str, transport: Transport, outbox: OutboxStore, *,
        clock: Callable[[], int] = _now_ms, max_pdus: int = 50, max_edus: int = 100,
        backoff_initial_ms: int = 1_000, backoff_max_ms: int = 600_000,
        max_rejections: int = 10, max_pending_edus: int = 1_000,
        catch_up_after_failures: int = 3, catch_up_backlog: int = 100, typing_ttl_ms: int = 30_000,
    ) -> None:
        self._server_name = server_name
        self._transport = transport
        self._outbox = outbox
        self._clock = clock
        self._max_pdus = max_pdus
        self._max_edus = max_edus
        self._backoff_initial_ms = backoff_initial_ms
        self._backoff_max_ms = backoff_max_ms
        self._max_rejections = max_rejections
        self._max_pending_edus = max_pending_edus
        self._catch_up_after = catch_up_after_failures
        self._catch_up_backlog = catch_up_backlog
        self._typing_ttl_ms = typing_ttl_ms
        # Plain counters for whoever exports metrics: PDUs collapsed away by catch-up,
        # typing EDUs dropped as stale.
        self.collapsed_pdus = 0
        self.expired_edus = 0
        self.held = 0  # attempts the transport held back (a backlogged AMQP queue)
        self._workers: dict[str, _Worker] = {}
        self._edus: dict[str, _EduQueue] = {}
        self._retry: dict[str, RetryState] = {}
        self._retry_complete = False  # after start(): a cache miss means "healthy"
        self._txn_prefix = secrets.token_hex(6)
        self._txn_counter = itertools.count(1)
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Catch up: start a worker for every destination with PDUs not yet acknowledged
        (each waits out its persisted backoff first)."""
        self._retry.update(await self._outbox.failing_destinations())
        self._retry_complete = True
        for destination in await self._outbox.pending_destinations():
            self._poke(destination)

    async def stop(self) -> None:
        """Cancel every worker. Unacknowledged PDUs stay in the outbox for the next start;
        pending EDUs are lost."""
        self._stopped = True
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._edus.clear()

    # -- FederationSenderPort ----------------------------------------------------------

    async def send_pdu(self, destinations: Iterable[str], pdu: Mapping[str, Any]) -> None:
        """Queue ``pdu`` for every destination but ourselves; durable once this returns."""
        targets = self._targets(destinations)
        if not targets:
            return
        pdu_json = encode_canonical_json(pdu).decode("utf-8")
        try:
            await self._outbox.append(targets, pdu_json, self._clock())
        finally:
            # Even if we were cancelled around the commit: a spurious poke costs one query.
            for destination in targets:
                self._poke(destination)

    def send_edu(self, destinations: Iterable[str], edu_type: str, content: Mapping[str, Any]) -> None:
        """Queue an EDU in memory for every destination but ourselves (best effort)."""
        if self._stopped:
            return
        for destination in self._targets(destinations):
            queue = self._edus.get(destination)
            if queue is None:
                queue = self._edus[destination] = _EduQueue(self._max_pending_edus)
            queue.add(edu_type, content, self._clock())
            self._poke(destination)

    async def send_durable_edu(self, destinations: Iterable[str], edu_type: str, content: Mapping[str, Any]) -> None:
        """Queue an EDU that must not be lost (to-device messages): kept in the outbox
        until acknowledged, like a PDU; durable once this returns."""
        targets = self._targets(destinations)
        if not targets:
            return
        try:
            await self._outbox.append_edu(targets, {"edu_type": edu_type, "content": dict(content)}, self._clock())
        finally:
            for destination in targets:
                self._poke(destination)

    def wake(self, destinations: Iterable[str]) -> None:
        """Outbox rows for these destinations were committed elsewhere: deliver them (once any
        backoff is over)."""
        for destination in self._targets(destinations):
            self._poke(destination)

    def _targets(self, destinations: Iterable[str]) -> list[str]:
        """Distinct destinations in order, never ourselves."""
        if isinstance(destinations, str):  # a bare name is an Iterable[str] of letters
            destinations = (destinations,)
        return [d for d in dict.fromkeys(destinations) if d != self._server_name]

    # -- control and introspection -----------------------------------------------------

    def retry_now(self, destination: str) -> None:
        """Retry ``destination`` now instead of waiting out its backoff (the peer is back)."""
        state = self._retry.get(destination)
        if state is not None and state.retry_after_ts:
            self._retry[destination] = attrs.evolve(state, retry_after_ts=0)
        worker = self._workers.get(destination)
        if worker is not None:
            worker.skip_backoff.set()

    async def pending_count(self, destination: str) -> int:
        """PDUs queued for ``destination`` and not yet acknowledged."""
        return await self._outbox.pending_count(destination)

    def pending_edu_count(self, destination: str) -> int:
        queue = self._edus.get(destination)
        return len(queue) if queue is not None else 0

    def active_destinations(self) -> set[str]:
        """Destinations with a running worker."""
        return set(self._workers)

    def retry_state(self, destination: str) -> RetryState | None:
        """The cached backoff state of ``destination`` (None if never loaded)."""
        return self._retry.get(destination)

    # -- workers -----------------------------------------------------------------------

    def _poke(self, destination: str) -> None:
        if self._stopped:
            return
        worker = self._workers.get(destination)
        if worker is not None:
            worker.poked = True
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (sync caller): picked up by the next poke or start()
            return
        worker = self._workers[destination] = _Worker()
        # A fresh context: the worker outlives the request that poked it, so it must not
        # log (or send on) that request's id; each delivery sets its own (ObservedTransport).
        worker.task = loop.create_task(
            self._run(destination, worker), name=f"federation-sender:{destination}",
            context=contextvars.Context(),
        )

    async def _run(self, destination: str, worker: _Worker) -> None:
        errors = 0
        try:
            while True:
                try:
                    idle = await self._step(destination, worker)
                except Exception:
                    # Storage trouble (or a bug): back off in memory, never die silently.
                    errors += 1
                    delay = self._backoff_ms(errors)
                    logger.exception("federation sender %s: internal error, retrying in %d ms",
                                     destination, delay)
                    await self._sleep(worker, delay)
                    continue
                errors = 0
                if idle:
                    return  # no await since the queue was seen empty: no poke can be lost
        finally:
            if self._workers.get(destination) is worker:
                del self._workers[destination]

    async def _step(self, destination: str, worker: _Worker) -> bool:
        """One attempt at the head of the queue; True when there is nothing left to send."""
        state = await self._retry_state(destination)
        delay = state.retry_after_ts - self._clock()
        if delay > 0:
            await self._sleep(worker, delay)
        worker.skip_backoff.clear()
        if worker.collapse_due and state.failure_count >= self._catch_up_after:
            worker.collapse_due = False
            await self._collapse(destination, worker)

        batch = worker.batch
        if batch is None:
            worker.poked = False
            batch = await self._build_batch(destination)
            if batch is None:
                return not worker.poked
            worker.batch = batch

        result = await self._transmit(destination, batch)
        if isinstance(result, Held):
            # Nothing went out: let later PDUs join this batch (rebuilt next time), wait.
            self.held += 1
            self._unbatch(destination, worker)
            await self._sleep(worker, result.after_ms)
            return False
        if isinstance(result, Delivered):
            await self._outbox.delete(destination, batch.ids)
            await self._outbox.delete_edus(destination, batch.edu_ids)
            worker.batch = None
            await self._record_success(destination, state)
            # A short batch read everything committed before the read; later commits poke.
            return (
                len(batch.pdus) < self._max_pdus and len(batch.edus) < self._max_edus
                and not worker.poked and not self._edus.get(destination)
            )

        if isinstance(result, Refused):
            batch.rejections += 1
            if not batch.pdus or batch.rejections >= self._max_rejections:
                if batch.pdus:
                    first = batch.pdus[0]
                    logger.error(
                        "federation sender %s: GIVING UP on %d PDUs (first: %s in %s) after "
                        "%d refused transactions (last: %s)", destination,
                        len(batch.pdus), first.get("type"), first.get("room_id"),
                        batch.rejections, result.reason,
                    )
                else:
                    logger.warning("federation sender %s: dropping %d EDUs refused (%s)",
                                   destination, len(batch.edus), result.reason)
                await self._outbox.delete(destination, batch.ids)
                await self._outbox.delete_edus(destination, batch.edu_ids)
                worker.batch = None
            else:
                if batch.edus:
                    logger.warning("federation sender %s: dropping %d EDUs of a transaction "
                                   "refused (%s)", destination, len(batch.edus), result.reason)
                batch.edus = []
                await self._outbox.delete_edus(destination, batch.edu_ids)
                batch.edu_ids = []
                batch.txn_id = self._next_txn_id()  # the body changed
        worker.collapse_due = True
        await self._record_failure(
            destination, state, result.after_ms if isinstance(result, Retry) else None,
        )
        return False

    async def _collapse(self, destination: str, worker: _Worker) -> None:
        """Catch-up: a long backlog of a destination that keeps failing shrinks to the
        newest PDU per room plus state (see the module docstring)."""
        pending = await self._outbox.pending_count(destination)
        if pending <= self._catch_up_backlog:
            return
        removed = await self._outbox.collapse(destination)
        if not removed:
            return
        self.collapsed_pdus += removed
        logger.info("federation sender %s: catch-up, %d of %d queued PDUs left for the peer to "
                    "fetch", destination, removed, pending)
        # Its rows may be gone: rebuild the batch from what is left.
        self._unbatch(destination, worker)

    def _unbatch(self, destination: str, worker: _Worker) -> None:
        """Forget the batch in hand (its PDUs and durable EDUs stay in the outbox); its
        in-memory EDUs go back in the queue."""
        batch, worker.batch = worker.batch, None
        ephemeral = batch.edus[len(batch.edu_ids):] if batch is not None else []
        if ephemeral:
            queue = self._edus.setdefault(destination, _EduQueue(self._max_pending_edus))
            for edu in ephemeral:
                queue.add(edu["edu_type"], edu["content"], self._clock())

    async def _build_batch(self, destination: str) -> _Batch | None:
        rows = await self._outbox.next_batch(destination, self._max_pdus)
        durable = await self._outbox.next_edus(destination, self._max_edus)
        edus: list[dict[str, Any]] = [e for _, e in durable]
        queue = self._edus.get(destination)
        if queue is not None and len(edus) < self._max_edus:
            edus += queue.take(self._max_edus - len(edus), self._clock(), self._typing_ttl_ms)
            if queue.expired:
                self.expired_edus += queue.expired
                logger.debug("federation sender %s: dropped %d stale typing EDUs", destination, queue.expired)
                queue.expired = 0
            if queue.dropped:
                logger.warning("federation sender %s: EDU queue full, dropped %d oldest EDUs",
                               destination, queue.dropped)
                queue.dropped = 0
            if not queue:
                del self._edus[destination]
        if not rows and not edus:
            return None
        return _Batch(
            txn_id=self._next_txn_id(), ids=[i for i, _ in rows], pdus=[p for _, p in rows],
            edus=edus, origin_server_ts=self._clock(), edu_ids=[i for i, _ in durable],
        )

    async def _transmit(self, destination: str, batch: _Batch) -> DeliveryResult:
        txn = Transaction(
            origin=self._server_name, destination=destination, txn_id=batch.txn_id,
            origin_server_ts=batch.origin_server_ts, pdus=batch.pdus, edus=batch.edus,
        )
        result = await self._transport.deliver(txn)
        if isinstance(result, Delivered):
            for event_id, error in result.pdu_errors.items():
                logger.info("federation sender %s: peer refused %s: %s", destination, event_id, error)
            logger.debug("federation sender %s: txn %s delivered (%d PDUs, %d EDUs)",
                         destination, batch.txn_id, len(batch.pdus), len(batch.edus))
        else:
            logger.log(logging.DEBUG if isinstance(result, Held) else logging.INFO,
                       "federation sender %s: txn %s (%d PDUs, %d EDUs) not delivered: %s",
                       destination, batch.txn_id, len(batch.pdus), len(batch.edus), result.reason)
        return result

    # -- retry state -------------------------------------------------------------------

    async def _retry_state(self, destination: str) -> RetryState:
        state = self._retry.get(destination)
        if state is None:
            if not self._retry_complete:
                state = await self._outbox.get_retry(destination)
            state = self._retry.setdefault(destination, state or RetryState())
        return state

    async def _record_failure(
        self, destination: str, state: RetryState, at_least_ms: int | None = None,
    ) -> None:
        count = state.failure_count + 1
        delay = self._backoff_ms(count)
        if at_least_ms is not None:  # the peer said when to come back (a 429's retry_after_ms)
            delay = max(delay, min(at_least_ms, self._backoff_max_ms))
        new = RetryState(count, self._clock() + delay, state.last_success_ts)
        self._retry[destination] = new
        logger.info("federation sender %s: failure %d, next attempt in %d ms",
                    destination, count, delay)
        await self._outbox.set_retry(destination, new)

    async def _record_success(self, destination: str, state: RetryState) -> None:
        now = self._clock()
        if (state.failure_count == 0 and state.last_success_ts is not None
                and now - state.last_success_ts < _SUCCESS_WRITE_INTERVAL_MS):
            return
        if state.failure_count:
            logger.info("federation sender %s: back after %d failures",
                        destination, state.failure_count)
        new = RetryState(0, 0, now)
        self._retry[destination] = new
        await self._outbox.set_retry(destination, new)

    def _backoff_ms(self, failures: int) -> int:
        base = min(self._backoff_max_ms, self._backoff_initial_ms * 2 ** min(failures - 1, 40))
        return max(1, int(base * random.uniform(0.8, 1.2)))

    def _next_txn_id(self) -> str:
        return f"{self._txn_prefix}-{next(self._txn_counter)}"

    @staticmethod
    async def _sleep(worker: _Worker, delay_ms: int) -> None:
        """Sleep ``delay_ms``, or less if retry_now() is called."""
        try:
            await asyncio.wait_for(worker.skip_backoff.wait(), delay_ms / 1000)
        except TimeoutError:
            pass
