"""Room aliases and the public room directory."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.auth_rules import user_power_level
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.services.appservice import AppServiceRegistry
from homeserver.services.auth import Requester
from homeserver.services.reader import EventReader
from homeserver.services.remote_rooms import RemoteRoomsPort
from homeserver.services.rooms import RoomService
from storage.stores.rooms import RoomStore

_SUMMARY_TYPES = {
    ("m.room.name", ""): "name", ("m.room.topic", ""): "topic",
    ("m.room.canonical_alias", ""): "canonical_alias", ("m.room.avatar", ""): "avatar_url",
}


def _check_alias(alias: str) -> None:
    try:
        local, _ = ids.split_id("#", alias)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias") from None
    if not local or len(alias.encode()) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias")


class DirectoryService:
    def __init__(
        self, *, rooms: RoomService, store: RoomStore, events: EventReader, remote: RemoteRoomsPort,
        server_name: str, appservices: AppServiceRegistry,
    ) -> None:
        self._appservices = appservices
        self._rooms = rooms
        self._store = store
        self._events = events
        self._remote = remote
        self.server_name = server_name

    async def create_alias(self, requester: Requester, alias: str, room_id: Any) -> None:
        _check_alias(alias)
        if ids.server_of(alias) != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "Alias must be on this server")
        # Spec "Application services": aliases in an exclusive namespace are the service's.
        self._appservices.check_alias(alias, self._appservices.service_of(requester))
        if not isinstance(room_id, str):
            raise MatrixError(400, "M_BAD_JSON", "room_id must be a string")
        await self._rooms.head_or_404(room_id)
        if not await self._store.create_alias(alias, room_id, requester.user_id):
            raise MatrixError(409, "M_UNKNOWN", "Room alias already exists")

    async def resolve(self, alias: str) -> dict[str, Any]:
        _check_alias(alias)
        found = await self._store.get_alias(alias)
        if found is None and ids.server_of(alias) == self.server_name and await self._appservices.query_alias(alias):
            found = await self._store.get_alias(alias)  # spec: the service has just created it
        if found is not None:
            return {"room_id": found[0], "servers": [self.server_name]}
        if self._remote.enabled and ids.server_of(alias) != self.server_name:
            return await self._remote.query_alias(alias)
        raise not_found(f"Room alias {alias} not found")

    async def local_alias(self, alias: str) -> dict[str, Any]:
        """An alias we hold, as a peer asks for it (spec: "GET /_matrix/federation/v1/query/directory")."""
        found = await self._store.get_alias(alias)
        if found is None:
            raise not_found("Room alias not found")
        return {"room_id": found[0], "servers": [self.server_name]}

    async def delete_alias(self, requester: Requester, alias: str) -> None:
        _check_alias(alias)
        found = await self._store.get_alias(alias)
        if found is None:
            raise not_found("Room alias not found")
        if found[1] != requester.user_id and not requester.is_admin:
            raise forbidden("You may only delete aliases you created")
        await self._store.delete_alias(alias)

    async def room_aliases(self, requester: Requester, room_id: str) -> list[str]:
        await self._rooms.visible_window(requester, room_id)
        return await self._store.aliases_of_room(room_id)

    async def get_visibility(self, room_id: str) -> str:
        room = await self._store.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        return "public" if room.is_public else "private"

    async def set_visibility(self, requester: Requester, room_id: str, visibility: Any) -> None:
        if visibility not in ("public", "private"):
            raise MatrixError(400, "M_INVALID_PARAM", "visibility must be public or private")
        head = await self._rooms.require_joined(requester, room_id)
        keys = [("m.room.power_levels", ""), ("m.room.create", "")]
        state = await self._events.state_events({k: head.state[k] for k in keys if k in head.state})
        if user_power_level(state, requester.user_id) < 50 and not requester.is_admin:
            raise forbidden("You need to be a room moderator to publish a room")
        await self._store.set_public(room_id, visibility == "public")

    async def public_rooms_of(
        self, server: str | None, limit: int | None, since: str | None, search: str | None,
        include_all_networks: bool = False, third_party_instance_id: str | None = None,
    ) -> dict[str, Any]:
        """Spec "GET/POST /publicRooms": ours, or with `server` another server's list asked
        over federation (its /publicRooms)."""
        if server is not None and server != self.server_name:
            if not ids.is_valid_server_name(server):
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid server name")
            if not self._remote.enabled:
                raise MatrixError(404, "M_NOT_FOUND", "Federation is disabled on this server")
            return await self._remote.public_rooms(
                server, limit, since, search, include_all_networks, third_party_instance_id,
            )
        return await self.public_rooms(
            limit, since, search,
            include_all_networks=include_all_networks, third_party_instance_id=third_party_instance_id,
        )

    async def public_rooms(
        self, limit: int | None, since: str | None, search: str | None,
        include_all_networks: bool = False, third_party_instance_id: str | None = None,
    ) -> dict[str, Any]:
        """Spec "Published room directories": the server's own list, one application
        service network's (`third_party_instance_id`), or all of them."""
        if third_party_instance_id is not None:
            room_ids = await self._appservices.listed_rooms(third_party_instance_id)
        else:
            room_ids = await self._store.public_room_ids()
            if include_all_networks:
                room_ids = list(dict.fromkeys(room_ids + await self._appservices.listed_rooms(None)))
        entries = []
        for room_id in room_ids:
            head = await self._events.room_head(room_id)
            if head is None:
                continue
            wanted = {k: v for k, v in head.state.items() if k in _SUMMARY_TYPES or k == ("m.room.join_rules", "") or k == ("m.room.history_visibility", "") or k == ("m.room.guest_access", "")}
            state = await self._events.state_events(wanted)
            entry: dict[str, Any] = {
                "room_id": room_id,
                "num_joined_members": sum(1 for m in head.members.values() if m == "join"),
                "world_readable": state.get(("m.room.history_visibility", "")) is not None
                and state[("m.room.history_visibility", "")].content.get("history_visibility") == "world_readable",
                "guest_can_join": state.get(("m.room.guest_access", "")) is not None
                and state[("m.room.guest_access", "")].content.get("guest_access") == "can_join",
            }
            for key, field in _SUMMARY_TYPES.items():
                ev = state.get(key)
                value = ev.content.get({"avatar_url": "url", "canonical_alias": "alias"}.get(field, field)) if ev else None
                if isinstance(value, str) and value:
                    entry[field] = value
            jr = state.get(("m.room.join_rules", ""))
            if jr is not None and isinstance(jr.content.get("join_rule"), str):
                entry["join_rule"] = jr.content["join_rule"]
            if search:
                haystack = " ".join(str(entry.get(k, "")) for k in ("name", "topic", "canonical_alias")).lower()
                if search.lower() not in haystack:
                    continue
            entries.append(entry)
        entries.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
        start = int(since) if since and since.isdigit() else 0
        end = len(entries) if limit is None else start + max(limit, 0)
        out: dict[str, Any] = {"chunk": entries[start:end], "total_room_count_estimate": len(entries)}
        if end < len(entries):
            out["next_batch"] = str(end)
        if start > 0:
            out["prev_batch"] = str(max(0, start - (limit or start)))
        return out
