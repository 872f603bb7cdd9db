"""Relations and threads (spec: "GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}",
"Threading": "GET /_matrix/client/v1/rooms/{roomId}/threads").

Pagination tokens are "r<stream position>": children are ordered by when we received
them, threads by their latest reply.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError, not_found
from homeserver.core.records import Relation
from homeserver.core.relations import THREAD
from homeserver.services.auth import Requester
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService, Visibility
from homeserver.services.timeline import Timeline
from storage.stores.relations import RelationStore

MAX_RECURSION_DEPTH = 3  # the spec asks servers to follow at least 3 levels


def _token(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.startswith("r") or not value[1:].lstrip("-").isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token")
    return int(value[1:])


class RelationsService:
    def __init__(
        self, *, store: RelationStore, events: EventReader, rooms: RoomService, timeline: Timeline,
    ) -> None:
        self._store = store
        self._events = events
        self._rooms = rooms
        self._timeline = timeline

    async def _visible_parent(self, requester: Requester, room_id: str, event_id: str) -> Visibility:
        window = await self._rooms.visible_window(requester, room_id)
        se = await self._events.get_event(event_id)
        if se is None or se.event.room_id != room_id or se.outlier or not window.allows(se.stream_ordering):
            raise not_found("Event not found.")
        return window

    async def relations(
        self, requester: Requester, room_id: str, event_id: str, rel_type: str | None,
        event_type: str | None, direction: str, from_token: str | None, to_token: str | None,
        limit: int, recurse: bool,
    ) -> dict[str, Any]:
        if direction not in ("b", "f"):
            raise MatrixError(400, "M_INVALID_PARAM", "dir must be 'b' or 'f'")
        start, stop = _token(from_token), _token(to_token)
        window = await self._visible_parent(requester, room_id, event_id)
        children: list[Relation] = []
        parents, depth = [event_id], 0
        while parents and depth < (MAX_RECURSION_DEPTH if recurse else 1):
            level = [c for c in await self._store.children(parents) if c.room_id == room_id]
            children += level
            parents, depth = [c.event_id for c in level], depth + 1
        backwards = direction == "b"
        picked = sorted(
            (c for c in children
             if (rel_type is None or c.rel_type == rel_type) and (event_type is None or c.type == event_type)
             and window.allows(c.stream_ordering)
             and (start is None or (c.stream_ordering < start if backwards else c.stream_ordering > start))
             and (stop is None or (c.stream_ordering >= stop if backwards else c.stream_ordering <= stop))),
            key=lambda c: c.stream_ordering, reverse=backwards,
        )
        page = picked[: max(0, min(limit, 1000))]
        stored = await self._events.get_events([c.event_id for c in page])
        out: dict[str, Any] = {"chunk": await self._timeline.format(
            [stored[c.event_id] for c in page if c.event_id in stored], requester, bundle=True,
        )}
        if len(picked) > len(page) and page:
            out["next_batch"] = f"r{page[-1].stream_ordering}"
        if from_token is not None:
            out["prev_batch"] = from_token
        if recurse:
            out["recursion_depth"] = depth
        return out

    async def threads(
        self, requester: Requester, room_id: str, include: str, from_token: str | None, limit: int,
    ) -> dict[str, Any]:
        if include not in ("all", "participated"):
            raise MatrixError(400, "M_INVALID_PARAM", "include must be 'all' or 'participated'")
        window = await self._rooms.visible_window(requester, room_id)
        before = _token(from_token)
        limit = max(1, min(limit, 100))
        roots: list[tuple[str, int]] = []
        while len(roots) < limit:
            batch = await self._store.threads(room_id, THREAD, before, limit * 2)
            stored = await self._events.get_events([r for r, _ in batch])
            mine = (
                await self._store.thread_summaries([r for r, _ in batch], requester.user_id, THREAD)
                if include == "participated" else {}
            )
            for root_id, latest in batch:
                before = latest
                se = stored.get(root_id)
                if se is None or se.event.room_id != room_id or not window.allows(se.stream_ordering):
                    continue
                if include == "participated" and se.event.sender != requester.user_id and not (
                    root_id in mine and mine[root_id].participated
                ):
                    continue
                roots.append((root_id, latest))
                if len(roots) == limit:
                    break
            if len(batch) < limit * 2:
                break
        stored = await self._events.get_events([r for r, _ in roots])
        out: dict[str, Any] = {"chunk": await self._timeline.format(
            [stored[r] for r, _ in roots], requester, bundle=True,
        )}
        if len(roots) == limit:  # possibly more: the next page starts below the last root's activity
            out["next_batch"] = f"r{roots[-1][1]}"
        return out
