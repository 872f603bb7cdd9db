"""Server-side search (spec: "Server Side Search", POST /search, category `room_events`).

`SearchIndexer` is a subscriber of the room writer: it queues each commit and its own task
writes the searchable events (and removes redacted ones) with a progress mark, so a crash
between commit and indexing loses nothing (on start it indexes again from the mark). A
database that never ran it indexes its whole history in the background.

`SearchService` answers searches in the rooms the user is or was in, within the part of
each room's history they may read (the same window as /messages).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import attrs

from homeserver.core.errors import MatrixError
from homeserver.core.events import StoredEvent
from homeserver.core.records import RoomWindow, SearchRow
from homeserver.core.search_text import index_tokens, parse_query
from homeserver.services.auth import Requester
from homeserver.services.commit_worker import CommitWorker
from homeserver.services.fanout import Committed
from homeserver.services.filtering import EventFilter
from homeserver.services.ignore import IgnoreLists
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService, Visibility
from homeserver.services.timeline import Timeline
from storage.stores.rooms import RoomStore
from storage.stores.search import SearchStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# Spec "Server Side Search": the keys that may be searched, and the event type each is in.
KEYS = {"content.body": "m.room.message", "content.name": "m.room.name", "content.topic": "m.room.topic"}
_FIELD = {"m.room.message": "body", "m.room.name": "name", "m.room.topic": "topic"}
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
CATCH_UP_BATCH = 500
# A search waits this long at most for the indexer to reach what was sent before it.
INDEX_WAIT_S = 5.0


def search_row(se: StoredEvent) -> SearchRow | None:
    """The index row of a timeline event, or None when it has nothing to search."""
    ev = se.event
    field = _FIELD.get(ev.type)
    # Backfilled history (negative positions, not outliers) is searchable like the rest.
    if field is None or se.outlier or se.stream_ordering == 0 or se.soft_failed or ev.rejected:
        return None
    if ev.type != "m.room.message" and ev.state_key != "":
        return None
    value = ev.content.get(field)
    if not isinstance(value, str):
        return None
    tokens = index_tokens(value)
    if not tokens:
        return None
    return SearchRow(
        se.stream_ordering, ev.event_id, ev.room_id, ev.sender, f"content.{field}", ev.origin_server_ts, tokens,
    )


class SearchIndexer:
    """Keeps the search index in step with the writer (a CommitWorker's work)."""

    def __init__(self, *, store: SearchStore, reader: EventReader) -> None:
        self._store = store
        self._reader = reader
        # A database that never indexed indexes its whole history in the background.
        self._worker = CommitWorker(name="search indexing", work=self, fresh_from_newest=False, wait_s=INDEX_WAIT_S)

    def on_committed(self, commit: Committed) -> None:
        self._worker.on_committed(commit)

    async def start(self, upto: int) -> None:
        await self._worker.start(upto)

    async def stop(self) -> None:
        await self._worker.stop()

    async def caught_up(self) -> None:
        """Until every commit heard of so far is indexed (bounded by INDEX_WAIT_S)."""
        await self._worker.caught_up()

    async def load_mark(self) -> int | None:
        return await self._store.progress()

    async def catch_up(self, after: int, upto: int) -> int | None:
        batch = await self._store.events_after(after, upto, CATCH_UP_BATCH)
        if not batch:
            return None
        redacted = await self._reader.get_redactions_of([se.event.event_id for se in batch])
        rows = [r for se in batch if se.event.event_id not in redacted and (r := search_row(se))]
        last = batch[-1].stream_ordering
        await self._store.apply(rows, [], last)
        return last

    async def apply(self, commits: Sequence[Committed], done: int, position: int, save_mark: bool) -> bool:
        rows: list[SearchRow] = []
        removed: list[str] = []
        for commit in commits:
            # New events past the mark, and backfilled history (its positions count down from 0).
            rows += [
                r for se in commit.events
                if (se.stream_ordering > done or se.stream_ordering < 0) and (r := search_row(se))
            ]
            removed += [target for _, target in commit.redactions]
        gone = set(removed)
        rows = [r for r in rows if r.event_id not in gone]
        if not (rows or removed or save_mark):
            return False
        await self._store.apply(rows, removed, position)
        return True


@attrs.frozen
class Criteria:
    """The `room_events` criteria, as the HTTP adapter parsed them."""

    search_term: str
    keys: tuple[str, ...] | None = None
    filter: dict[str, Any] | None = None
    order_by: str = "rank"
    before_limit: int | None = None  # event_context; None: no context asked for
    after_limit: int = 5
    include_profile: bool = False
    include_state: bool = False
    group_by: tuple[str, ...] = ()


class SearchService:
    def __init__(
        self, *, store: SearchStore, indexer: SearchIndexer, reader: EventReader, rooms: RoomService,
        room_store: RoomStore, timeline: Timeline, ignores: IgnoreLists,
    ) -> None:
        self._store = store
        self._indexer = indexer
        self._events = reader
        self._rooms = rooms
        self._room_store = room_store
        self._timeline = timeline
        self._ignores = ignores

    async def search(self, requester: Requester, crit: Criteria, next_batch: str | None) -> dict[str, Any]:
        keys = list(crit.keys) if crit.keys is not None else list(KEYS)
        if not keys or any(k not in KEYS for k in keys):
            raise MatrixError(400, "M_INVALID_PARAM", f"keys must be among {', '.join(KEYS)}")
        if crit.order_by not in ("rank", "recent"):
            raise MatrixError(400, "M_INVALID_PARAM", "order_by must be rank or recent")
        if crit.search_term == "" or len(crit.search_term) > 1000:
            raise MatrixError(400, "M_INVALID_PARAM", "search_term must be 1 to 1000 characters")
        for key in crit.group_by:
            if key not in ("room_id", "sender"):
                raise MatrixError(400, "M_INVALID_PARAM", "groupings can be by room_id or sender")
        flt = EventFilter.parse(crit.filter, "filter")
        keys = [k for k in keys if flt.allows(KEYS[k], None, None, None)]
        limit = min(flt.limit if flt.limit is not None else DEFAULT_LIMIT, MAX_LIMIT)
        by_rank = crit.order_by == "rank"
        offset, before_stream = _parse_batch(next_batch, by_rank)
        query = parse_query(crit.search_term)
        ignored = await self._ignores.ignored_users(requester.user_id)

        windows: dict[str, RoomWindow] = {}
        for row in await self._room_store.memberships_for_user(requester.user_id, ["join", "leave", "ban"]):
            if not flt.room_allowed(row.room_id):
                continue
            try:
                vis = await self._rooms.visible_window(requester, row.room_id)
            except MatrixError:
                continue  # nothing of that room is theirs to read
            windows[row.room_id] = RoomWindow(row.room_id, vis.since, vis.upto)

        await self._indexer.caught_up()
        hits, count = (
            await self._store.search(
                query, list(windows.values()), keys, senders=flt.senders,
                not_senders=[*flt.not_senders, *ignored], by_rank=by_rank, limit=limit,
                offset=offset, before_stream=before_stream,
            ) if limit > 0 else ([], 0)
        )
        found = await self._events.get_events([h.event_id for h in hits])
        redacted = await self._events.get_redactions_of([h.event_id for h in hits])
        kept = [h for h in hits if h.event_id in found and h.event_id not in redacted]
        formatted = await self._timeline.format([found[h.event_id] for h in kept], requester, bundle=True)
        results: list[dict[str, Any]] = []
        for hit, event in zip(kept, formatted, strict=True):
            entry: dict[str, Any] = {"rank": hit.rank, "result": event}
            if crit.before_limit is not None:
                entry["context"] = await self._context(
                    requester, found[hit.event_id], windows[hit.room_id], crit,
                )
            results.append(entry)

        out: dict[str, Any] = {"count": count, "results": results, "highlights": list(query.words)}
        more = len(hits) == limit and (offset + limit < count if by_rank else True)
        if more and hits:
            out["next_batch"] = f"o{offset + limit}" if by_rank else f"r{hits[-1].stream_ordering}"
        if crit.include_state:
            out["state"] = {}
            for room_id in dict.fromkeys(h.room_id for h in kept):
                state = await self._rooms.current_state(requester, room_id)
                stored = await self._events.get_events(e.event_id for e in state)
                ordered = sorted(stored.values(), key=lambda e: e.stream_ordering)
                out["state"][room_id] = await self._timeline.format(ordered, requester)
        if crit.group_by:
            out["groups"] = _groups(crit.group_by, kept, found, out.get("next_batch"))
        return {"search_categories": {"room_events": out}}

    async def _context(
        self, requester: Requester, se: StoredEvent, window: RoomWindow, crit: Criteria,
    ) -> dict[str, Any]:
        before = max(0, min(crit.before_limit or 0, MAX_LIMIT))
        after = max(0, min(crit.after_limit, MAX_LIMIT))
        ctx = await self._timeline.surroundings(requester, se, Visibility(window.since, window.upto), before, after)
        if crit.include_profile:
            senders = {se.event.sender} | {e["sender"] for e in ctx["events_before"] + ctx["events_after"]}
            head = await self._events.room_head(se.event.room_id)
            profiles: dict[str, Any] = {}
            if head is not None:
                keys = {("m.room.member", s): head.state[("m.room.member", s)] for s in senders
                        if ("m.room.member", s) in head.state}
                for (_, user), ev in (await self._events.state_events(keys)).items():
                    profiles[user] = {
                        k: ev.content[k] for k in ("displayname", "avatar_url") if isinstance(ev.content.get(k), str)
                    }
            ctx["profile_info"] = profiles
        return ctx


def _parse_batch(token: str | None, by_rank: bool) -> tuple[int, int | None]:
    """next_batch: ``o<offset>`` for rank order, ``r<stream>`` (older than) for recent."""
    if token is None:
        return 0, None
    try:
        if by_rank and token.startswith("o"):
            return max(0, int(token[1:])), None
        if not by_rank and token.startswith("r"):
            return 0, int(token[1:])
    except ValueError:
        pass
    raise MatrixError(400, "M_INVALID_PARAM", "Invalid next_batch token")


def _groups(
    group_by: Sequence[str], hits: Sequence[Any], found: dict[str, StoredEvent], next_batch: str | None,
) -> dict[str, Any]:
    """Spec: `groups`, keyed by the grouping key then its value: the ids of the results in
    that group (in result order) and the group's position."""
    out: dict[str, Any] = {}
    for key in group_by:
        groups: dict[str, dict[str, Any]] = {}
        for hit in hits:
            value = hit.room_id if key == "room_id" else found[hit.event_id].event.sender
            group = groups.setdefault(value, {"results": [], "order": len(groups)})
            group["results"].append(hit.event_id)
        if next_batch is not None:
            for group in groups.values():
                group["next_batch"] = next_batch
        out[key] = groups
    return out
