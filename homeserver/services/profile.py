"""Profiles (display name, avatar) and account data; a profile change updates
the user's member event in every joined room, as clients read names there."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.core.ids import normalize_user_id, server_of
from homeserver.services.local_events import EventSpec
from homeserver.services.reader import EventReader
from homeserver.services.remote_rooms import RemoteRoomsPort
from homeserver.services.replication import Positions
from homeserver.services.writer import RoomWriterPort
from storage.stores.filters import AccountDataStore
from storage.stores.rooms import RoomStore
from storage.stores.users import UserStore

log = logging.getLogger(__name__)
FIELDS = ("displayname", "avatar_url")


class ProfileService:
    def __init__(
        self, *, users: UserStore, rooms: RoomStore, events: EventReader, writer: RoomWriterPort,
        remote: RemoteRoomsPort, server_name: str, search_all_users: bool = False,
        query_user: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        # Asks application services about unknown users in their namespaces (lazy provisioning).
        self._query_user = query_user
        self._search_all_users = search_all_users
        self._users = users
        self._rooms = rooms
        self._events = events
        self._writer = writer
        self._remote = remote
        self.server_name = server_name

    async def get_profile(self, user_id: str, allow_remote: bool = False) -> dict[str, Any]:
        """A user's profile; a remote user's is asked of their server when allowed."""
        if server_of(user_id) != self.server_name:
            if allow_remote and self._remote.enabled:
                return await self._remote.query_profile(user_id)
            raise not_found("Profile not found")
        user = await self._users.get_user(user_id)
        if user is None and self._query_user is not None and await self._query_user(user_id):
            user = await self._users.get_user(user_id)  # spec: the service has just created it
        if user is None:
            raise not_found("Profile not found")
        return {k: v for k, v in (("displayname", user.displayname), ("avatar_url", user.avatar_url)) if v is not None}

    async def search_users(self, requester_id: str, term: str, limit: int) -> dict[str, Any]:
        """The user directory (spec: "User directory"): users who share a room with the
        searcher or are joined to a public room (join rule `public`), and every local user
        when `search_all_users` is set; matched on user id or display name. A full id in
        either form (`@alice:hs2` or `alice@hs2`) matches that user's id exactly."""
        needle = term.strip().lower()
        try:
            exact = normalize_user_id(term.strip(), self.server_name) if ("@" in term or ":" in term) else None
        except MatrixError:
            exact = None
        results: dict[str, dict[str, Any]] = {}

        def add(user_id: str, displayname: Any, avatar_url: Any) -> None:
            entry: dict[str, Any] = {"user_id": user_id}
            if isinstance(displayname, str):
                entry["display_name"] = displayname
            if isinstance(avatar_url, str):
                entry["avatar_url"] = avatar_url
            results.setdefault(user_id, entry)

        if self._search_all_users:
            for user in await self._users.search(needle, limit + 1):
                add(user.user_id, user.displayname, user.avatar_url)
        visible_rooms = [r.room_id for r in await self._rooms.memberships_for_user(requester_id, ["join"])]
        visible_rooms += await self._public_rooms()
        for room_id in dict.fromkeys(visible_rooms):
            head = await self._events.room_head(room_id)
            if head is None:
                continue
            joined = {k: v for k, v in head.state.items() if k[0] == "m.room.member" and head.members.get(k[1]) == "join"}
            for (_, uid), ev in (await self._events.state_events(joined)).items():
                name = ev.content.get("displayname")
                if uid == exact or needle in uid.lower() or (isinstance(name, str) and needle in name.lower()):
                    add(uid, name, ev.content.get("avatar_url"))
        ordered = sorted(results.values(), key=lambda e: e["user_id"])
        return {"results": ordered[:limit], "limited": len(ordered) > limit}

    async def _public_rooms(self) -> list[str]:
        """Rooms anyone may join or read (join rule `public`, or history visibility
        `world_readable`, as Synapse counts them): their members are visible to every
        searcher. Read from current state, so a change of either is seen at once."""
        out: list[str] = []
        for event_type, field, value in (
            ("m.room.join_rules", "join_rule", "public"),
            ("m.room.history_visibility", "history_visibility", "world_readable"),
        ):
            rows = await self._rooms.current_state_of_type(event_type)
            events = await self._events.get_events(eid for _, eid in rows)
            out += [
                room_id for room_id, eid in rows
                if eid in events and events[eid].event.content.get(field) == value
            ]
        return out

    async def set_field(self, requester_id: str, user_id: str, field: str, value: Any) -> None:
        if requester_id != user_id:
            raise forbidden("You can only change your own profile")
        if field not in FIELDS:
            raise MatrixError(400, "M_INVALID_PARAM", f"Unknown profile field {field}")
        if value is not None and not isinstance(value, str):
            raise MatrixError(400, "M_BAD_JSON", f"{field} must be a string")
        if value is not None and len(value) > 256 * (4 if field == "avatar_url" else 1):
            raise MatrixError(400, "M_TOO_LARGE", f"{field} is too long")
        await self._users.set_profile_field(user_id, field, value)
        for row in await self._rooms.memberships_for_user(user_id, ["join"]):
            current = await self._events.current_state_event(row.room_id, ("m.room.member", user_id))
            content = dict(current.content) if current else {"membership": "join"}
            if value is None:
                content.pop(field, None)
            else:
                content[field] = value
            try:
                await self._writer.send_event(row.room_id, EventSpec("m.room.member", user_id, content, user_id))
            except MatrixError:
                log.warning("could not update member event in %s", row.room_id)


# Account data the server controls: clients change it through their own APIs
# (spec: PUT .../account_data/{type} answers 405 M_BAD_JSON for these).
SERVER_CONTROLLED = frozenset({"m.fully_read", "m.push_rules"})
TAG_TYPE = "m.tag"


class AccountDataService:
    """Global and per-room account data, and room tags (room account data of type m.tag,
    so /sync delivers them like any other). Spec: "Client Config", "Room Tagging"."""

    def __init__(self, store: AccountDataStore, ids: Positions) -> None:
        self._store = store
        self._ids = ids
        # Tag changes read, change and write the m.tag document: one at a time.
        self._tag_lock = asyncio.Lock()

    async def put(self, user_id: str, room_id: str, type_: str, content: dict[str, Any]) -> None:
        _check_room_id(room_id)
        if type_ in SERVER_CONTROLLED:
            raise MatrixError(405, "M_BAD_JSON", f"{type_} is controlled by the server")
        await self._write(user_id, room_id, type_, content)

    async def set_fully_read(self, user_id: str, room_id: str, event_id: str) -> None:
        """The read marker (spec: "Fully read markers"), set through /read_markers or /receipt."""
        await self._write(user_id, room_id, "m.fully_read", {"event_id": event_id})

    async def set_push_rules(self, user_id: str, content: dict[str, Any]) -> None:
        """The user's push rules as clients read them (spec "Push Rules: Events"), written by
        the push-rules service whenever a rule changes."""
        await self._write(user_id, "", "m.push_rules", content)

    async def _write(self, user_id: str, room_id: str, type_: str, content: dict[str, Any]) -> None:
        async with self._ids.take() as taken:
            await self._store.put(user_id, room_id, type_, content, taken.first)
            taken.wake((user_id,))

    async def get(self, user_id: str, room_id: str, type_: str) -> dict[str, Any]:
        _check_room_id(room_id)
        content = await self._store.get(user_id, room_id, type_)
        if content is None:
            raise not_found("Account data not found")
        return content

    async def tags(self, user_id: str, room_id: str) -> dict[str, Any]:
        _check_room_id(room_id)
        content = await self._store.get(user_id, room_id, TAG_TYPE) or {}
        tags = content.get("tags")
        return {"tags": tags if isinstance(tags, dict) else {}}

    async def set_tag(self, user_id: str, room_id: str, tag: str, info: dict[str, Any]) -> None:
        order = info.get("order")
        if order is not None and (not isinstance(order, int | float) or isinstance(order, bool)):
            raise MatrixError(400, "M_BAD_JSON", "order must be a number")
        if not tag or len(tag.encode()) > 255:
            raise MatrixError(400, "M_INVALID_PARAM", "A tag is 1 to 255 bytes")
        async with self._tag_lock:
            tags = (await self.tags(user_id, room_id))["tags"]
            await self._write(user_id, room_id, TAG_TYPE, {"tags": {**tags, tag: info}})

    async def delete_tag(self, user_id: str, room_id: str, tag: str) -> None:
        """Removing a tag the room does not have is a success (the spec's DELETE is idempotent)."""
        async with self._tag_lock:
            tags = (await self.tags(user_id, room_id))["tags"]
            if tag in tags:
                await self._write(user_id, room_id, TAG_TYPE, {"tags": {k: v for k, v in tags.items() if k != tag}})


def _check_room_id(room_id: str) -> None:
    """"" is global account data; anything else must look like a room id."""
    if room_id and not ids.is_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
