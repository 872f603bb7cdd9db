"""The deprecated read APIs older clients still use (spec: "GET /events", "GET /events/{eventId}",
"GET /initialSync", "GET /rooms/{roomId}/initialSync", and peeking through "GET /events?room_id="),
built on /sync, /messages and the room state, so they answer what those answer.

Decided where the spec leaves room: `/events` takes a sync token (`from`, default now) and
answers with the timeline events of the user's joined rooms after it, waiting up to
`timeout` ms; with `room_id` of a room the user is not in (a world-readable room: peeking)
it answers that room's events after `from` at once. `/initialSync` gives each room's last
`limit` messages (default 10) and its current state; `archived=true` adds rooms left.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError, not_found
from homeserver.services.auth import Requester
from homeserver.services.filtering import EventFilter, SyncFilter
from homeserver.services.notifier import NotifierPort, SyncToken
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService
from homeserver.services.sync import SyncService
from homeserver.services.timeline import Timeline
from storage.stores.filters import AccountDataStore
from storage.stores.rooms import RoomStore

MAX_TIMEOUT_MS = 60_000


class LegacyService:
    def __init__(
        self, *, events: EventReader, rooms: RoomService, room_store: RoomStore, timeline: Timeline,
        sync: SyncService, notifier: NotifierPort, account_data: AccountDataStore,
    ) -> None:
        self._events = events
        self._rooms = rooms
        self._room_store = room_store
        self._timeline = timeline
        self._sync = sync
        self._notifier = notifier
        self._account_data = account_data

    async def events(
        self, requester: Requester, from_: str | None, timeout_ms: int, room_id: str | None,
    ) -> dict[str, Any]:
        start = from_ or self._notifier.current_token().encode()
        try:
            SyncToken.parse(start)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid from token") from None
        joined = await self._rooms.joined_rooms(requester.user_id)
        if room_id is not None and room_id not in joined:
            # Peeking: the room's events after `from`, if the user may read it.
            page = await self._timeline.messages(requester, room_id, "f", start, None, 100, EventFilter())
            return {"start": start, "end": page.get("end", start), "chunk": page["chunk"]}
        flt = SyncFilter.parse({"room": {"rooms": [room_id]}} if room_id else {})
        resp = await self._sync.sync(
            requester, start, max(0, min(timeout_ms, MAX_TIMEOUT_MS)), flt, set_presence="offline",
        )
        chunk = []
        for rid, section in resp["rooms"]["join"].items():
            for event in section["timeline"]["events"]:
                chunk.append({**event, "room_id": rid})
        chunk.sort(key=lambda e: e.get("origin_server_ts", 0))
        return {"start": start, "end": resp["next_batch"], "chunk": chunk}

    async def event(self, requester: Requester, event_id: str) -> dict[str, Any]:
        se = await self._events.get_event(event_id)
        if se is None or se.outlier:
            raise not_found("Event not found.")
        return await self._timeline.get_event(requester, se.event.room_id, event_id)

    async def room_initial_sync(self, requester: Requester, room_id: str, limit: int = 10) -> dict[str, Any]:
        head = await self._rooms.head_or_404(room_id)
        membership = head.members.get(requester.user_id)
        page = await self._timeline.messages(requester, room_id, "b", None, None, limit, EventFilter())
        state = await self._rooms.current_state(requester, room_id)
        stored = await self._events.get_events(e.event_id for e in state)
        record = await self._room_store.get_room(room_id)
        out: dict[str, Any] = {
            "room_id": room_id,
            "messages": {
                "chunk": list(reversed(page["chunk"])),
                "start": page.get("end", page["start"]), "end": page["start"],
            },
            "state": await self._timeline.format(sorted(stored.values(), key=lambda e: e.stream_ordering), requester),
            "visibility": "public" if record is not None and record.is_public else "private",
            "presence": [],
            "account_data": [],
        }
        if membership is not None:
            out["membership"] = membership
        if membership == "join":
            tags = await self._account_data.get(requester.user_id, room_id, "m.tag")
            if tags is not None:
                out["account_data"].append({"type": "m.tag", "content": tags})
        return out

    async def initial_sync(self, requester: Requester, limit: int, archived: bool) -> dict[str, Any]:
        wanted = ["join", "invite"] + (["leave", "ban"] if archived else [])
        rooms: list[dict[str, Any]] = []
        for row in await self._room_store.memberships_for_user(requester.user_id, wanted):
            if row.membership == "invite":
                invite = await self._events.get_event(row.event_id)
                entry: dict[str, Any] = {"room_id": row.room_id, "membership": "invite"}
                if invite is not None:
                    entry["invite"] = (await self._timeline.format([invite], requester))[0]
                rooms.append(entry)
                continue
            try:
                rooms.append(await self.room_initial_sync(requester, row.room_id, limit))
            except MatrixError:
                continue  # a room we no longer hold the state of
        account_data = []
        for type_ in ("m.push_rules", "m.direct", "m.ignored_user_list"):
            content = await self._account_data.get(requester.user_id, "", type_)
            if content is not None:
                account_data.append({"type": type_, "content": content})
        now = self._notifier.current_token()
        return {"end": now.encode(), "rooms": rooms, "presence": [], "account_data": account_data}
