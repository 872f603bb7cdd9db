"""Room upgrades (spec: "Room Upgrades", POST /rooms/{roomId}/upgrade).

Order, as Synapse does it: the new room's id is made first; the old room gets the
`m.room.tombstone` pointing at it; the new room is created with `predecessor` naming the
old room and the tombstone and a copy of the old room's state that carries over; local
aliases and the directory listing move; the old room's power levels are raised so that
only moderators can still speak or invite there.

Decided where the spec leaves room: local members of the old room (other than the
upgrader) are invited to the new room unless its join rule is `public`, so they see it in
/sync at once; remote members follow the tombstone themselves. Bans carry over.
"""

from __future__ import annotations

import copy
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from homeserver.services.auth import Requester
from homeserver.services.local_events import EventSpec
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService
from homeserver.services.writer import RoomWriterPort
from storage.stores.rooms import RoomStore

# Spec "Room Upgrades": state the server should carry over (type, state key "" unless noted).
COPIED_STATE = (
    "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.name",
    "m.room.topic", "m.room.avatar", "m.room.encryption", "m.room.server_acl", "m.room.canonical_alias",
)
COPIED_KEYED = ("m.space.child", "m.space.parent")  # every state key
_RESTRICTED_LEVEL = 50


class RoomUpgrader:
    def __init__(
        self, *, rooms: RoomService, events: EventReader, writer: RoomWriterPort, store: RoomStore,
        server_name: str,
    ) -> None:
        self._rooms = rooms
        self._events = events
        self._writer = writer
        self._store = store
        self.server_name = server_name

    async def upgrade(self, requester: Requester, room_id: str, new_version: str) -> str:
        if new_version not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {new_version!r} is not supported")
        user = requester.user_id
        head = await self._rooms.require_joined(requester, room_id)
        state = await self._events.state_events(head.state)
        levels = state.get(("m.room.power_levels", ""))
        pl = copy.deepcopy(levels.content) if levels is not None else {}
        if _level(pl, user) < _needed(pl, "m.room.tombstone"):
            raise forbidden("You do not have the power to upgrade this room")

        target = get_room_version(new_version)
        # rooms/v12: the new room's id is its create event's hash, known only once it is
        # made; so the replacement is created first and the tombstone names it after
        # (predecessor without event_id, which the spec made optional for this reason).
        # Older versions: tombstone first, so the predecessor can cite it.
        new_room = ids.new_room_id(self.server_name)
        predecessor: dict[str, Any] = {"room_id": room_id}
        if not target.room_id_is_create_hash:
            predecessor["event_id"] = await self._tombstone(requester, room_id, new_room)
        old_create = state[("m.room.create", "")].content
        create: dict[str, Any] = {"room_version": new_version, "predecessor": predecessor}
        for key in ("m.federate", "type"):
            if key in old_create:
                create[key] = old_create[key]
        if target.creator_in_content:
            create["creator"] = user
        new_pl = pl or _default_pl(user)
        if target.privileged_creators:
            # v12: the creator's power is infinite and may not be listed (auth rules).
            users = new_pl.get("users") if isinstance(new_pl.get("users"), dict) else {}
            new_pl = {**new_pl, "users": {u: v for u, v in users.items() if u != user}}
        specs = [
            EventSpec("m.room.create", user, create, ""),
            EventSpec("m.room.member", user, await self._rooms.member_content(user, "join", {}), user),
            # The upgrader keeps at least the power they had, so the copied state can follow.
            EventSpec("m.room.power_levels", user, new_pl, ""),
        ]
        for (event_type, key), event in sorted(state.items()):
            if (event_type in COPIED_STATE and key == "") or event_type in COPIED_KEYED:
                content = event.content
                if event_type == "m.room.canonical_alias":
                    content = {k: v for k, v in content.items() if k in ("alias", "alt_aliases")}
                specs.append(EventSpec(event_type, user, copy.deepcopy(content), key))
        members = [(u, m) for u, m in head.members.items() if u != user]
        for target_user, membership in members:
            if membership == "ban":
                specs.append(EventSpec("m.room.member", user, {"membership": "ban"}, target_user))
        join_rule = state.get(("m.room.join_rules", ""))
        public = join_rule is not None and join_rule.content.get("join_rule") == "public"
        if not public:
            for target_user, membership in members:
                if membership in ("join", "invite") and ids.server_of(target_user) == self.server_name:
                    content = await self._rooms.member_content(target_user, "invite", {})
                    specs.append(EventSpec("m.room.member", user, content, target_user))
        stored = await self._writer.create_room(new_room, new_version, user, specs)
        if target.room_id_is_create_hash:
            new_room = stored[0].event.room_id
            await self._tombstone(requester, room_id, new_room)

        await self._move_aliases(room_id, new_room)
        record = await self._store.get_room(room_id)
        if record is not None and record.is_public:
            await self._store.set_public(new_room, True)
            await self._store.set_public(room_id, False)
        await self._restrict_old_room(requester, room_id, pl, state)
        return new_room

    async def _tombstone(self, requester: Requester, room_id: str, new_room: str) -> str:
        return await self._rooms.send(
            requester, room_id, "m.room.tombstone",
            {"body": "This room has been replaced", "replacement_room": new_room}, state_key="",
        )

    async def _move_aliases(self, old: str, new: str) -> None:
        for alias in await self._store.aliases_of_room(old):
            found = await self._store.get_alias(alias)
            creator = found[1] if found is not None else None
            await self._store.delete_alias(alias)
            await self._store.create_alias(alias, new, creator or "")

    async def _restrict_old_room(
        self, requester: Requester, room_id: str, pl: dict[str, Any], state: dict[Any, Any],
    ) -> None:
        """Spec: "the server should restrict the old room's power levels": nobody below
        moderators may speak or invite there any more. The old canonical alias is cleared
        (the aliases now point at the new room)."""
        if state.get(("m.room.canonical_alias", "")) is not None:
            await self._rooms.send(requester, room_id, "m.room.canonical_alias", {}, state_key="")
        restricted = max(_RESTRICTED_LEVEL, _as_int(pl.get("users_default", 0)) + 1)
        changed = dict(pl)
        for key in ("events_default", "invite"):
            if _as_int(changed.get(key, 0)) < restricted:
                changed[key] = restricted
        if changed != pl:
            await self._rooms.send(requester, room_id, "m.room.power_levels", changed, state_key="")


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _level(pl: dict[str, Any], user: str) -> int:
    users = pl.get("users") if isinstance(pl.get("users"), dict) else {}
    return _as_int(users.get(user, pl.get("users_default", 0)))


def _needed(pl: dict[str, Any], event_type: str) -> int:
    events = pl.get("events") if isinstance(pl.get("events"), dict) else {}
    return _as_int(events.get(event_type, pl.get("state_default", 50)))


def _default_pl(user: str) -> dict[str, Any]:
    return {"users": {user: 100}}
