"""The durable pusher queue: push-gateway deliveries and pending email digests.

Written by the pusher service after evaluation (never on the send path) together with its
own progress mark over the notifications table, so what was stored but not queued when a
process stopped is queued on the next start; rows leave the queue once delivered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from homeserver.core.records import DueDigest, Notification, QueuedPush
from storage.schema import email_digests, notifications, push_progress, push_queue, pushers
from storage.stores.push import _notification

_MARK = "pushers"


class PushQueueStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- the mark and catch-up ---------------------------------------------------------------

    async def mark(self) -> int | None:
        """Notifications up to this stream position are queued; None before the first start."""
        async with self._engine.connect() as conn:
            pos = (await conn.execute(
                sa.select(push_progress.c.stream_ordering).where(push_progress.c.name == _MARK)
            )).scalar()
        return None if pos is None else int(pos)

    async def newest_notification(self) -> int:
        async with self._engine.connect() as conn:
            pos = (await conn.execute(sa.select(sa.func.max(notifications.c.stream_ordering)))).scalar()
        return int(pos or 0)

    async def notifications_after(self, after: int, positions: int) -> list[Notification]:
        """Every notification of the next `positions` stream positions after `after`, oldest
        first (whole positions, so the mark can move past them)."""
        async with self._engine.connect() as conn:
            upto = (await conn.execute(
                sa.select(sa.func.max(sa.select(notifications.c.stream_ordering).distinct()
                    .where(notifications.c.stream_ordering > after)
                    .order_by(notifications.c.stream_ordering).limit(positions).subquery().c.stream_ordering))
            )).scalar()
            if upto is None:
                return []
            rows = await conn.execute(sa.select(notifications).where(
                notifications.c.stream_ordering > after, notifications.c.stream_ordering <= upto,
            ).order_by(notifications.c.stream_ordering))
            return [_notification(r) for r in rows]

    async def enqueue(self, rows: Sequence[Notification], mark: int, now_ms: int, email_delay_ms: int) -> None:
        """Queue a delivery per notification and http pusher of its user, make a digest due
        for users with an email pusher and none pending, and move the mark: together."""
        users = sorted({n.user_id for n in rows})
        async with self._engine.begin() as conn:
            if users:
                found = (await conn.execute(
                    sa.select(pushers.c.user_id, pushers.c.app_id, pushers.c.pushkey_sha256, pushers.c.kind)
                    .where(pushers.c.user_id.in_(users)).order_by(pushers.c.created_ts)
                )).all()
                http = [p for p in found if p.kind == "http"]
                # A pusher backing off keeps its order: new rows are due no earlier than its queue.
                waiting = {
                    (r.user_id, r.app_id, r.pushkey_sha256): int(r.due)
                    for r in await conn.execute(
                        sa.select(push_queue.c.user_id, push_queue.c.app_id, push_queue.c.pushkey_sha256,
                                  sa.func.max(push_queue.c.due_ts).label("due"))
                        .where(push_queue.c.user_id.in_(users))
                        .group_by(push_queue.c.user_id, push_queue.c.app_id, push_queue.c.pushkey_sha256)
                    )
                }
                queued = [
                    {"user_id": n.user_id, "app_id": p.app_id, "pushkey_sha256": p.pushkey_sha256,
                     "event_id": n.event_id, "room_id": n.room_id, "stream_ordering": n.stream_ordering,
                     "due_ts": max(now_ms, waiting.get((p.user_id, p.app_id, p.pushkey_sha256), 0)),
                     "attempts": 0}
                    for n in rows for p in http if p.user_id == n.user_id
                ]
                if queued:
                    await conn.execute(push_queue.insert(), queued)
                mailed = sorted({p.user_id for p in found if p.kind == "email"})
                if mailed:
                    await _make_digests_due(conn, mailed, now_ms + email_delay_ms)
            await _set_mark(conn, mark)

    # -- push-gateway deliveries -------------------------------------------------------------

    async def due_pushes(self, now_ms: int, limit: int) -> list[QueuedPush]:
        """Deliveries due now, oldest first, each with its pusher and notification."""
        q = (
            sa.select(push_queue, pushers.c.body, notifications.c.actions)
            .select_from(
                push_queue
                .outerjoin(pushers, sa.and_(
                    pushers.c.user_id == push_queue.c.user_id, pushers.c.app_id == push_queue.c.app_id,
                    pushers.c.pushkey_sha256 == push_queue.c.pushkey_sha256,
                ))
                .outerjoin(notifications, sa.and_(
                    notifications.c.user_id == push_queue.c.user_id,
                    notifications.c.event_id == push_queue.c.event_id,
                ))
            )
            .where(push_queue.c.due_ts <= now_ms)
            .order_by(push_queue.c.due_ts, push_queue.c.id).limit(limit)
        )
        async with self._engine.connect() as conn:
            return [
                QueuedPush(
                    r.id, r.user_id, r.app_id, r.pushkey_sha256, r.event_id, r.room_id, r.attempts,
                    json.loads(r.body) if r.body is not None else None,
                    json.loads(r.actions) if r.actions is not None else None,
                )
                for r in await conn.execute(q)
            ]

    async def next_push_due(self) -> int | None:
        """When the next delivery is due (None: nothing queued)."""
        async with self._engine.connect() as conn:
            due = (await conn.execute(sa.select(sa.func.min(push_queue.c.due_ts)))).scalar()
        return None if due is None else int(due)

    async def delivered(self, row_id: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(push_queue.delete().where(push_queue.c.id == row_id))

    async def retry_later(self, row: QueuedPush, due_ts: int) -> None:
        """The gateway is away: this delivery is tried again at `due_ts`, and the pusher's
        later ones not before (they stay in order behind it)."""
        async with self._engine.begin() as conn:
            await conn.execute(push_queue.update().where(push_queue.c.id == row.id).values(
                due_ts=due_ts, attempts=row.attempts + 1,
            ))
            await conn.execute(push_queue.update().where(
                *_same_pusher(row), push_queue.c.due_ts < due_ts,
            ).values(due_ts=due_ts))

    async def drop_pusher(self, row: QueuedPush) -> None:
        """Every queued delivery of this row's pusher (it is gone)."""
        async with self._engine.begin() as conn:
            await conn.execute(push_queue.delete().where(*_same_pusher(row)))

    # -- email digests -----------------------------------------------------------------------

    async def due_digests(self, now_ms: int) -> list[DueDigest]:
        async with self._engine.connect() as conn:
            return [
                DueDigest(r.user_id, int(r.mailed_upto), int(r.attempts))
                for r in await conn.execute(sa.select(email_digests).where(
                    email_digests.c.due_ts.is_not(None), email_digests.c.due_ts <= now_ms,
                ).order_by(email_digests.c.due_ts))
            ]

    async def next_digest_due(self) -> int | None:
        async with self._engine.connect() as conn:
            due = (await conn.execute(sa.select(sa.func.min(email_digests.c.due_ts)))).scalar()
        return None if due is None else int(due)

    async def digest_done(self, user_id: str, mailed_upto: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(email_digests.update().where(email_digests.c.user_id == user_id).values(
                due_ts=None, attempts=0, mailed_upto=mailed_upto,
            ))

    async def digest_later(self, digest: DueDigest, due_ts: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(email_digests.update().where(email_digests.c.user_id == digest.user_id).values(
                due_ts=due_ts, attempts=digest.attempts + 1,
            ))


def _same_pusher(row: QueuedPush) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        push_queue.c.user_id == row.user_id, push_queue.c.app_id == row.app_id,
        push_queue.c.pushkey_sha256 == row.pushkey_sha256,
    )


async def _make_digests_due(conn: AsyncConnection, users: Sequence[str], due_ts: int) -> None:
    held = {r.user_id: r.due_ts for r in await conn.execute(
        sa.select(email_digests.c.user_id, email_digests.c.due_ts).where(email_digests.c.user_id.in_(list(users)))
    )}
    new = [u for u in users if u not in held]
    if new:
        await conn.execute(email_digests.insert(), [
            {"user_id": u, "due_ts": due_ts, "mailed_upto": 0, "attempts": 0} for u in new
        ])
    idle = [u for u, due in held.items() if due is None]
    if idle:
        await conn.execute(email_digests.update().where(email_digests.c.user_id.in_(idle)).values(
            due_ts=due_ts, attempts=0,
        ))


async def _set_mark(conn: AsyncConnection, position: int) -> None:
    res = await conn.execute(push_progress.update().where(push_progress.c.name == _MARK).values(
        stream_ordering=position,
    ))
    if res.rowcount == 0:
        await conn.execute(push_progress.insert().values(name=_MARK, stream_ordering=position))
