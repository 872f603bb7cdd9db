"""Reading history: /messages pagination, /event, and formatting for clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.core.errors import MatrixError, not_found
from homeserver.core.events import StoredEvent
from homeserver.services.aggregations import Aggregations
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.filtering import EventFilter, lazy_members
from homeserver.services.formatting import client_event, federation_event
from homeserver.services.ignore import IgnoreLists
from homeserver.services.notifier import NotifierPort, SyncToken
from homeserver.services.reader import EventReader
from homeserver.services.remote_rooms import RemoteRoomsPort
from homeserver.services.rooms import RoomService, Visibility

Topo = tuple[int, int]


def encode_topo(topo: Topo) -> str:
    return f"t{topo[0]}_{topo[1]}"


def before_event(se: StoredEvent) -> Topo:
    """The token just before an event (backwards pagination from it excludes the event)."""
    return (se.event.depth, se.stream_ordering - 1)


class Timeline:
    def __init__(
        self, *, events: EventReader, rooms: RoomService, notifier: NotifierPort,
        remote: RemoteRoomsPort, aggregations: Aggregations, ignores: IgnoreLists,
    ) -> None:
        self._ignores = ignores
        self._aggregations = aggregations
        self._events = events
        self._rooms = rooms
        self._notifier = notifier
        self._remote = remote  # backfills history from the room's other servers

    async def format(
        self, stored: Sequence[StoredEvent], requester: Requester | None, include_room_id: bool = True,
        bundle: bool = False, federation: bool = False,
    ) -> list[dict[str, Any]]:
        """Client events, with redactions applied and prev_content filled in, in one read each;
        with `bundle`, their aggregations in unsigned.m.relations (timelines only). With
        `federation`, the stored PDUs instead (redactions applied, nothing added)."""
        ids = [se.event.event_id for se in stored]
        recent = self._events.recent
        redacted_by_id = (
            recent.redacted_by(ids) if recent.redactions_known(stored)
            else await self._events.get_redactions_of(ids)
        )
        extra_ids = list(redacted_by_id.values()) + [se.replaces_state for se in stored if se.replaces_state]
        extra = await self._events.get_events(extra_ids) if extra_ids else {}
        now = now_ms()
        out = []
        for se in stored:
            redaction = extra.get(redacted_by_id.get(se.event.event_id, ""))
            if federation:
                out.append(federation_event(se, redacted_by=redaction.event if redaction else None))
                continue
            prev = extra.get(se.replaces_state or "")
            prev_content = None
            if prev is not None:
                prev_redacted = prev.event.event_id in redacted_by_id
                prev_content = {} if prev_redacted else prev.event.content
            out.append(client_event(
                se, device_id=requester.device_id if requester else None,
                redacted_by=redaction.event if redaction else None, prev_content=prev_content,
                include_room_id=include_room_id, now=now,
            ))
        if bundle and not federation:
            await self._bundle(stored, out, requester, include_room_id, redacted_by_id)
        return out

    async def _bundle(
        self, stored: Sequence[StoredEvent], out: list[dict[str, Any]], requester: Requester | None,
        include_room_id: bool, redacted: dict[str, str],
    ) -> None:
        """Spec: "Aggregations of child events". A redacted event keeps none (its relations
        were redacted with it)."""
        bundles = await self._aggregations.bundles(
            [se for se in stored if se.event.event_id not in redacted], requester.user_id if requester else None,
        )
        if not bundles:
            return
        extra = [b.replace for b in bundles.values() if b.replace] + [
            b.thread_latest for b in bundles.values() if b.thread_latest
        ]
        formatted = dict(zip(
            [se.event.event_id for se in extra],
            await self.format(extra, requester, include_room_id), strict=True,
        ))
        for se, event in zip(stored, out, strict=True):
            b = bundles.get(se.event.event_id)
            if b is None:
                continue
            relations: dict[str, Any] = {}
            if b.replace is not None:
                relations["m.replace"] = formatted[b.replace.event.event_id]
            if b.thread_latest is not None:
                relations["m.thread"] = {
                    "latest_event": formatted[b.thread_latest.event.event_id],
                    "count": b.thread_count, "current_user_participated": b.thread_participated,
                }
            if b.references:
                relations["m.reference"] = {"chunk": [{"event_id": e} for e in b.references]}
            event["unsigned"]["m.relations"] = relations

    async def parse_token(self, room_id: str, token: str) -> Topo:
        """Accept our topological tokens and sync tokens (converted to a room position)."""
        try:
            if token.startswith("t"):
                depth, stream = token[1:].split("_", 1)
                return (int(depth), int(stream))
            sync = SyncToken.parse(token)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token") from None
        topo = await self._events.topo_at_stream(room_id, sync.events)
        return topo or (0, 0)

    async def messages(
        self, requester: Requester, room_id: str, direction: str, from_token: str | None,
        to_token: str | None, limit: int, event_filter: EventFilter, *, whole_history: bool = False,
    ) -> dict[str, Any]:
        """``whole_history``: the admin API reads every event, member or not."""
        if direction not in ("b", "f"):
            raise MatrixError(400, "M_INVALID_PARAM", "dir must be 'b' or 'f'")
        event_filter = event_filter.ignoring(await self._ignores.ignored_users(requester.user_id))
        if whole_history:
            await self._rooms.head_or_404(room_id)
            window = Visibility(None, None)
        else:
            window = await self._rooms.visible_window(requester, room_id)
        upto = window.upto
        limit = max(0, min(limit, 1000))
        backwards = direction == "b"
        if from_token is None:
            if backwards:
                head_stream = upto if upto is not None else self._notifier.events_position
                start = await self._events.topo_at_stream(room_id, head_stream) or (0, 0)
            else:
                start = (0, 0)
        else:
            start = await self.parse_token(room_id, from_token)
        if upto is not None:
            cap = await self._events.topo_at_stream(room_id, upto) or (0, 0)
            if backwards:
                start = min(start, cap)
        to = await self.parse_token(room_id, to_token) if to_token else None
        chunk: list[StoredEvent] = []
        cursor = start
        exhausted = False
        # Filtered-out events still advance the cursor; read pages until full.
        while len(chunk) < limit and not exhausted:
            want = max(limit * 2, 10)
            page = await self._events.paginate(room_id, cursor, backwards, want, to)
            exhausted = len(page) < want
            if not backwards and upto is not None:
                page = [se for se in page if se.stream_ordering <= upto]
            for n, se in enumerate(page):
                cursor = before_event(se) if backwards else se.topo
                if backwards and window.since is not None and se.stream_ordering < window.since:
                    exhausted = True  # history before the user joined is not theirs to read
                    break
                if window.allows(se.stream_ordering) and event_filter.matches(se.event):
                    chunk.append(se)
                    if len(chunk) >= limit:
                        exhausted = exhausted and n == len(page) - 1
                        break
        if (exhausted and backwards and len(chunk) < limit and self._remote.enabled and to is None
                and window.since is None):
            # We reached the start of what we hold; ask the room's other servers for more.
            oldest = chunk[-1] if chunk else await self._events.oldest_event(room_id)
            if oldest is not None and oldest.event.prev_event_ids and not oldest.outlier:
                known = await self._events.known_event_ids(oldest.event.prev_event_ids, include_outliers=False)
                if len(known) < len(set(oldest.event.prev_event_ids)):
                    got = await self._remote.backfill_from_peers(room_id, [oldest.event.event_id], limit)
                    if got:
                        more = await self._events.paginate(
                            room_id, cursor, True, limit - len(chunk), to,
                        )
                        chunk += [se for se in more if event_filter.matches(se.event)]
                        if more:
                            cursor = before_event(more[-1])
                            exhausted = False
        end = None if exhausted or not chunk else cursor
        out: dict[str, Any] = {
            "start": from_token or encode_topo(start),
            "chunk": await self.format(chunk, requester, bundle=True),
        }
        if end is not None and chunk:
            out["end"] = encode_topo(end)
        if event_filter.lazy_load_members and chunk:
            # Spec "GET /rooms/{roomId}/messages", `state`: the member events of the chunk's
            # senders, as of its newest event (every sender has one by then). We keep no record
            # of what a client holds, so they are always sent, as include_redundant_members allows.
            newest = max(chunk, key=lambda e: e.topo)
            members = lazy_members(await self._events.state_at_group(newest.state_after),
                                   {e.event.sender for e in chunk})
            events = await self._events.get_events([v for k, v in members.items() if k[0] == "m.room.member"])
            out["state"] = await self.format(sorted(events.values(), key=lambda e: e.stream_ordering), requester)
        return out

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> dict[str, Any]:
        window = await self._rooms.visible_window(requester, room_id)
        se = await self._events.get_event(event_id)
        if se is None or se.event.room_id != room_id or se.outlier or not window.allows(se.stream_ordering):
            raise not_found("Event not found.")
        return (await self.format([se], requester, bundle=True))[0]

    async def context(
        self, requester: Requester, room_id: str, event_id: str, limit: int, event_filter: EventFilter,
    ) -> dict[str, Any]:
        """Spec: "GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}": the event, up to
        `limit` events around it (half before, half after), and the state at the last one."""
        window = await self._rooms.visible_window(requester, room_id)
        se = await self._events.get_event(event_id)
        if se is None or se.event.room_id != room_id or se.outlier or not window.allows(se.stream_ordering):
            raise not_found("Event not found.")
        limit = max(0, min(limit, 100))
        before_n = limit // 2
        event_filter = event_filter.ignoring(await self._ignores.ignored_users(requester.user_id))

        before = await self._side(se, window, event_filter, True, before_n)
        after = await self._side(se, window, event_filter, False, limit - before_n)
        last = after[-1] if after else se
        state = await self._events.state_at_group(last.state_after)
        if event_filter.lazy_load_members:
            senders = {e.event.sender for e in [*before, se, *after]}
            state = lazy_members(state, senders)
        state_events = sorted((await self._events.get_events(state.values())).values(), key=lambda e: e.stream_ordering)
        return {
            "event": (await self.format([se], requester, bundle=True))[0],
            "events_before": await self.format(before, requester, bundle=True),
            "events_after": await self.format(after, requester, bundle=True),
            "start": encode_topo(before_event(before[-1] if before else se)),
            "end": encode_topo(last.topo),
            "state": await self.format(state_events, requester),
        }

    async def _side(
        self, se: StoredEvent, window: Visibility, event_filter: EventFilter, backwards: bool, wanted: int,
    ) -> list[StoredEvent]:
        """Up to `wanted` readable events next to `se`, nearest first."""
        picked: list[StoredEvent] = []
        cursor = before_event(se) if backwards else se.topo
        while len(picked) < wanted:
            page = await self._events.paginate(se.event.room_id, cursor, backwards, max(wanted * 2, 10), None)
            for p in page:
                cursor = before_event(p) if backwards else p.topo
                if window.allows(p.stream_ordering) and event_filter.matches(p.event):
                    picked.append(p)
            if len(page) < max(wanted * 2, 10) or (page and not window.allows(page[-1].stream_ordering)):
                break
        return picked[:wanted]

    async def surroundings(
        self, requester: Requester, se: StoredEvent, window: Visibility, before_n: int, after_n: int,
    ) -> dict[str, Any]:
        """The events around one the user may read (search results' `context`): the
        nearest `before_n` before and `after_n` after, with pagination tokens."""
        event_filter = EventFilter().ignoring(await self._ignores.ignored_users(requester.user_id))
        before = await self._side(se, window, event_filter, True, before_n)
        after = await self._side(se, window, event_filter, False, after_n)
        return {
            "events_before": await self.format(before, requester, bundle=True),
            "events_after": await self.format(after, requester, bundle=True),
            "start": encode_topo(before_event(before[-1] if before else se)),
            "end": encode_topo((after[-1] if after else se).topo),
        }

    async def timestamp_to_event(self, requester: Requester, room_id: str, ts: int, direction: str) -> dict[str, Any]:
        """Spec: "GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event" (from what we hold)."""
        if direction not in ("b", "f"):
            raise MatrixError(400, "M_INVALID_PARAM", "dir must be 'b' or 'f'")
        window = await self._rooms.visible_window(requester, room_id)
        se = await self._events.event_near_ts(room_id, ts, direction == "f")
        if se is None or not window.allows(se.stream_ordering):
            raise not_found("No event found")
        return {"event_id": se.event.event_id, "origin_server_ts": se.event.origin_server_ts}
