"""The server-side search index: rows written after commit, full-text queries on SQLite
(FTS5, bm25) and MariaDB (InnoDB FULLTEXT, boolean mode relevance)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.events import StoredEvent
from homeserver.core.records import RoomWindow, SearchRow
from homeserver.core.search_text import SearchQuery
from storage.schema import event_search, events, push_progress
from storage.stores.events import _select_events, _stored
from storage.stores.room_purge import still_stored

_PROGRESS = "search"
SEARCHED_TYPES = ("m.room.message", "m.room.name", "m.room.topic")


@attrs.frozen
class Hit:
    stream_ordering: int
    event_id: str
    room_id: str
    rank: float


class SearchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    # -- the indexer's side ---------------------------------------------------------------

    async def progress(self) -> int | None:
        async with self._engine.connect() as conn:
            pos = (await conn.execute(sa.select(push_progress.c.stream_ordering).where(
                push_progress.c.name == _PROGRESS,
            ))).scalar()
        return None if pos is None else int(pos)

    async def events_after(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        """Searchable timeline events with after < stream <= upto, oldest first."""
        q = (
            _select_events()
            .where(events.c.stream_ordering > after, events.c.stream_ordering <= upto)
            .where(events.c.outlier.is_(False), events.c.rejected.is_(False))
            .where(events.c.type.in_(SEARCHED_TYPES))
            .order_by(events.c.stream_ordering).limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_stored(r) for r in await conn.execute(q)]

    async def apply(self, rows: Sequence[SearchRow], removed: Iterable[str], position: int) -> None:
        """Add rows, remove redacted events, move the mark: one transaction, so a restart
        indexes again from the mark and never skips a row (rows found again replace)."""
        gone = list(removed)
        async with self._engine.begin() as conn:
            if rows:
                stored = await still_stored(conn, (r.event_id for r in rows))  # a purged room's are not
                rows = [r for r in rows if r.event_id in stored]
            if rows:
                await conn.execute(event_search.delete().where(
                    event_search.c.stream_ordering.in_([r.stream_ordering for r in rows]),
                ))
                await conn.execute(event_search.insert(), [attrs.asdict(r) for r in rows])
            if gone:
                await conn.execute(event_search.delete().where(event_search.c.event_id.in_(gone)))
            res = await conn.execute(push_progress.update().where(
                push_progress.c.name == _PROGRESS,
            ).values(stream_ordering=position))
            if res.rowcount == 0:
                await conn.execute(push_progress.insert().values(name=_PROGRESS, stream_ordering=position))

    # -- the searcher's side --------------------------------------------------------------

    def _filters(
        self, windows: Sequence[RoomWindow], keys: Sequence[str],
        senders: Sequence[str] | None, not_senders: Sequence[str],
    ) -> list[sa.ColumnElement[bool]]:
        t = event_search.c
        per_room = []
        for w in windows:
            cond = [t.room_id == w.room_id]
            if w.since is not None:
                cond.append(t.stream_ordering >= w.since)
            if w.upto is not None:
                cond.append(t.stream_ordering <= w.upto)
            per_room.append(sa.and_(*cond))
        where: list[sa.ColumnElement[bool]] = [sa.or_(*per_room), t.key.in_(list(keys))]
        if senders is not None:
            where.append(t.sender.in_(list(senders)))
        if not_senders:
            where.append(t.sender.not_in(list(not_senders)))
        return where

    def _hits(self, query: SearchQuery) -> sa.CTE | sa.Subquery:
        """(stream_ordering, score) of every indexed event the query matches, higher score
        better. Computed once, first: left to itself SQLite's planner walks event_search by
        room and runs the full-text query again for each row (minutes on 100,000 events)."""
        if self._sqlite:
            fts = sa.table("event_search_fts", sa.column("rowid"))
            inner = sa.select(
                fts.c.rowid.label("stream_ordering"),
                sa.literal_column("-bm25(event_search_fts)", sa.Float).label("score"),
            ).select_from(fts).where(sa.text("event_search_fts MATCH :match").bindparams(match=query.fts5()))
            return inner.cte("hits").prefix_with("MATERIALIZED")
        against = _quote(query.innodb_boolean())
        match = f"MATCH (event_search.tokens) AGAINST ({against} IN BOOLEAN MODE)"
        inner = sa.select(
            event_search.c.stream_ordering.label("stream_ordering"),
            sa.literal_column(match, sa.Float).label("score"),
        ).where(sa.text(match))
        return inner.subquery("hits")

    async def search(
        self, query: SearchQuery, windows: Sequence[RoomWindow], keys: Sequence[str], *,
        senders: Sequence[str] | None = None, not_senders: Sequence[str] = (), by_rank: bool,
        limit: int, offset: int = 0, before_stream: int | None = None,
    ) -> tuple[list[Hit], int]:
        """One page of hits (best first by rank, or newest first) and the total count."""
        if not windows or query.empty:
            return [], 0
        t = event_search.c
        hits = self._hits(query)
        joined = hits.join(event_search, event_search.c.stream_ordering == hits.c.stream_ordering)
        where = self._filters(windows, keys, senders, not_senders)
        page = sa.select(t.stream_ordering, t.event_id, t.room_id, hits.c.score).select_from(joined).where(*where)
        if by_rank:
            page = page.order_by(hits.c.score.desc(), t.stream_ordering.desc()).offset(offset)
        else:
            if before_stream is not None:
                page = page.where(t.stream_ordering < before_stream)
            page = page.order_by(t.stream_ordering.desc())
        page = page.limit(limit)
        count = sa.select(sa.func.count()).select_from(joined).where(*where)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            total = int((await conn.execute(count)).scalar() or 0)
        return [Hit(int(r.stream_ordering), r.event_id, r.room_id, float(r.score or 0)) for r in rows], total


def _quote(text: str) -> str:
    """The boolean-mode query as an SQL string literal: it holds only 'x', hex digits, '+',
    '*' and spaces (search_text's encoding), checked here so nothing else can get in."""
    if not set(text) <= set("x0123456789abcdef+* "):
        raise ValueError("unexpected characters in a search query")
    return "'" + text + "'"
