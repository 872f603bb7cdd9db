"""Server-side key backup (spec: client-server API, "Server-side key backups"): the
client's encrypted room keys, kept per backup version; the server never decrypts them."""

from __future__ import annotations

from typing import Any

from homeserver.core import e2e_keys
from homeserver.core.errors import MatrixError, bad_json
from homeserver.core.records import BackupVersion, RoomKey
from storage.stores.key_backup import KeyBackupStore


def _no_backup(msg: str = "Unknown backup version") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", msg)


def _parse_version(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return -1  # never a version: answered as unknown


class KeyBackupService:
    def __init__(self, store: KeyBackupStore) -> None:
        self._store = store

    # -- versions ----------------------------------------------------------------

    async def create_version(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
        if not isinstance(algorithm, str) or not isinstance(auth_data, dict):
            raise bad_json("algorithm (string) and auth_data (object) are required")
        return {"version": str(await self._store.create_version(user_id, algorithm, auth_data))}

    async def get_version(self, user_id: str, version: str | None) -> dict[str, Any]:
        held = await self._version(user_id, version)
        return {
            "algorithm": held.algorithm, "auth_data": held.auth_data, "version": str(held.version),
            "etag": str(held.etag), "count": await self._store.count(user_id, held.version),
        }

    async def update_version(self, user_id: str, version: str, body: dict[str, Any]) -> None:
        held = await self._version(user_id, version)
        algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
        if not isinstance(algorithm, str) or not isinstance(auth_data, dict):
            raise bad_json("algorithm (string) and auth_data (object) are required")
        if algorithm != held.algorithm:
            raise MatrixError(400, "M_INVALID_PARAM", "The algorithm of a backup cannot change")
        if "version" in body and body["version"] != version:
            raise MatrixError(400, "M_INVALID_PARAM", "version does not match the path")
        await self._store.update_version(user_id, held.version, auth_data)

    async def delete_version(self, user_id: str, version: str) -> None:
        held = await self._version(user_id, version)
        await self._store.delete_version(user_id, held.version)

    async def _version(self, user_id: str, version: str | None) -> BackupVersion:
        held = await self._store.get_version(user_id, _parse_version(version))
        if held is None:
            raise _no_backup("No current backup version" if version is None else "Unknown backup version")
        return held

    # -- keys --------------------------------------------------------------------

    async def put_keys(
        self, user_id: str, version: str | None, body: dict[str, Any], room_id: str | None,
        session_id: str | None,
    ) -> dict[str, Any]:
        """Upload keys to the current version only (else M_WRONG_ROOM_KEYS_VERSION); each
        replaces the held copy only if it is better (core.e2e_keys.better_backup_key)."""
        target = await self._writable(user_id, version)
        uploaded = _uploaded_keys(body, room_id, session_id)
        held = {
            (k.room_id, k.session_id): k.to_json()
            for k in await self._store.get_keys(user_id, target.version, room_id, session_id)
        }
        chosen = [
            RoomKey(r, s, k["first_message_index"], k["forwarded_count"], k["is_verified"], k["session_data"])
            for (r, s), k in uploaded.items() if e2e_keys.better_backup_key(k, held.get((r, s)))
        ]
        await self._store.put_keys(user_id, target.version, chosen)
        return await self._etag_count(user_id, target.version)

    async def get_keys(
        self, user_id: str, version: str | None, room_id: str | None, session_id: str | None,
    ) -> dict[str, Any]:
        if version is None:
            raise MatrixError(400, "M_MISSING_PARAM", "version is required")
        held = await self._version(user_id, version)
        keys = await self._store.get_keys(user_id, held.version, room_id, session_id)
        if session_id is not None:
            if not keys:
                raise _no_backup("No such key in the backup")
            return keys[0].to_json()
        sessions_by_room: dict[str, dict[str, Any]] = {}
        for k in keys:
            sessions_by_room.setdefault(k.room_id, {})[k.session_id] = k.to_json()
        if room_id is not None:
            return {"sessions": sessions_by_room.get(room_id, {})}
        return {"rooms": {r: {"sessions": s} for r, s in sessions_by_room.items()}}

    async def delete_keys(
        self, user_id: str, version: str | None, room_id: str | None, session_id: str | None,
    ) -> dict[str, Any]:
        if version is None:
            raise MatrixError(400, "M_MISSING_PARAM", "version is required")
        held = await self._version(user_id, version)
        await self._store.delete_keys(user_id, held.version, room_id, session_id)
        return await self._etag_count(user_id, held.version)

    async def _writable(self, user_id: str, version: str | None) -> BackupVersion:
        if version is None:
            raise MatrixError(400, "M_MISSING_PARAM", "version is required")
        current = await self._store.get_version(user_id, None)
        if current is None or str(current.version) != version:
            # Spec: uploads go to the current version only, and say which one that is.
            extra = {"current_version": str(current.version)} if current is not None else {}
            if current is None:
                raise _no_backup()
            raise MatrixError(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version", **extra)
        return current

    async def _etag_count(self, user_id: str, version: int) -> dict[str, Any]:
        held = await self._store.get_version(user_id, version)
        return {"etag": str(held.etag if held else 0), "count": await self._store.count(user_id, version)}


def _uploaded_keys(
    body: dict[str, Any], room_id: str | None, session_id: str | None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """The body of any of the three PUT forms as (room, session) -> key."""
    if room_id is not None and session_id is not None:
        return {(room_id, session_id): e2e_keys.check_backup_key(body)}
    rooms = {room_id: body} if room_id is not None else body.get("rooms")
    if not isinstance(rooms, dict):
        raise bad_json("rooms must be an object")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r, room in rooms.items():
        sessions = room.get("sessions") if isinstance(room, dict) else None
        if not isinstance(sessions, dict):
            raise bad_json("each room needs a sessions object")
        for s, key in sessions.items():
            out[(r, s)] = e2e_keys.check_backup_key(key)
    return out
