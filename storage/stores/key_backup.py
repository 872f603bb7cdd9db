"""Server-side key backup: backup versions and the encrypted room keys in them.

The session data is opaque (encrypted by the client); only the fields that decide
which copy of a session key to keep are columns.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.records import BackupVersion, RoomKey
from storage.schema import e2e_room_keys, e2e_room_keys_versions


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class KeyBackupStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_version(self, user_id: str, algorithm: str, auth_data: dict[str, Any]) -> int:
        v = e2e_room_keys_versions.c
        async with self._engine.begin() as conn:
            last = (await conn.execute(sa.select(sa.func.max(v.version)).where(v.user_id == user_id))).scalar()
            version = int(last or 0) + 1
            await conn.execute(e2e_room_keys_versions.insert().values(
                user_id=user_id, version=version, algorithm=algorithm, auth_data=_dump(auth_data),
                etag=0, deleted=False,
            ))
        return version

    async def get_version(self, user_id: str, version: int | None) -> BackupVersion | None:
        """The given undeleted version, or the current (newest undeleted) one."""
        v = e2e_room_keys_versions.c
        query = sa.select(e2e_room_keys_versions).where(v.user_id == user_id, v.deleted.is_(False))
        query = query.where(v.version == version) if version is not None else query.order_by(v.version.desc())
        async with self._engine.connect() as conn:
            row = (await conn.execute(query.limit(1))).first()
        if row is None:
            return None
        return BackupVersion(int(row.version), row.algorithm, json.loads(row.auth_data), int(row.etag))

    async def update_version(self, user_id: str, version: int, auth_data: dict[str, Any]) -> None:
        v = e2e_room_keys_versions.c
        async with self._engine.begin() as conn:
            await conn.execute(e2e_room_keys_versions.update().where(
                v.user_id == user_id, v.version == version).values(auth_data=_dump(auth_data)))

    async def delete_version(self, user_id: str, version: int) -> None:
        v, k = e2e_room_keys_versions.c, e2e_room_keys.c
        async with self._engine.begin() as conn:
            await conn.execute(e2e_room_keys_versions.update().where(
                v.user_id == user_id, v.version == version).values(deleted=True))
            await conn.execute(e2e_room_keys.delete().where(k.user_id == user_id, k.version == version))

    async def get_keys(
        self, user_id: str, version: int, room_id: str | None = None, session_id: str | None = None,
    ) -> list[RoomKey]:
        k = e2e_room_keys.c
        query = sa.select(e2e_room_keys).where(k.user_id == user_id, k.version == version)
        if room_id is not None:
            query = query.where(k.room_id == room_id)
        if session_id is not None:
            query = query.where(k.session_id == session_id)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return [
                RoomKey(r.room_id, r.session_id, int(r.first_message_index), int(r.forwarded_count),
                        bool(r.is_verified), json.loads(r.session_data))
                for r in rows
            ]

    async def put_keys(self, user_id: str, version: int, keys: list[RoomKey]) -> None:
        """Store these keys (already chosen over what is held) and move the version's etag."""
        k, v = e2e_room_keys.c, e2e_room_keys_versions.c
        async with self._engine.begin() as conn:
            for key in keys:
                await conn.execute(e2e_room_keys.delete().where(
                    k.user_id == user_id, k.version == version, k.room_id == key.room_id,
                    k.session_id == key.session_id,
                ))
                await conn.execute(e2e_room_keys.insert().values(
                    user_id=user_id, version=version, room_id=key.room_id, session_id=key.session_id,
                    first_message_index=key.first_message_index, forwarded_count=key.forwarded_count,
                    is_verified=key.is_verified, session_data=_dump(key.session_data),
                ))
            if keys:
                await conn.execute(e2e_room_keys_versions.update().where(
                    v.user_id == user_id, v.version == version).values(etag=v.etag + 1))

    async def delete_keys(
        self, user_id: str, version: int, room_id: str | None = None, session_id: str | None = None,
    ) -> None:
        k, v = e2e_room_keys.c, e2e_room_keys_versions.c
        where = [k.user_id == user_id, k.version == version]
        if room_id is not None:
            where.append(k.room_id == room_id)
        if session_id is not None:
            where.append(k.session_id == session_id)
        async with self._engine.begin() as conn:
            gone = await conn.execute(e2e_room_keys.delete().where(*where))
            if gone.rowcount:
                await conn.execute(e2e_room_keys_versions.update().where(
                    v.user_id == user_id, v.version == version).values(etag=v.etag + 1))

    async def count(self, user_id: str, version: int) -> int:
        k = e2e_room_keys.c
        async with self._engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(e2e_room_keys).where(
                k.user_id == user_id, k.version == version))).scalar() or 0)
