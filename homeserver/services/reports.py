"""Reporting content (spec: "Reporting content"): events, rooms and users, stored for the
server's admins. Refused reports store nothing.

Decided where the spec leaves room: an unknown room or local user, and an event the
reporter cannot see (not joined, not in that room, redacted), are 404 M_NOT_FOUND (the
spec allows answering 200 instead; we prefer telling the client). A remote user is taken
as given: only their server knows whether they exist.
"""

from __future__ import annotations

from homeserver.core import ids
from homeserver.core.errors import MatrixError, not_found
from homeserver.core.records import Report
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.reader import EventReader
from storage.stores.reports import ReportStore
from storage.stores.rooms import RoomStore
from storage.stores.users import UserStore

MAX_REASON = 10_000


def _reason(reason: str | None) -> str | None:
    if reason is not None and len(reason) > MAX_REASON:
        raise MatrixError(400, "M_INVALID_PARAM", f"reason is longer than {MAX_REASON} characters")
    return reason


class ReportService:
    def __init__(
        self, *, store: ReportStore, events: EventReader, rooms: RoomStore, users: UserStore, server_name: str,
    ) -> None:
        self._store = store
        self._events = events
        self._rooms = rooms
        self._users = users
        self.server_name = server_name

    async def report_event(
        self, requester: Requester, room_id: str, event_id: str, reason: str | None, score: int | None = None,
    ) -> None:
        missing = not_found("The event was not found or you are not joined to the room.")
        head = await self._events.room_head(room_id)
        if head is None or head.members.get(requester.user_id) != "join":
            raise missing
        se = await self._events.get_event(event_id)
        if se is None or se.event.room_id != room_id or se.outlier or se.event.rejected:
            raise missing
        if await self._events.get_redactions_of([event_id]):
            raise missing
        await self._store.add(Report("event", requester.user_id, room_id, event_id, None, _reason(reason), now_ms(), score))

    async def report_room(self, requester: Requester, room_id: str, reason: str) -> None:
        # The reporter need not be in the room (spec): a room we know of is enough.
        if await self._rooms.get_room(room_id) is None:
            raise not_found("The room was not found on the homeserver.")
        await self._store.add(Report("room", requester.user_id, room_id, None, None, _reason(reason), now_ms()))

    async def report_user(self, requester: Requester, user_id: str, reason: str) -> None:
        if not ids.is_valid_user_id(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Not a user id")
        if ids.server_of(user_id) == self.server_name and await self._users.get_user(user_id) is None:
            raise not_found("The user was not found on the homeserver.")
        await self._store.add(Report("user", requester.user_id, None, None, user_id, _reason(reason), now_ms()))
