"""Dissolving a group, which is also the admin API's room deletion
(``DELETE /_synapse/admin/v2/rooms/{roomId}``).

In the background, recorded in ``room_deletions`` so a restart resumes it: a final
notice from the group, join rules closed (``invite``), the room delisted, its local
aliases and canonical alias removed, every member removed (local members leave, which
needs no power; remote members are kicked by the most powerful local member, so their
servers hear of it over federation), the acting member last; then the room is blocked
if asked. Each step is safe to repeat, so dissolving twice (or resuming) is harmless.

Admin options, as Synapse's delete room API (version 2) has them:
- ``new_room_user_id``: a local user creates a new room (``room_name``) first; every local
  member removed from the old room is joined to it and sees ``message`` there, and the old
  room's local aliases point to it. The new room is recorded before anyone is moved, so a
  resumed deletion moves people into the same room.
- ``purge`` (the default for the admin API, never for a group's own dissolve): once nobody
  of ours is left, every row of the room is erased (storage/stores/room_purge.py) and the
  server forgets it; the status goes ``shutting_down`` -> ``purging`` -> ``complete``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.core.roles import creators_of, role_of, user_level
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService
from homeserver.services.writer import RoomWriterPort
from storage.stores.admin import AdminStore
from storage.stores.im import ImStore
from storage.stores.rooms import RoomStore
from storage.stores.users import UserStore

DEFAULT_NEW_ROOM_NAME = "Content Violation Notification"

log = logging.getLogger(__name__)


def _as(user_id: str) -> Requester:
    return Requester(user_id, "", "", rate_limited=False)


class RoomDeletionService:
    def __init__(
        self, *, rooms: RoomService, events: EventReader, writer: RoomWriterPort, room_store: RoomStore,
        store: ImStore, admin_store: AdminStore, users: UserStore, server_name: str,
    ) -> None:
        self._rooms = rooms
        self._writer = writer
        self._users = users
        self._events = events
        self._room_store = room_store
        self._store = store
        self._admin_store = admin_store
        self.server_name = server_name
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Resume deletions a previous process did not finish."""
        for row in await self._store.unfinished_deletions():
            self._spawn(row["delete_id"], row["room_id"], row["params"], row["result"])

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def dissolve(self, requester: Requester, room_id: str, message: str | None) -> dict[str, Any]:
        """The group owner (or a server admin) dissolves the group."""
        head = await self._rooms.head_or_404(room_id)
        if not requester.is_admin:
            if head.members.get(requester.user_id) != "join":
                raise forbidden("You are not in this group")
            levels = await self._events.current_state_event(room_id, ("m.room.power_levels", ""))
            if role_of(user_level(
                dict(levels.content) if levels else {}, requester.user_id, await self._creators(room_id),
            )) != "owner":
                raise forbidden("Only the group owner can dissolve the group")
        return await self.delete(requester.user_id, room_id, {
            "block": False, "purge": False, "message": message or "This group has been dissolved.",
            "requester": requester.user_id,
        })

    async def admin_delete(
        self, requester: Requester, room_id: str, *, block: bool, purge: bool, message: str | None,
        force_purge: bool = False, new_room_user_id: str | None = None, room_name: str | None = None,
    ) -> dict[str, Any]:
        if not requester.is_admin:
            raise forbidden("You are not a server admin")
        if not ids.is_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
        if new_room_user_id is not None:
            if not ids.is_valid_user_id(new_room_user_id) or ids.server_of(new_room_user_id) != self.server_name:
                raise MatrixError(400, "M_INVALID_PARAM", "new_room_user_id must be a local user")
            user = await self._users.get_user(new_room_user_id)
            if user is None or user.deactivated:
                raise MatrixError(400, "M_INVALID_PARAM", "new_room_user_id is not an active local user")
        return await self.delete(requester.user_id, room_id, {
            "block": block, "purge": purge, "message": message, "requester": requester.user_id,
            "force_purge": force_purge, "new_room_user_id": new_room_user_id, "room_name": room_name,
        })

    async def delete(self, user_id: str, room_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Start (or join) the deletion of ``room_id``: idempotent while one runs or after it
        completed; a failed one may be started again."""
        for row in await self._store.deletions_of_room(room_id):
            if row["status"] != "failed":
                return {"delete_id": row["delete_id"]}
        delete_id = secrets.token_urlsafe(12)
        await self._store.add_deletion(delete_id, room_id, params, now_ms())
        self._spawn(delete_id, room_id, params, None)
        return {"delete_id": delete_id}

    def _spawn(self, delete_id: str, room_id: str, params: dict[str, Any], progress: dict[str, Any] | None) -> None:
        task = asyncio.create_task(self._run(delete_id, room_id, params, progress), name=f"delete-room-{room_id}")
        self._tasks[delete_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(delete_id, None))

    async def wait(self, delete_id: str) -> None:
        """Until this process's task for ``delete_id`` is over (tests, shutdown)."""
        task = self._tasks.get(delete_id)
        if task is not None:
            await asyncio.wait([task])

    async def status_of_room(self, requester: Requester, room_id: str) -> dict[str, Any]:
        rows = await self._store.deletions_of_room(room_id)
        if not requester.is_admin:
            rows = [r for r in rows if r["params"].get("requester") == requester.user_id]
        if not rows:
            raise not_found("No deletion found for this room")
        return {"results": [_public(r) for r in rows]}

    async def status(self, requester: Requester, delete_id: str) -> dict[str, Any]:
        row = await self._store.get_deletion(delete_id)
        if row is None or (not requester.is_admin and row["params"].get("requester") != requester.user_id):
            raise not_found("No deletion with this id")
        return _public(row)

    async def _run(
        self, delete_id: str, room_id: str, params: dict[str, Any], progress: dict[str, Any] | None,
    ) -> None:
        try:
            result = await self._shut_down(delete_id, room_id, params, progress)
            if params.get("block"):
                await self._admin_store.block_room(room_id, params.get("requester", ""), now_ms())
            if params.get("purge"):
                head = await self._events.room_head(room_id)
                still = head.joined_local(self.server_name) if head is not None else []
                if still and not params.get("force_purge"):
                    raise MatrixError(400, "M_UNKNOWN", f"local users still in the room: {', '.join(still)}")
                await self._store.set_deletion_status(delete_id, "purging", result)
                await self._writer.purge_room(room_id)
                result["purged"] = True
            await self._store.set_deletion_status(delete_id, "complete", result)
        except asyncio.CancelledError:
            raise  # resumed by the next process
        except Exception as e:
            log.exception("deleting %s failed", room_id)
            await self._store.set_deletion_status(delete_id, "failed", error=str(e))

    async def _creators(self, room_id: str) -> frozenset[str]:
        create = await self._events.current_state_event(room_id, ("m.room.create", ""))
        return creators_of(create.content, create.sender) if create is not None else frozenset()

    async def _shut_down(
        self, delete_id: str, room_id: str, params: dict[str, Any], progress: dict[str, Any] | None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": None,
            "purged": False,
        }
        head = await self._events.room_head(room_id)
        if head is None:
            return result  # unknown here, or already gone: nothing to shut down
        new_room = progress.get("new_room_id") if progress else None
        mover = params.get("new_room_user_id")
        if mover and new_room is None:
            new_room = await self._new_room(mover, params)
            result["new_room_id"] = new_room
            await self._store.set_deletion_status(delete_id, "shutting_down", result)
        result["new_room_id"] = new_room
        message = params.get("message")
        levels_event = await self._events.current_state_event(room_id, ("m.room.power_levels", ""))
        levels = dict(levels_event.content) if levels_event else {}
        local = [u for u, m in head.members.items() if m == "join" and ids.server_of(u) == self.server_name]
        creators = await self._creators(room_id)
        actor = max(local, key=lambda u: user_level(levels, u, creators)) if local else None
        if actor is not None:
            actor_req = _as(actor)
            if message:
                await self._try(self._rooms.send(actor_req, room_id, "m.room.message",
                                                 {"msgtype": "m.notice", "body": message}))
            await self._try(self._rooms.send(actor_req, room_id, "m.room.join_rules",
                                             {"join_rule": "invite"}, state_key=""))
            if ("m.room.canonical_alias", "") in head.state:
                await self._try(self._rooms.send(actor_req, room_id, "m.room.canonical_alias", {}, state_key=""))
        await self._room_store.set_public(room_id, False)
        for alias in await self._room_store.aliases_of_room(room_id):
            await self._room_store.delete_alias(alias)
            if new_room is not None:  # the old name now leads to where everyone went
                await self._room_store.create_alias(alias, new_room, mover)
            result["local_aliases"].append(alias)
        head = await self._events.room_head(room_id) or head
        for user_id, membership in sorted(head.members.items()):
            if membership not in ("join", "invite", "knock") or user_id == actor:
                continue
            try:
                if ids.server_of(user_id) == self.server_name:
                    await self._rooms.leave(_as(user_id), room_id, message)
                    if new_room is not None and membership == "join":
                        await self._move(mover, user_id, new_room)
                elif actor is not None:
                    await self._rooms.set_membership(_as(actor), room_id, user_id, "leave", message)
                else:
                    raise MatrixError(403, "M_FORBIDDEN", "No local member can remove this user")
                result["kicked_users"].append(user_id)
            except MatrixError as e:
                log.warning("deleting %s: could not remove %s: %s", room_id, user_id, e)
                result["failed_to_kick_users"].append(user_id)
        if actor is not None:
            await self._rooms.leave(_as(actor), room_id, message)
            if new_room is not None:
                await self._move(mover, actor, new_room)
            result["kicked_users"].append(actor)
        return result

    async def _new_room(self, creator: str, params: dict[str, Any]) -> str:
        """The room members are moved to: only its creator (and admins) may post there,
        and the message says why everyone is here."""
        room_id = await self._rooms.create_room(_as(creator), {
            "preset": "private_chat", "name": params.get("room_name") or DEFAULT_NEW_ROOM_NAME,
            "power_level_content_override": {"events_default": 50, "invite": 50},
        })
        if params.get("message"):
            await self._rooms.send(_as(creator), room_id, "m.room.message",
                                   {"msgtype": "m.notice", "body": params["message"]})
        return room_id

    async def _move(self, mover: str, user_id: str, new_room: str) -> None:
        """Invite (by the new room's creator) and join for the user; both idempotent."""
        if user_id != mover:
            await self._rooms.set_membership(_as(mover), new_room, user_id, "invite", None)
        await self._rooms.join(_as(user_id), new_room)

    @staticmethod
    async def _try(step: Any) -> None:
        try:
            await step
        except MatrixError as e:  # e.g. the actor may not change join rules: go on removing members
            log.warning("room deletion step refused: %s", e)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"delete_id": row["delete_id"], "room_id": row["room_id"], "status": row["status"]}
    if row["error"]:
        out["error"] = row["error"]
    out["shutdown_room"] = row["result"] or {
        "kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": None,
    }
    return out
