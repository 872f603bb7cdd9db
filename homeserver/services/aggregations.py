"""Bundled aggregations (spec: "Aggregations of child events"): what unsigned.m.relations
says about each event served on /messages, /context, /event and /sync timelines.

- m.replace: the most recent valid edit (same sender, same type, not a state event,
  the original not itself an edit; newest origin_server_ts, then highest event id);
- m.thread: the latest reply, the number of replies, and whether the viewer took part
  (sent the root or a reply);
- m.reference: the ids of the referencing events.

Redacted children have left event_relations, so they never count.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from homeserver.core.events import StoredEvent
from homeserver.core.relations import REFERENCE, REPLACE, THREAD, relation_of
from homeserver.services.fanout import Committed
from homeserver.services.reader import EventReader
from storage.stores.relations import RelationStore


@attrs.frozen
class Bundle:
    replace: StoredEvent | None = None
    thread_latest: StoredEvent | None = None
    thread_count: int = 0
    thread_participated: bool = False
    references: tuple[str, ...] = ()


def _valid_edit(original: StoredEvent, edit: StoredEvent) -> bool:
    o, e = original.event, edit.event
    if e.sender != o.sender or e.type != o.type or o.is_state or e.is_state:
        return False
    new_content = e.content.get("m.new_content")
    rel = o.content.get("m.relates_to")
    return isinstance(new_content, dict) and not (isinstance(rel, dict) and rel.get("rel_type") == REPLACE)


# How many parents with children this process remembers before it forgets them all
# (and asks the database again about every event older than that moment).
MAX_KNOWN_PARENTS = 100_000


class Aggregations:
    """Also a subscriber of the room writer: it remembers which events got children since
    `floor` (the stream position at start), so a timeline of newer events without any, the
    common case of a woken /sync, needs no query."""

    def __init__(self, *, relations: RelationStore, events: EventReader, floor: int) -> None:
        self._relations = relations
        self._events = events
        self._floor = floor
        self._newest = floor
        self._parents: set[str] = set()

    def on_committed(self, commit: Committed) -> None:
        for se in commit.events:
            self._newest = max(self._newest, se.stream_ordering)
            rel = relation_of(se.event)
            if rel is not None:
                self._parents.add(rel[0])
        if len(self._parents) > MAX_KNOWN_PARENTS:
            self._parents.clear()
            self._floor = self._newest

    def _may_have_children(self, se: StoredEvent) -> bool:
        return se.stream_ordering <= self._floor or se.event.event_id in self._parents

    async def bundles(self, stored: Sequence[StoredEvent], user_id: str | None) -> dict[str, Bundle]:
        """The bundle of each event that has any (events without children are absent)."""
        by_id = {se.event.event_id: se for se in stored if not se.outlier and self._may_have_children(se)}
        if not by_id:
            return {}
        ids = list(by_id)
        children = await self._relations.children(ids, (REPLACE, REFERENCE))
        summaries = await self._relations.thread_summaries(ids, user_id or "", THREAD)
        latest_ids = await self._relations.event_at_stream([s.latest_stream for s in summaries.values()])
        wanted = [c.event_id for c in children if c.rel_type == REPLACE] + list(latest_ids.values())
        fetched = await self._events.get_events(wanted) if wanted else {}

        edits: dict[str, StoredEvent] = {}
        refs: dict[str, list[str]] = {}
        for c in children:
            if c.rel_type == REFERENCE:
                refs.setdefault(c.relates_to_id, []).append(c.event_id)
                continue
            edit = fetched.get(c.event_id)
            if edit is None or not _valid_edit(by_id[c.relates_to_id], edit):
                continue
            best = edits.get(c.relates_to_id)
            key = (edit.event.origin_server_ts, edit.event.event_id)
            if best is None or key > (best.event.origin_server_ts, best.event.event_id):
                edits[c.relates_to_id] = edit
        out: dict[str, Bundle] = {}
        for eid, se in by_id.items():
            summary = summaries.get(eid)
            latest = fetched.get(latest_ids.get(summary.latest_stream, "")) if summary else None
            if eid not in edits and eid not in refs and latest is None:
                continue
            out[eid] = Bundle(
                replace=edits.get(eid),
                thread_latest=latest,
                thread_count=summary.count if summary else 0,
                thread_participated=bool(summary and (summary.participated or se.event.sender == user_id)),
                references=tuple(refs.get(eid, ())),
            )
        return out
