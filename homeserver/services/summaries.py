"""Room summary (spec "GET /_matrix/client/v1/room_summary/{roomIdOrAlias}", MSC3266),
mutual rooms (spec "GET /_matrix/client/v1/mutual_rooms", MSC2666) and whois (spec
"GET /_matrix/client/v3/admin/whois/{userId}")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.services.auth import Requester
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService
from homeserver.services.spaces import SpaceService
from storage.stores.rooms import RoomStore
from storage.stores.users import UserStore

MUTUAL_PAGE = 100
_PEEKABLE_RULES = ("public", "knock", "knock_restricted")


class SummaryService:
    def __init__(
        self, *, events: EventReader, rooms: RoomService, room_store: RoomStore, users: UserStore,
        server_name: str, spaces: SpaceService,
    ) -> None:
        self._spaces = spaces
        self._events = events
        self._rooms = rooms
        self._room_store = room_store
        self._users = users
        self.server_name = server_name

    async def room_summary(
        self, requester: Requester | None, room_id_or_alias: str, via: Sequence[str] = (),
    ) -> dict[str, Any]:
        """A room we hold: shown to its members (and those invited, knocking or who left)
        and, for anyone, when it is public, knockable or world readable; otherwise 404 like
        an unknown room, so a private room's existence is not told. A restricted room is
        shown to a user who may join it through its allow list. A room we do not hold is
        asked of the servers in `via` (and those the alias named, and the room id's) over
        federation, with the same rules."""
        try:
            room_id, servers = await self._rooms.resolve_room(room_id_or_alias)
        except MatrixError as e:
            if e.errcode == "M_NOT_FOUND":
                raise not_found("Room not found") from None
            raise
        head = await self._events.room_head(room_id)
        if head is None or not any(m == "join" for m in head.members.values()):
            candidates = [*via, *servers, ids.server_of(room_id)]  # v12 room ids name no server
            asked = tuple(s for s in dict.fromkeys(candidates) if s and s != self.server_name)
            remote = await self._spaces.remote_room_summary(
                room_id, asked, requester.user_id if requester is not None else None,
            )
            if remote is not None:
                return remote
        if head is None:
            raise not_found("Room not found")
        keys = [
            ("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.avatar", ""),
            ("m.room.canonical_alias", ""), ("m.room.join_rules", ""), ("m.room.history_visibility", ""),
            ("m.room.guest_access", ""), ("m.room.encryption", ""),
        ]
        state = await self._events.state_events({k: head.state[k] for k in keys if k in head.state})

        def field(event_type: str, name: str) -> Any:
            ev = state.get((event_type, ""))
            return ev.content.get(name) if ev is not None else None

        join_rule = field("m.room.join_rules", "join_rule") or "invite"
        world_readable = field("m.room.history_visibility", "history_visibility") == "world_readable"
        membership = head.members.get(requester.user_id) if requester is not None else None
        visible = membership is not None or join_rule in _PEEKABLE_RULES or world_readable
        if not visible and requester is not None and join_rule in ("restricted", "knock_restricted"):
            visible = await self._rooms.restricted_authoriser(head, requester.user_id) is not None
        if not visible:
            raise not_found("Room not found")
        out: dict[str, Any] = {
            "room_id": room_id,
            "num_joined_members": sum(1 for m in head.members.values() if m == "join"),
            "world_readable": world_readable,
            "guest_can_join": field("m.room.guest_access", "guest_access") == "can_join",
            "join_rule": join_rule,
            "room_version": head.room_version,
        }
        for event_type, name, key in (
            ("m.room.name", "name", "name"), ("m.room.topic", "topic", "topic"),
            ("m.room.avatar", "url", "avatar_url"), ("m.room.canonical_alias", "alias", "canonical_alias"),
        ):
            value = field(event_type, name)
            if isinstance(value, str) and value:
                out[key] = value
        room_type = field("m.room.create", "type")
        if isinstance(room_type, str):
            out["room_type"] = room_type
        algorithm = field("m.room.encryption", "algorithm")
        if isinstance(algorithm, str):
            out["encryption"] = algorithm
        if membership is not None:
            out["membership"] = membership
        return out

    async def mutual_rooms(self, requester: Requester, user_id: str | None, from_: str | None) -> dict[str, Any]:
        if not user_id or not ids.is_valid_user_id(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", "The user ID provided was invalid")
        if user_id == requester.user_id:
            raise MatrixError(400, "M_INVALID_PARAM", "You cannot ask for rooms shared with yourself")
        start = 0
        if from_ is not None:
            if not from_.isdigit():
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid from token")
            start = int(from_)
        mine = [m.room_id for m in await self._room_store.memberships_for_user(requester.user_id, ["join"])]
        shared = []
        for room_id in sorted(mine):
            head = await self._events.room_head(room_id)
            if head is not None and head.members.get(user_id) == "join":
                shared.append(room_id)
        page = shared[start:start + MUTUAL_PAGE]
        out: dict[str, Any] = {"joined": page, "count": len(shared)}
        if start + MUTUAL_PAGE < len(shared):
            out["next_batch"] = str(start + MUTUAL_PAGE)
        return out

    async def whois(self, requester: Requester, user_id: str) -> dict[str, Any]:
        """Admins may look up anyone on this server, users themselves."""
        if user_id != requester.user_id and not requester.is_admin:
            raise forbidden("You are not a server admin")
        if not ids.is_valid_user_id(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Not a user id")
        if ids.server_of(user_id) != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "Only local users can be looked up")
        if await self._users.get_user(user_id) is None:
            raise not_found("Unknown user")
        devices: dict[str, Any] = {}
        for d in await self._users.list_devices(user_id):
            connection: dict[str, Any] = {}
            if d.get("last_seen_ip") is not None:
                connection["ip"] = d["last_seen_ip"]
            if d.get("last_seen_ts") is not None:
                connection["last_seen"] = d["last_seen_ts"]
            devices[d["device_id"]] = {"sessions": [{"connections": [connection] if connection else []}]}
        return {"user_id": user_id, "devices": devices}
