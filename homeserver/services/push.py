"""Push rules, their evaluation after commit, and the unread counts they produce.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-notifications

- `PushRulesService`: a user's rules (GET/PUT/DELETE /pushrules), kept as one JSON
  document and mirrored into `m.push_rules` account data so /sync carries them.
- `PushEvaluator`: a subscriber of the room writer. It queues each commit (cheap,
  synchronous) and a task of its own evaluates every event once per local member,
  never on the send path. Each batch of notification rows is stored in one
  transaction with the evaluator's progress mark, so after a crash the events after
  the mark are evaluated again on start (`start` catches up).
- `NotificationService`: unread counts for /sync (cleared by m.read / m.read.private
  receipts, per thread for threaded ones) and GET /notifications.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import attrs

from homeserver.core import push_rules as pr
from homeserver.core.auth_helpers import (
    POWER_LEVELS_KEY,
    notification_power_level,
    user_power_level,
)
from homeserver.core.errors import MatrixError
from homeserver.core.events import Event, StoredEvent
from homeserver.core.ids import server_of
from homeserver.core.records import Notification, ReadPositions, Receipt
from homeserver.core.state_groups import StateKey
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.commit_worker import CommitWorker
from homeserver.services.fanout import Committed
from homeserver.services.lru import LruCache
from homeserver.services.profile import AccountDataService
from homeserver.services.reader import EventReader
from homeserver.services.room_heads import RoomHead
from homeserver.services.timeline import Timeline
from storage.stores.push import PushStore

log = logging.getLogger(__name__)
PUSH_RULES_TYPE = "m.push_rules"
MAIN_THREAD = "main"
# How long /sync waits for the evaluator to reach its token before answering with the
# counts as they are (only a stuck database makes it wait that long).
EVALUATION_WAIT_S = 10.0


class PushRulesService:
    def __init__(self, store: PushStore, account_data: AccountDataService) -> None:
        self._store = store
        self._account_data = account_data
        self._cache: LruCache[str, pr.UserRules] = LruCache(50_000)
        self._rulesets: LruCache[str, dict[str, list[dict[str, Any]]]] = LruCache(50_000)

    async def user_rules(self, user_id: str) -> pr.UserRules:
        cached = self._cache.get(user_id)
        if cached is None:
            cached = await self._store.get_rules(user_id) or {}
            self._cache.put(user_id, cached)
        return cached

    async def ruleset(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The user's `global` ruleset (evaluated once per event per member: cached)."""
        cached = self._rulesets.get(user_id)
        if cached is None:
            cached = pr.ruleset(user_id, await self.user_rules(user_id))
            self._rulesets.put(user_id, cached)
        return cached

    async def get(self, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
        return pr.find_rule(user_id, await self.user_rules(user_id), kind, rule_id)

    async def put(
        self, user_id: str, kind: str, rule_id: str, body: Any, before: str | None, after: str | None,
    ) -> None:
        await self._save(user_id, pr.put_rule(await self.user_rules(user_id), kind, rule_id, body, before, after))

    async def delete(self, user_id: str, kind: str, rule_id: str) -> None:
        await self._save(user_id, pr.delete_rule(await self.user_rules(user_id), kind, rule_id))

    async def set_attribute(self, user_id: str, kind: str, rule_id: str, attr: str, value: Any) -> None:
        rules = await self.user_rules(user_id)
        await self._save(user_id, pr.set_rule_attribute(user_id, rules, kind, rule_id, attr, value))

    async def _save(self, user_id: str, rules: pr.UserRules) -> None:
        await self._store.put_rules(user_id, rules)
        self._cache.put(user_id, rules)
        self._rulesets.pop(user_id)
        # Clients read their rules from account data (spec "Push Rules: API": m.push_rules).
        await self._account_data.set_push_rules(user_id, {"global": pr.ruleset(user_id, rules)})


def thread_of(event: Event) -> str:
    """The thread an event belongs to (spec "Threading"): its root, or "main"."""
    rel = event.content.get("m.relates_to")
    if isinstance(rel, dict) and rel.get("rel_type") == "m.thread" and isinstance(rel.get("event_id"), str):
        return rel["event_id"]
    return MAIN_THREAD


Deliver = Callable[[Sequence[Notification]], None]
# Told of notifications removed because their event was redacted (spec "Redactions":
# a redacted event's content is gone, so it no longer counts as unread nor is listed).
Retract = Callable[[Sequence[Notification]], None]
class PushEvaluator:
    """Evaluates push rules for every committed timeline event, off the send path (a
    CommitWorker's work: rows and the progress mark stored in one transaction)."""

    def __init__(
        self, *, server_name: str, store: PushStore, rules: PushRulesService, reader: EventReader,
        deliver: Sequence[Deliver], retract: Sequence[Retract] = (),
    ) -> None:
        self._name = server_name
        self._retract = tuple(retract)
        self._store = store
        self._rules = rules
        self._reader = reader
        self._deliver = tuple(deliver)
        # A database that never ran the evaluator starts at its newest event: history is
        # not turned into notifications.
        self._worker = CommitWorker(
            name="push evaluation", work=self, fresh_from_newest=True, wait_s=EVALUATION_WAIT_S,
        )
        self._seen = 0  # the newest commit position heard of

    def on_committed(self, commit: Committed) -> None:
        self._seen = max(self._seen, commit.position)
        self._worker.on_committed(commit)

    async def caught_up(self) -> None:
        """Until every commit heard of so far is evaluated."""
        await self._worker.caught_up()

    async def start(self, upto: int) -> None:
        """Catch up on events committed but not evaluated before the last stop, then
        follow the writer."""
        self._seen = max(self._seen, upto)  # /sync waits for the catch-up too
        await self._worker.start(upto)

    async def stop(self) -> None:
        await self._worker.stop()

    async def wait_for(self, position: int) -> None:
        """Until every event up to `position` is evaluated (bounded: see EVALUATION_WAIT_S).
        Only this process's own commits are waited for: with workers, each evaluates
        what it committed (docs/workers.md)."""
        await self._worker.wait_for(min(position, self._seen))

    # -- MarkedWork -----------------------------------------------------------

    async def load_mark(self) -> int | None:
        return await self._store.progress()

    async def catch_up(self, after: int, upto: int) -> int | None:
        batch = await self._store.events_after(after, upto, 200)
        if not batch:
            return None
        redacted = await self._store.redacted_by(
            [se.event.event_id for se in batch if se.event.type == "m.room.redaction"],
        )
        rows: list[Notification] = []
        for se in batch:
            head = await self._reader.room_head(se.event.room_id)
            rows += await self._evaluate([se], head) if head is not None else []
        gone = set(redacted.values())
        await self._store_rows([n for n in rows if n.event_id not in gone], batch[-1].stream_ordering, gone)
        return batch[-1].stream_ordering

    async def apply(self, commits: Sequence[Committed], done: int, position: int, save_mark: bool) -> bool:
        rows: list[Notification] = []
        redacted = {target for c in commits for _, target in c.redactions}
        for commit in commits:
            events = [
                se for se in commit.events
                if se.stream_ordering > done and not se.outlier
                and not se.soft_failed and not se.event.rejected
            ]
            if commit.head is not None and events:
                rows += await self._evaluate(events, commit.head)
        rows = [n for n in rows if n.event_id not in redacted]
        if not (rows or redacted or save_mark):
            return False
        await self._store_rows(rows, position, redacted)
        return True

    async def _store_rows(self, rows: Sequence[Notification], position: int, redacted: Collection[str]) -> None:
        removed = await self._store.add_notifications(rows, position, sorted(redacted))
        if removed:
            for retract in self._retract:
                retract(removed)
        if rows:
            for deliver in self._deliver:
                deliver(rows)

    async def _evaluate(self, events: Sequence[StoredEvent], head: RoomHead) -> list[Notification]:
        joined = [u for u, m in head.members.items() if m == "join"]
        local = [u for u in joined if server_of(u) == self._name]
        invited = [
            se.event.state_key for se in events
            if se.event.type == "m.room.member" and se.event.content.get("membership") == "invite"
            and se.event.state_key and server_of(se.event.state_key) == self._name
        ]
        keys: list[StateKey] = [("m.room.create", ""), POWER_LEVELS_KEY]
        keys += [("m.room.member", u) for u in local]
        state = await self._reader.state_events({k: head.state[k] for k in keys if k in head.state})
        levels = {"room": notification_power_level(state)}
        rows: list[Notification] = []
        for se in events:
            ev = se.event
            sender_level = user_power_level(state, ev.sender, head.room_version)
            pdu = {**ev.pdu, "event_id": ev.event_id}
            for user in dict.fromkeys([*local, *(u for u in invited if u == ev.state_key)]):
                if user == ev.sender:
                    continue  # spec: never notify a user of their own events
                member = state.get(("m.room.member", user))
                name = member.content.get("displayname") if member is not None else None
                ctx = pr.PushContext(
                    user_id=user, display_name=name if isinstance(name, str) else None,
                    member_count=len(joined), sender_power_level=sender_level,
                    notification_levels=levels,
                )
                rules = await self._rules.ruleset(user)
                actions = pr.evaluate(rules, pdu, ctx)
                if pr.notifies(actions):
                    assert actions is not None
                    rows.append(Notification(
                        user, ev.event_id, ev.room_id, se.stream_ordering, thread_of(ev),
                        list(actions), pr.highlights(actions), now_ms(),
                    ))
        return rows


@attrs.frozen
class Counts:
    notification_count: int = 0
    highlight_count: int = 0

    def json(self) -> dict[str, int]:
        return {"notification_count": self.notification_count, "highlight_count": self.highlight_count}


def is_read(n: Notification, read: ReadPositions) -> bool:
    """Spec "Receiving notifications": an unthreaded receipt clears everything up to its
    event; a threaded one clears its thread ("main" for the main timeline)."""
    return n.stream_ordering <= max(read.get((n.room_id, ""), 0), read.get((n.room_id, n.thread_id), 0))


def unread_counts(
    rows: Iterable[Notification], read: ReadPositions,
) -> dict[str, dict[str, Counts]]:
    """room id -> thread id -> counts of the notifications not read yet."""
    out: dict[str, dict[str, Counts]] = {}
    for n in rows:
        if is_read(n, read):
            continue
        c = out.setdefault(n.room_id, {}).get(n.thread_id, Counts())
        out[n.room_id][n.thread_id] = Counts(c.notification_count + 1, c.highlight_count + int(n.highlight))
    return out


@attrs.define
class _Unread:
    rows: dict[str, Notification]  # event id -> not yet read when loaded or added
    read: ReadPositions


class UnreadCache:
    """Each recently syncing user's unread notifications and read positions, so a /sync
    woken by a message asks the database nothing. Fed by the evaluator's rows; a read
    receipt of the user drops their entry (it is reloaded on their next sync)."""

    def __init__(self, store: PushStore, max_users: int = 10_000) -> None:
        self._store = store
        self._users: LruCache[str, _Unread] = LruCache(max_users)
        self._generation = 0  # bumped by every change, so a load racing one is not kept

    def add(self, rows: Sequence[Notification]) -> None:
        self._generation += 1
        for n in rows:
            entry = self._users.get(n.user_id)
            if entry is not None:
                entry.rows[n.event_id] = n

    def retract(self, rows: Sequence[Notification]) -> None:
        """Notifications of redacted events: no longer unread."""
        self._generation += 1
        for n in rows:
            entry = self._users.get(n.user_id)
            if entry is not None:
                entry.rows.pop(n.event_id, None)

    # EphemeralListener: only receipts matter here.
    def receipt_changed(self, receipt: Receipt) -> None:
        self._generation += 1
        self._users.pop(receipt.user_id)

    def typing_changed(self, room_id: str, user_id: str, typing: bool) -> None:
        pass

    def presence_changed(self, user_id: str, content: dict[str, Any], audience: set[str]) -> None:
        pass

    async def get(self, user_id: str) -> tuple[list[Notification], ReadPositions]:
        entry = self._users.get(user_id)
        if entry is None:
            generation = self._generation
            rooms = await self._store.notified_rooms(user_id)
            read = await self._store.read_positions(user_id, rooms)
            rows = await self._store.unread(user_id, rooms, read)
            entry = _Unread({n.event_id: n for n in rows if not is_read(n, read)}, read)
            if generation == self._generation:
                self._users.put(user_id, entry)
        return list(entry.rows.values()), entry.read


class NotificationService:
    def __init__(
        self, *, store: PushStore, evaluator: PushEvaluator, unread: UnreadCache,
        reader: EventReader, timeline: Timeline,
    ) -> None:
        self._store = store
        self._evaluator = evaluator
        self._unread = unread
        self._reader = reader
        self._timeline = timeline

    async def unread(self, user_id: str, room_ids: Sequence[str], position: int) -> dict[str, dict[str, Counts]]:
        """Unread counts per room and thread, once evaluation has reached `position`."""
        if not room_ids:
            return {}
        await self._evaluator.wait_for(position)
        rows, read = await self._unread.get(user_id)
        wanted = set(room_ids)
        return unread_counts((n for n in rows if n.room_id in wanted), read)

    async def page(
        self, requester: Requester, from_token: str | None, limit: int, only: str | None,
    ) -> dict[str, Any]:
        """GET /notifications (spec "Listing Notifications"): newest first; `from` is the
        `next_token` of the previous page."""
        before: int | None = None
        if from_token is not None:
            if not from_token.isdigit():
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid from token")
            before = int(from_token)
        user_id = requester.user_id
        await self._evaluator.caught_up()
        rows = await self._store.page(user_id, before, limit, only == "highlight")
        read = await self._store.read_positions(user_id, {n.room_id for n in rows})
        found = await self._reader.get_events([n.event_id for n in rows])
        formatted = await self._timeline.format(
            [found[n.event_id] for n in rows if n.event_id in found], requester,
        )
        by_id = {e["event_id"]: e for e in formatted}
        out = [
            {"actions": n.actions, "event": by_id[n.event_id], "read": is_read(n, read),
             "room_id": n.room_id, "ts": n.ts}
            for n in rows if n.event_id in by_id
        ]
        resp: dict[str, Any] = {"notifications": out}
        if len(rows) == limit and rows:
            resp["next_token"] = str(rows[-1].stream_ordering)
        return resp
