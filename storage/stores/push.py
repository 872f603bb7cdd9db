"""Push rules, notifications (what evaluation decided), evaluation progress and pushers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.events import StoredEvent
from homeserver.core.records import Notification, ReadPositions
from storage.schema import (
    events,
    notifications,
    push_progress,
    push_rules,
    pushers,
    receipts,
    redactions,
)
from storage.stores.events import _select_events, _stored
from storage.stores.room_purge import still_stored

_EVALUATOR = "evaluator"
READ_RECEIPTS = ("m.read", "m.read.private")


class PushStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- rules ----------------------------------------------------------------------------

    async def get_rules(self, user_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            raw = (await conn.execute(
                sa.select(push_rules.c.rules).where(push_rules.c.user_id == user_id)
            )).scalar()
        return json.loads(raw) if raw is not None else None

    async def put_rules(self, user_id: str, rules: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(push_rules.delete().where(push_rules.c.user_id == user_id))
            await conn.execute(push_rules.insert().values(user_id=user_id, rules=json.dumps(rules)))

    # -- evaluation ------------------------------------------------------------------------

    async def progress(self) -> int | None:
        """The last evaluated stream position; None before the evaluator first ran."""
        async with self._engine.connect() as conn:
            pos = (await conn.execute(sa.select(push_progress.c.stream_ordering).where(
                push_progress.c.name == _EVALUATOR,
            ))).scalar()
        return None if pos is None else int(pos)

    async def events_after(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        """Timeline events of every room with after < stream <= upto, oldest first (the
        evaluator's catch-up after a restart)."""
        q = (
            _select_events()
            .where(events.c.stream_ordering > after, events.c.stream_ordering <= upto)
            .where(events.c.outlier.is_(False), events.c.soft_failed.is_(False))
            .order_by(events.c.stream_ordering).limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_stored(r) for r in await conn.execute(q)]

    async def add_notifications(
        self, rows: Sequence[Notification], position: int, redacted: Sequence[str] = (),
    ) -> list[Notification]:
        """Store what a batch of events produced and move the progress mark, together: a
        restart re-evaluates from the mark, never skipping a row that was not stored
        (rows found again replace the old ones). The notifications of `redacted` events
        go in the same transaction; they are returned."""
        async with self._engine.begin() as conn:
            removed: list[Notification] = []
            if redacted:
                gone = notifications.c.event_id.in_(list(redacted))
                removed = [_notification(r) for r in await conn.execute(sa.select(notifications).where(gone))]
                await conn.execute(notifications.delete().where(gone))
            if rows:
                stored = await still_stored(conn, (n.event_id for n in rows))  # a purged room's are not
                rows = [n for n in rows if n.event_id in stored]
            if rows:
                # A re-evaluation (catch-up after a crash) replaces what it finds.
                keys = [(n.user_id, n.event_id) for n in rows]
                await conn.execute(notifications.delete().where(
                    sa.tuple_(notifications.c.user_id, notifications.c.event_id).in_(keys),
                ))
                await conn.execute(notifications.insert(), [
                    {**attrs.asdict(n), "actions": json.dumps(n.actions)} for n in rows
                ])
            res = await conn.execute(push_progress.update().where(
                push_progress.c.name == _EVALUATOR,
            ).values(stream_ordering=position))
            if res.rowcount == 0:
                await conn.execute(push_progress.insert().values(name=_EVALUATOR, stream_ordering=position))
        return removed

    async def redacted_by(self, redaction_ids: Sequence[str]) -> dict[str, str]:
        """Redaction id -> the event it was applied to (catch-up after a restart)."""
        if not redaction_ids:
            return {}
        async with self._engine.connect() as conn:
            return {r[0]: r[1] for r in await conn.execute(
                sa.select(redactions.c.event_id, redactions.c.redacts)
                .where(redactions.c.event_id.in_(list(redaction_ids)))
            )}

    # -- reading ---------------------------------------------------------------------------

    async def read_positions(self, user_id: str, room_ids: Iterable[str] | None = None) -> ReadPositions:
        """Where the user's m.read / m.read.private receipts point, per room and thread."""
        q = (
            sa.select(receipts.c.room_id, receipts.c.thread_id, sa.func.max(events.c.stream_ordering))
            .join(events, events.c.event_id == receipts.c.event_id)
            .where(receipts.c.user_id == user_id, receipts.c.receipt_type.in_(READ_RECEIPTS))
            .group_by(receipts.c.room_id, receipts.c.thread_id)
        )
        if room_ids is not None:
            q = q.where(receipts.c.room_id.in_(list(room_ids)))
        async with self._engine.connect() as conn:
            return {(r[0], r[1]): int(r[2]) for r in await conn.execute(q)}

    async def unread(self, user_id: str, room_ids: Sequence[str], read: ReadPositions) -> list[Notification]:
        """Notifications in these rooms after each room's unthreaded read receipt
        (threaded receipts are applied by the caller), without their actions."""
        if not room_ids:
            return []
        after = sa.or_(*(
            sa.and_(notifications.c.room_id == r, notifications.c.stream_ordering > read.get((r, ""), 0))
            for r in room_ids
        ))
        # Only counted (unread counts, badges): the actions are left out, not decoded.
        c = notifications.c
        q = sa.select(
            c.user_id, c.event_id, c.room_id, c.stream_ordering, c.thread_id, c.highlight, c.ts,
        ).where(c.user_id == user_id, after)
        async with self._engine.connect() as conn:
            return [
                Notification(r.user_id, r.event_id, r.room_id, r.stream_ordering, r.thread_id, [],
                             bool(r.highlight), r.ts)
                for r in await conn.execute(q)
            ]

    async def notified_rooms(self, user_id: str) -> list[str]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(
                sa.select(notifications.c.room_id).where(notifications.c.user_id == user_id).distinct()
            )).scalars())

    async def page(self, user_id: str, before: int | None, limit: int, only_highlight: bool) -> list[Notification]:
        """GET /notifications: newest first, before the stream position `before`."""
        q = sa.select(notifications).where(notifications.c.user_id == user_id)
        if before is not None:
            q = q.where(notifications.c.stream_ordering < before)
        if only_highlight:
            q = q.where(notifications.c.highlight.is_(True))
        q = q.order_by(notifications.c.stream_ordering.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_notification(r) for r in await conn.execute(q)]

    # -- pushers ---------------------------------------------------------------------------

    async def pushers(self, user_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(user_id, pusher as GET /pushers shows it), of one user or of everyone."""
        q = sa.select(pushers.c.user_id, pushers.c.body).order_by(pushers.c.created_ts)
        if user_id is not None:
            q = q.where(pushers.c.user_id == user_id)
        async with self._engine.connect() as conn:
            return [(r.user_id, json.loads(r.body)) for r in await conn.execute(q)]

    async def put_pusher(self, user_id: str, body: dict[str, Any], ts: int, exclusive: bool) -> None:
        """Add or replace a pusher; `exclusive` (spec: append false) removes the same
        app_id and pushkey of every other user."""
        app_id, pushkey = body["app_id"], body["pushkey"]
        key = (pushers.c.app_id == app_id, pushers.c.pushkey_sha256 == _sha(pushkey))
        async with self._engine.begin() as conn:
            if exclusive:
                await conn.execute(pushers.delete().where(*key))
            else:
                await conn.execute(pushers.delete().where(*key, pushers.c.user_id == user_id))
            await conn.execute(pushers.insert().values(
                user_id=user_id, app_id=app_id, pushkey_sha256=_sha(pushkey), pushkey=pushkey,
                kind=body["kind"], body=json.dumps(body), created_ts=ts,
            ))

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(pushers.delete().where(
                pushers.c.user_id == user_id, pushers.c.app_id == app_id,
                pushers.c.pushkey_sha256 == _sha(pushkey),
            ))


def _sha(pushkey: str) -> str:
    return hashlib.sha256(pushkey.encode()).hexdigest()


def _notification(r: Any) -> Notification:
    return Notification(
        r.user_id, r.event_id, r.room_id, r.stream_ordering, r.thread_id, json.loads(r.actions),
        bool(r.highlight), r.ts,
    )
