"""Room life cycle and membership: createRoom, join, invite, leave, kick, ban, state."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.core.events import Event, StoredEvent
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from homeserver.services.auth import Requester
from homeserver.services.local_events import EventSpec, InviteCountersign
from homeserver.services.reader import EventReader
from homeserver.services.remote_rooms import RemoteRoomsPort
from homeserver.services.restricted import restricted_authoriser
from homeserver.services.room_heads import RoomHead
from homeserver.services.writer import RoomWriterPort
from storage.stores.rooms import RoomStore
from storage.stores.users import UserStore


@attrs.frozen
class Visibility:
    """A user's readable window of a room, in stream positions (None = unbounded)."""

    since: int | None  # history visibility 'joined'/'invited': nothing before this
    upto: int | None  # a former member: nothing after they left

    def allows(self, stream: int) -> bool:
        return (self.since is None or stream >= self.since) and (self.upto is None or stream <= self.upto)


_PRESETS = {
    "private_chat": ("invite", "shared", "can_join"),
    "trusted_private_chat": ("invite", "shared", "can_join"),
    "public_chat": ("public", "shared", "forbidden"),
}


def default_power_levels(creator: str, preset: str, invitees: list[str]) -> dict[str, Any]:
    users = {creator: 100}
    if preset == "trusted_private_chat":
        users.update({u: 100 for u in invitees})
    return {
        "users": users, "users_default": 0,
        "events": {
            "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100,
        },
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
        "invite": 0 if preset != "public_chat" else 50,
    }


class RoomService:
    def __init__(
        self, *, events: EventReader, writer: RoomWriterPort, remote: RemoteRoomsPort,
        rooms: RoomStore, users: UserStore, server_name: str, default_room_version: str,
        blocked_by: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        # blocked_by(room): the admin who blocked the room (admin API), or None.
        self._blocked_by = blocked_by
        self._events = events
        self._writer = writer
        self._remote = remote
        self._rooms = rooms
        self._users = users
        self.server_name = server_name
        self.default_room_version = default_room_version

    # -- helpers ------------------------------------------------------------

    async def head_or_404(self, room_id: str) -> RoomHead:
        head = await self._events.room_head(room_id)
        if head is None:
            raise not_found("Unknown room")
        return head

    async def require_joined(self, requester: Requester, room_id: str) -> RoomHead:
        head = await self._events.room_head(room_id)
        if head is None or head.members.get(requester.user_id) != "join":
            raise forbidden(f"User {requester.user_id} not in room {room_id}")
        return head

    async def _member_content(self, user_id: str, membership: str, extra: dict[str, Any]) -> dict[str, Any]:
        """A member event's content with the target's profile on joins and invites (as
        Synapse fills it: clients show the invitee's name in the timeline, not their id)."""
        content: dict[str, Any] = {"membership": membership}
        if membership in ("join", "invite", "knock"):
            content.update(await self._profile_of(user_id))
        content.update(extra)
        return content

    async def member_content(self, user_id: str, membership: str, extra: dict[str, Any]) -> dict[str, Any]:
        """A member event's content as this server fills it (profile on joins, invites, knocks)."""
        return await self._member_content(user_id, membership, extra)

    async def _profile_of(self, user_id: str) -> dict[str, Any]:
        if ids.server_of(user_id) == self.server_name:
            user = await self._users.get_user(user_id)
            if user is None:
                return {}
            found = {"displayname": user.displayname, "avatar_url": user.avatar_url}
            return {k: v for k, v in found.items() if v is not None}
        if not self._remote.enabled:
            return {}
        try:
            return await self._remote.query_profile(user_id)
        except MatrixError:
            return {}  # an unreachable server does not stop the invite; the id is shown

    # -- createRoom -----------------------------------------------------------

    async def create_room(self, requester: Requester, body: dict[str, Any]) -> str:
        creator = requester.user_id
        version = body.get("room_version", self.default_room_version)
        if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {version!r} is not supported")
        visibility = body.get("visibility", "private")
        if visibility not in ("public", "private"):
            raise MatrixError(400, "M_INVALID_PARAM", "visibility must be public or private")
        preset = body.get("preset") or ("public_chat" if visibility == "public" else "private_chat")
        if preset not in _PRESETS:
            raise MatrixError(400, "M_INVALID_PARAM", f"Unknown preset {preset!r}")
        invitees = body.get("invite", [])
        if not isinstance(invitees, list) or not all(isinstance(u, str) for u in invitees):
            raise MatrixError(400, "M_INVALID_PARAM", "invite must be a list of user ids")
        invitees = [ids.normalize_user_id(u, self.server_name) for u in invitees]
        for key in ("creation_content", "power_level_content_override"):
            if key in body and not isinstance(body[key], dict):
                raise MatrixError(400, "M_BAD_JSON", f"{key} must be an object")
        initial_state = body.get("initial_state", [])
        if not isinstance(initial_state, list) or not all(
            isinstance(s, dict) and isinstance(s.get("type"), str) and isinstance(s.get("content", {}), dict)
            for s in initial_state
        ):
            raise MatrixError(400, "M_BAD_JSON", "initial_state must be a list of state events")
        for key in ("name", "topic"):
            if key in body and not isinstance(body[key], str):
                raise MatrixError(400, "M_BAD_JSON", f"{key} must be a string")

        alias: str | None = None
        if body.get("room_alias_name"):
            local = body["room_alias_name"]
            if not isinstance(local, str) or ":" in local or "#" in local:
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid room_alias_name")
            alias = f"#{local}:{self.server_name}"
            if await self._rooms.get_alias(alias) is not None:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")

        # v12 rooms are named by their create event's hash; this is then a placeholder.
        room_id = ids.new_room_id(self.server_name)
        create_content = {**body.get("creation_content", {}), "room_version": version}
        if get_room_version(version).creator_in_content:
            create_content["creator"] = creator
        join_rule, history, guest = _PRESETS[preset]
        pl = default_power_levels(creator, preset, invitees)
        if get_room_version(version).privileged_creators:
            # rooms/v12: creators have infinite power and must not be listed in power
            # levels (auth rule 10.4). As Synapse, a trusted private chat makes its
            # invitees additional creators instead of giving them level 100.
            creators = {creator}
            if preset == "trusted_private_chat" and invitees:
                extra = create_content.get("additional_creators") or []
                create_content["additional_creators"] = list(dict.fromkeys([*extra, *invitees]))
            extra = create_content.get("additional_creators")
            if isinstance(extra, list):
                creators.update(u for u in extra if isinstance(u, str))
        pl.update(copy.deepcopy(body.get("power_level_content_override", {})))
        if get_room_version(version).privileged_creators and isinstance(pl.get("users"), dict):
            # Also out of an override: clients still send {creator: 100} (decision).
            pl["users"] = {u: lvl for u, lvl in pl["users"].items() if u not in creators}

        specs = [
            EventSpec("m.room.create", creator, create_content, ""),
            EventSpec("m.room.member", creator, await self._member_content(creator, "join", {}), creator),
            EventSpec("m.room.power_levels", creator, pl, ""),
        ]
        if alias:
            specs.append(EventSpec("m.room.canonical_alias", creator, {"alias": alias}, ""))
        specs += [
            EventSpec("m.room.join_rules", creator, {"join_rule": join_rule}, ""),
            EventSpec("m.room.history_visibility", creator, {"history_visibility": history}, ""),
            EventSpec("m.room.guest_access", creator, {"guest_access": guest}, ""),
        ]
        specs += [
            EventSpec(s["type"], creator, s.get("content", {}), s.get("state_key", ""))
            for s in initial_state
        ]
        if "name" in body:
            specs.append(EventSpec("m.room.name", creator, {"name": body["name"]}, ""))
        if "topic" in body:
            specs.append(EventSpec("m.room.topic", creator, {"topic": body["topic"]}, ""))
        is_direct = bool(body.get("is_direct"))
        extra = {"is_direct": True} if is_direct else {}
        local = [u for u in invitees if ids.server_of(u) == self.server_name]
        remote = [u for u in invitees if ids.server_of(u) != self.server_name]
        for invitee in local:
            specs.append(EventSpec("m.room.member", creator, {"membership": "invite", **extra}, invitee))
        stored = await self._writer.create_room(room_id, version, creator, specs)
        room_id = stored[0].event.room_id  # v12: the create event's hash names the room
        # Remote invitees' servers must countersign their invites (one request each).
        for invitee in remote:
            await self._invite_remote(creator, room_id, invitee, extra)
        if alias:
            await self._rooms.create_alias(alias, room_id, creator)
        if visibility == "public":
            await self._rooms.set_public(room_id, True)
        return room_id

    # -- membership ---------------------------------------------------------

    async def resolve_room(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """A room id and the servers that may know it (from the alias, or the id itself)."""
        if room_id_or_alias.startswith("#"):
            found = await self._rooms.get_alias(room_id_or_alias)
            if found is not None:
                return found[0], [self.server_name]
            if self._remote.enabled and ids.server_of(room_id_or_alias) != self.server_name:
                resolved = await self._remote.query_alias(room_id_or_alias)
                return resolved["room_id"], resolved["servers"]
            raise not_found("Room alias not found")
        if not ids.is_room_id(room_id_or_alias):
            raise MatrixError(400, "M_INVALID_PARAM", "Not a room id or alias")
        return room_id_or_alias, []

    async def join_is_local(self, room_id_or_alias: str) -> bool:
        """Whether joining needs no other server (rate limits: rc_joins.local vs .remote).
        Asks no other server: an alias that is not ours counts as remote."""
        if room_id_or_alias.startswith("#"):
            found = await self._rooms.get_alias(room_id_or_alias)
            if found is None:
                return ids.server_of(room_id_or_alias) == self.server_name
            room_id_or_alias = found[0]
        if not ids.is_room_id(room_id_or_alias):
            return True  # refused by the join itself
        return await self._is_resident(room_id_or_alias) is not None

    async def _is_resident(self, room_id: str) -> RoomHead | None:
        """The room head when this server takes part in the room (a local member is joined)."""
        head = await self._events.room_head(room_id)
        if head is not None and (head.joined_local(self.server_name) or not self._remote.enabled):
            return head
        return None

    async def join(
        self, requester: Requester, room_id_or_alias: str, reason: str | None = None,
        via: list[str] | None = None,
    ) -> str:
        room_id, servers = await self.resolve_room(room_id_or_alias)
        if self._blocked_by is not None and await self._blocked_by(room_id):
            raise forbidden("This room has been blocked on this server")
        head = await self._is_resident(room_id)
        if head is not None:
            if head.members.get(requester.user_id) == "join":
                return room_id  # joining twice is idempotent
            if requester.is_guest:
                # Spec "Guest access": guests join only rooms whose m.room.guest_access is can_join.
                access = await self._events.current_state_event(room_id, ("m.room.guest_access", ""))
                if access is None or access.content.get("guest_access") != "can_join":
                    raise MatrixError(403, "M_FORBIDDEN", "Guest access is not allowed in this room")
            extra: dict[str, Any] = {"reason": reason} if isinstance(reason, str) else {}
            authoriser = await self.restricted_authoriser(head, requester.user_id)
            if authoriser is not None:
                extra["join_authorised_via_users_server"] = authoriser
            content = await self._member_content(requester.user_id, "join", extra)
            await self._writer.send_event(room_id, EventSpec("m.room.member", requester.user_id, content, requester.user_id))
            return room_id
        if not self._remote.enabled or (ids.server_of(room_id) == self.server_name and not via):
            raise not_found("Unknown room")
        if requester.is_guest:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot join rooms on other servers")
        invite = await self._rooms.get_membership(room_id, requester.user_id)
        candidates = [s for s in [*(via or []), *servers, ids.server_of(room_id)] if s]
        if invite is not None and invite.membership == "invite":
            candidates.insert(0, ids.server_of(invite.sender))
        content = await self._member_content(requester.user_id, "join", {"reason": reason} if reason else {})
        await self._remote.join_remote(requester.user_id, room_id, candidates, content)
        return room_id

    async def restricted_authoriser(self, head: RoomHead, user_id: str) -> str | None:
        return await restricted_authoriser(self._events, self.server_name, head, user_id)

    async def knock(
        self, requester: Requester, room_id_or_alias: str, reason: str | None = None,
        via: list[str] | None = None,
    ) -> str:
        """Spec "Knocking on rooms": ask to be invited to a `knock` or `knock_restricted` room."""
        room_id, servers = await self.resolve_room(room_id_or_alias)
        extra = {"reason": reason} if isinstance(reason, str) else {}
        head = await self._is_resident(room_id)
        if head is not None:
            if head.members.get(requester.user_id) in ("join", "invite", "ban"):
                raise forbidden(f"You cannot knock while {head.members[requester.user_id]}")
            await self._membership(requester.user_id, room_id, requester.user_id, "knock", reason)
            return room_id
        if not self._remote.enabled or (ids.server_of(room_id) == self.server_name and not via):
            raise not_found("Unknown room")
        content = await self._member_content(requester.user_id, "knock", extra)
        await self._remote.knock_remote(requester.user_id, room_id, [*(via or []), *servers, ids.server_of(room_id)], content)
        return room_id

    async def leave(self, requester: Requester, room_id: str, reason: str | None = None) -> None:
        head = await self._is_resident(room_id)
        if head is None:
            row = await self._rooms.get_membership(room_id, requester.user_id)
            if row is None or row.membership not in ("invite", "knock") or not self._remote.enabled:
                raise forbidden("You are not in this room")
            held = await self._events.room_head(room_id)
            create = await self._events.current_state_event(room_id, ("m.room.create", ""))
            if held is not None and held.members.get(requester.user_id) == row.membership and (
                create is not None and ids.server_of(create.sender) == self.server_name  # v12 ids name no server
            ):
                # Our own room whose members all left: the rejection is an ordinary event here.
                await self._membership(requester.user_id, room_id, requester.user_id, "leave", reason)
                return
            servers = [s for s in (ids.server_of(row.sender), ids.server_of(room_id)) if s]  # v12 ids name no server
            if held is not None:
                servers += sorted({ids.server_of(u) for u, m in held.members.items() if m == "join"})
            await self._remote.leave_remote(requester.user_id, room_id, servers, invite_event_id=row.event_id)
            return
        if head.members.get(requester.user_id) in (None, "leave"):
            raise forbidden("You are not in this room")
        await self._membership(requester.user_id, room_id, requester.user_id, "leave", reason)

    async def set_membership(
        self, requester: Requester, room_id: str, target: str, membership: str, reason: str | None,
    ) -> None:
        """invite / kick (leave) / ban / unban (leave) of another user."""
        target = ids.normalize_user_id(target, self.server_name)
        # Acting on someone else needs the actor in the room (auth rules 4.4.2, 4.5.2, 4.6.1);
        # an unknown room is the same refusal, as Synapse answers: 403, not 404.
        head = await self.require_joined(requester, room_id)
        if membership == "invite" and head.members.get(target) == "invite":
            return
        if membership == "invite" and ids.server_of(target) == self.server_name:
            if await self._users.get_user(target) is None:
                raise not_found("Unknown user")
        if membership == "invite" and ids.server_of(target) != self.server_name:
            extra = await self._member_content(target, "invite", {"reason": reason} if reason else {})
            extra.pop("membership")
            await self._invite_remote(requester.user_id, room_id, target, extra)
            return
        await self._membership(requester.user_id, room_id, target, membership, reason)

    async def _invite_remote(self, sender: str, room_id: str, target: str, extra: dict[str, Any]) -> None:
        """Invite a user of another server: their server countersigns before we store it."""
        if not self._remote.enabled:
            raise forbidden("Federation is disabled on this server")
        head = await self.head_or_404(room_id)
        await self._writer.send_event(
            room_id, EventSpec("m.room.member", sender, {"membership": "invite", **extra}, target),
            InviteCountersign(self._remote, head.room_version),
        )

    async def _membership(
        self, sender: str, room_id: str, target: str, membership: str, reason: str | None,
    ) -> StoredEvent:
        extra = {"reason": reason} if isinstance(reason, str) else {}
        content = await self._member_content(target, membership, extra)
        return await self._writer.send_event(room_id, EventSpec("m.room.member", sender, content, target))

    async def forget(self, requester: Requester, room_id: str) -> None:
        row = await self._rooms.get_membership(room_id, requester.user_id)
        if row is None:
            raise not_found("Unknown room")
        if row.membership in ("join", "invite"):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self._rooms.forget(room_id, requester.user_id)

    async def joined_rooms(self, user_id: str) -> list[str]:
        return await self.rooms_with_membership(user_id, ("join",))

    async def rooms_with_membership(self, user_id: str, memberships: tuple[str, ...]) -> list[str]:
        return [m.room_id for m in await self._rooms.memberships_for_user(user_id, memberships)]

    # -- state and messages ------------------------------------------------

    async def send(
        self, requester: Requester, room_id: str, event_type: str, content: dict[str, Any],
        state_key: str | None = None, txn_id: str | None = None, redacts: str | None = None,
    ) -> str:
        # A repeated txn id is answered with the original event (checked under the room lock).
        txn = (requester.device_id, txn_id) if txn_id is not None else None
        head = await self.head_or_404(room_id)
        if event_type == "m.room.member" and state_key is not None:
            membership = content.get("membership")
            if not isinstance(membership, str):
                raise MatrixError(400, "M_BAD_JSON", "membership is required")
        if event_type == "m.room.canonical_alias" and state_key == "":
            await self._check_canonical_alias(head, content)
        se = await self._writer.send_event(room_id, EventSpec(
            event_type, requester.user_id, content, state_key, redacts, txn,
        ))
        return se.event.event_id

    async def _check_canonical_alias(self, head: RoomHead, content: dict[str, Any]) -> None:
        """Spec "m.room.canonical_alias" (PUT state): a malformed alias is 400 M_INVALID_PARAM and
        one that does not point to this room 400 M_BAD_ALIAS. Only aliases new to the event are
        checked, so an alias deleted since can still be dropped from the list."""
        previous: dict[str, Any] = {}
        if (eid := head.state.get(("m.room.canonical_alias", ""))) is not None:
            if (old := await self._events.get_event(eid)) is not None:
                previous = old.event.content
        alias = content.get("alias")
        alt = content.get("alt_aliases", [])
        if alias is not None and not isinstance(alias, str):
            raise MatrixError(400, "M_INVALID_PARAM", "alias must be a string")
        if not isinstance(alt, list) or not all(isinstance(a, str) for a in alt):
            raise MatrixError(400, "M_INVALID_PARAM", "alt_aliases must be a list of strings")
        old_alt = previous.get("alt_aliases")
        known = set(old_alt) if isinstance(old_alt, list) else set()
        new = [a for a in alt if a not in known]
        if alias and alias != previous.get("alias"):
            new.insert(0, alias)
        for candidate in new:
            await self._alias_points_here(candidate, head.room_id)

    async def _alias_points_here(self, alias: str, room_id: str) -> None:
        try:
            local, _ = ids.split_id("#", alias)
        except ValueError:
            local = ""
        if not local or len(alias.encode()) > ids.MAX_ID_BYTES:
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room alias: {alias}")
        target: str | None = None
        found = await self._rooms.get_alias(alias)
        if found is not None:
            target = found[0]
        elif self._remote.enabled and ids.server_of(alias) != self.server_name:
            try:
                target = (await self._remote.query_alias(alias)).get("room_id")
            except MatrixError:
                target = None
        if target != room_id:
            raise MatrixError(400, "M_BAD_ALIAS", f"Room alias {alias} does not point to the room")

    async def current_state(self, requester: Requester, room_id: str) -> list[Event]:
        head, window = await self._readable_head(requester, room_id)
        state = head.state if window.upto is None else await self._events.state_at_stream(room_id, window.upto)
        return list((await self._events.state_events(state)).values())

    async def state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str,
    ) -> Event:
        head, window = await self._readable_head(requester, room_id)
        state = head.state if window.upto is None else await self._events.state_at_stream(room_id, window.upto)
        eid = state.get((event_type, state_key))
        if eid is None:
            raise not_found("Event not found.")
        se = await self._events.get_event(eid)
        if se is None:
            raise not_found("Event not found.")
        return se.event

    async def _readable_head(self, requester: Requester, room_id: str) -> tuple[RoomHead, Visibility]:
        """The room head and the stream window of history this user may read."""
        head = await self.head_or_404(room_id)
        membership = head.members.get(requester.user_id)
        visibility = await self.history_visibility(head)
        if membership == "join" and visibility not in ("joined", "invited"):
            return head, Visibility(None, None)  # a member reads all of a shared room's history
        if membership in ("join", "leave", "ban"):
            row = await self._rooms.get_membership(room_id, requester.user_id)
            upto = row.stream_ordering if row is not None and membership != "join" else None
            if membership == "join" or row is not None:
                since = None
                if visibility in ("joined", "invited") and row is not None:
                    since = await self._membership_start(row.event_id, visibility == "invited")
                return head, Visibility(since, upto)
        if visibility == "world_readable":
            return head, Visibility(None, None)
        raise forbidden(f"User {requester.user_id} not in room {room_id}, and room previews are disabled")

    async def _membership_start(self, event_id: str, count_invite: bool) -> int | None:
        """Stream position where the user's current (or last) stay in the room began:
        walk back through their member events while they were joined (or invited)."""
        wanted = {"join", "invite"} if count_invite else {"join"}
        start: int | None = None
        se = await self._events.get_event(event_id)
        for _ in range(20):
            if se is None:
                break
            if se.event.membership in wanted:
                start = se.stream_ordering
            elif start is not None or se.event.membership not in ("leave", "ban"):
                break
            se = await self._events.get_event(se.replaces_state) if se.replaces_state else None
        return start

    async def history_visibility(self, head: RoomHead) -> str:
        ev = await self._events.current_state_event(head.room_id, ("m.room.history_visibility", ""))
        value = ev.content.get("history_visibility") if ev else None
        return value if isinstance(value, str) else "shared"

    async def visible_window(self, requester: Requester, room_id: str) -> Visibility:
        """Which part of the room's history this user may read (raises if none)."""
        return (await self._readable_head(requester, room_id))[1]

    async def members(self, requester: Requester, room_id: str) -> list[Event]:
        state = await self.current_state(requester, room_id)
        return [e for e in state if e.type == "m.room.member"]
