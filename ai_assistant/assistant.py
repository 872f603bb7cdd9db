"""What the assistant does with each transaction, and its workers.

Transactions are handled quickly and never wait for an AI: a PATIENT message in a room
that opted in gets a pending record (created once per message, so a redelivered
transaction is not answered twice) and a place in a bounded queue; when the queue is full
the transaction is refused (503) and the homeserver retries it later (back-pressure).
Workers answer from the queue: history, the provider (with timeouts, a stall watchdog,
bounded retries for failures that are safe to repeat, and a circuit breaker), the reply
as a notice replying to the patient's message, streamed through throttled edits, and the
record's outcome. After a restart, pending records are resumed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs

from ai_assistant.breaker import CircuitBreaker
from ai_assistant.config import AssistantConfig
from ai_assistant.matrix import Homeserver, HomeserverError
from ai_assistant.providers import Provider, ProviderError, make_provider
from homeserver.core.ai_roles import (
    AI_ASSISTANT,
    AI_EVENT,
    PATIENT,
    ROLE_EVENT,
    ai_settings,
    role_of,
    role_state_key,
    user_of_role_key,
)

log = logging.getLogger(__name__)

_WATCHED_STATE = {AI_EVENT, ROLE_EVENT, "m.room.create", "m.room.member"}


class Busy(Exception):
    """The queue is full: refuse the transaction so the homeserver retries it later."""


@attrs.define
class RoomView:
    enabled: bool
    provider: str | None
    roles: dict[str, Any]
    creator: str | None


@attrs.define
class Job:
    room_id: str
    event_id: str
    record_id: int
    provider: str
    request: dict[str, Any]
    started: float


class ReplyWriter:
    """One reply: the first text is a new notice replying to the patient's message; later
    text replaces it through `m.replace` edits, at most one per `interval` and at most
    `max_edits` in all, the last one complete (clients break on rooms with hundreds of edits)."""

    def __init__(
        self, hs: Homeserver, job: Job, msgtype: str, interval: float, max_edits: int, clock: Callable[[], float],
    ) -> None:
        self._hs, self._job, self._msgtype = hs, job, msgtype
        self._interval, self._max_edits, self._clock = interval, max(1, max_edits), clock
        self.event_id: str | None = None
        self.edits = 0
        self._shown = ""
        self._latest = ""  # everything received so far, shown or not yet
        self._last = 0.0

    @property
    def started(self) -> bool:
        return self.event_id is not None

    async def partial(self, text: str) -> None:
        self._latest = text
        if self.event_id is None:
            await self._send_first(text)
        elif self.edits < self._max_edits - 1 and self._clock() - self._last >= self._interval:
            await self._edit(text)

    async def finish(self, text: str) -> str:
        if self.event_id is None:
            await self._send_first(text)
        elif text != self._shown:
            await self._edit(text)  # the final edit is always sent, and always complete
        assert self.event_id is not None
        return self.event_id

    async def interrupted(self, note: str) -> None:
        """A stream that broke after text was shown: one last edit says the answer stops there."""
        if self.event_id is not None:
            await self._edit(f"{self._latest} {note}")

    async def _send_first(self, text: str) -> None:
        content = {
            "msgtype": self._msgtype, "body": text,
            "m.relates_to": {"m.in_reply_to": {"event_id": self._job.event_id}},
        }
        # The txn id is the record's: a resumed job re-sending it gets the same event back.
        self.event_id = await self._hs.send(self._job.room_id, content, f"ai-{self._job.record_id}")
        self._shown, self._last = text, self._clock()

    async def _edit(self, text: str) -> None:
        assert self.event_id is not None
        self.edits += 1
        content = {
            "msgtype": self._msgtype, "body": f"* {text}",
            "m.new_content": {"msgtype": self._msgtype, "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": self.event_id},
        }
        await self._hs.send(self._job.room_id, content, f"ai-{self._job.record_id}-e{self.edits}")
        self._shown, self._last = text, self._clock()


class Assistant:
    def __init__(
        self, cfg: AssistantConfig, session: aiohttp.ClientSession, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.me = cfg.registration.sender
        self.hs = Homeserver(cfg.homeserver_url, cfg.registration.as_token, self.me, session)
        self._clock = clock
        self.providers: dict[str, Provider] = {
            name: make_provider(p, session, cfg.request_timeout_s, cfg.stall_timeout_s)
            for name, p in cfg.providers.items()
        }
        self.breakers = {
            name: CircuitBreaker(cfg.breaker_failures, cfg.breaker_cooldown_s, clock) for name in cfg.providers
        }
        self._notified: dict[tuple[str, int], set[str]] = {}
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=cfg.queue_size)
        self._inflight: set[int] = set()
        self._rooms: dict[str, RoomView] = {}
        self._seen_txns: OrderedDict[str, None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        # Finished requests by outcome (success, failed, unavailable: refused by an open
        # breaker), read by the embedding homeserver's /metrics (tricolor_ai_requests_total).
        self.outcomes: dict[str, int] = {"success": 0, "failed": 0, "unavailable": 0}

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Workers, and (in the background, as the homeserver may not listen yet) the
        display name and the records a previous run left pending."""
        self._tasks = [asyncio.create_task(self._work(), name=f"ai-worker-{i}") for i in range(max(1, self.cfg.workers))]
        self._tasks.append(asyncio.create_task(self._bootstrap(), name="ai-bootstrap"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _bootstrap(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.hs.set_display_name(self.cfg.display_name)
                pending = await self.hs.pending_records()
                break
            except (aiohttp.ClientError, HomeserverError, TimeoutError, OSError) as e:
                log.info("homeserver not ready (%s); retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        for rec in reversed(pending):  # oldest first
            if rec["id"] in self._inflight:
                continue
            self._inflight.add(rec["id"])
            await self.queue.put(Job(
                rec["room_id"], rec["user_event_id"], rec["id"], rec["provider"], rec["request"], self._clock(),
            ))
        log.info("resumed %d pending AI interactions", len(pending))

    # -- transactions (spec PUT /_matrix/app/v1/transactions/{txnId}) ----------------------

    async def handle_transaction(self, txn_id: str, events: list[dict[str, Any]]) -> bool:
        """False: refuse for now (queue full or homeserver trouble); the homeserver resends
        the same transaction, and records make what was already taken idempotent."""
        if txn_id in self._seen_txns:
            return True
        try:
            for event in events:
                await self._handle(event)
        except Busy:
            return False
        except (aiohttp.ClientError, HomeserverError, TimeoutError, OSError) as e:
            log.warning("transaction %s: homeserver call failed (%s); asking for a retry", txn_id, e)
            return False
        self._seen_txns[txn_id] = None
        while len(self._seen_txns) > 1000:
            self._seen_txns.popitem(last=False)
        return True

    async def _handle(self, event: dict[str, Any]) -> None:
        room_id, etype = event.get("room_id"), event.get("type")
        if not isinstance(room_id, str):
            return
        if "state_key" in event:
            if etype in _WATCHED_STATE:
                self._rooms.pop(room_id, None)
            if etype == "m.room.member" and event.get("state_key") == self.me:
                membership = event.get("content", {}).get("membership")
                if membership == "invite":
                    await self._accept(room_id)
            return
        if etype != "m.room.message" or event.get("sender") == self.me:
            return
        content = event.get("content") or {}
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace" or not isinstance(content.get("body"), str):
            return  # edits are not new questions
        view = await self._view(room_id)
        if not view.enabled:
            return  # the privacy boundary: a room that did not opt in sends nothing anywhere
        if role_of(event["sender"], view.roles, view.creator) != PATIENT:
            return  # only patients' messages go to the AI; doctors' never do
        if self.queue.full():
            raise Busy()
        provider_name = view.provider if view.provider in self.providers else self.cfg.default_provider
        provider = self.providers[provider_name]
        # While the provider's circuit is open the AI will not be called: the message is only
        # recorded as failed, so the history (a /context read per message) is not fetched.
        refusing = self.breakers[provider.name].refusing
        history = [] if refusing else await self._history(room_id, event["event_id"])
        request = provider.request_body(content["body"], history)
        record = await self.hs.open_record(room_id, event["event_id"], provider_name, request)
        if record["status"] != "pending" or record["id"] in self._inflight:
            return  # answered (or being answered) already
        self._inflight.add(record["id"])
        self.queue.put_nowait(Job(room_id, event["event_id"], record["id"], provider_name, request, self._clock()))

    async def _accept(self, room_id: str) -> None:
        await self.hs.join(room_id)
        try:  # best effort: the assistant marks itself AI_ASSISTANT where it may
            await self.hs.put_state(room_id, ROLE_EVENT, role_state_key(self.me), {"role": AI_ASSISTANT})
        except HomeserverError:
            pass

    async def _view(self, room_id: str) -> RoomView:
        view = self._rooms.get(room_id)
        if view is None:
            roles: dict[str, Any] = {}
            ai: Any = None
            creator: str | None = None
            for ev in await self.hs.state(room_id):
                if ev.get("type") == ROLE_EVENT:
                    user = user_of_role_key(ev.get("state_key", ""))
                    if user is not None:
                        roles[user] = ev.get("content")
                elif ev.get("type") == AI_EVENT and ev.get("state_key") == "":
                    ai = ev.get("content")
                elif ev.get("type") == "m.room.create":
                    creator = ev.get("sender")
            enabled, provider = ai_settings(ai)
            view = self._rooms[room_id] = RoomView(enabled, provider, roles, creator)
        return view

    async def _history(self, room_id: str, event_id: str) -> list[dict[str, str]]:
        out = []
        for ev in await self.hs.before(room_id, event_id, self.cfg.history_limit):
            body = (ev.get("content") or {}).get("body")
            if ev.get("type") != "m.room.message" or not isinstance(body, str):
                continue
            if ((ev.get("content") or {}).get("m.relates_to") or {}).get("rel_type") == "m.replace":
                continue
            out.append({"role": "assistant" if ev.get("sender") == self.me else "user", "content": body})
        return out[-self.cfg.history_limit:] if self.cfg.history_limit else []

    # -- workers ----------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self._answer(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("AI interaction %d failed unexpectedly", job.record_id)
            finally:
                self._inflight.discard(job.record_id)
                self.queue.task_done()

    async def _answer(self, job: Job) -> None:
        provider = self.providers.get(job.provider) or self.providers[self.cfg.default_provider]
        breaker = self.breakers[provider.name]
        started = self._clock()
        if not breaker.allow():
            self.outcomes["unavailable"] += 1
            await self._finish(job, started, "failed", error="assistant unavailable: the AI service is failing")
            await self._warn(job.room_id, provider.name, breaker)
            return
        writer = ReplyWriter(
            self.hs, job, self.cfg.reply_msgtype, self.cfg.edit_interval_s, self.cfg.max_edits, self._clock,
        )
        attempt = 0
        while True:
            try:
                text, raw = await provider.reply(job.request, writer.partial)
                break
            except ProviderError as e:
                if e.retryable and not writer.started and attempt < self.cfg.retries:
                    attempt += 1
                    await asyncio.sleep(self.cfg.retry_backoff_s * 2 ** (attempt - 1))
                    continue
                opened = breaker.failure()
                self.outcomes["failed"] += 1
                if writer.started:
                    await writer.interrupted("[the answer was interrupted]")
                await self._finish(
                    job, started, "failed", error=str(e), response=e.response, reply_event_id=writer.event_id,
                )
                if opened:
                    await self._warn(job.room_id, provider.name, breaker)
                return
        breaker.success()
        self.outcomes["success"] += 1
        event_id = await writer.finish(text)
        await self._finish(job, started, "success", response=raw, reply_event_id=event_id)

    async def _finish(self, job: Job, started: float, status: str, **values: Any) -> None:
        await self.hs.finish_record(
            job.room_id, job.record_id, status=status, duration_ms=int((self._clock() - started) * 1000), **values,
        )

    async def _warn(self, room_id: str, provider: str, breaker: CircuitBreaker) -> None:
        """One notice per room each time the circuit opens, not one per message."""
        rooms = self._notified.setdefault((provider, breaker.openings), set())
        if room_id in rooms:
            return
        rooms.add(room_id)
        await self.hs.send(
            room_id, {"msgtype": "m.notice", "body": self.cfg.unavailable_notice},
            f"ai-unavailable-{provider}-{breaker.openings}-{int(time.time())}",
        )
