"""Remote servers' signing keys and their last signed key responses (for the notary API)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.canonical_json import encode_json
from homeserver.core.records import ServerKey
from homeserver.core.signing import decode_base64, encode_base64
from storage.schema import server_key_responses, server_keys


def _row(key: ServerKey) -> dict[str, Any]:
    return {**attrs.asdict(key), "verify_key": encode_base64(key.verify_key)}


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def store_keys(self, keys: Iterable[ServerKey]) -> None:
        """Insert or replace each (server_name, key_id)."""
        rows = [_row(k) for k in keys]
        if not rows:
            return
        async with self._engine.begin() as conn:
            # delete + insert: one portable upsert for SQLite and MariaDB.
            for r in rows:
                await conn.execute(server_keys.delete().where(
                    server_keys.c.server_name == r["server_name"], server_keys.c.key_id == r["key_id"],
                ))
            await conn.execute(server_keys.insert(), rows)

    async def get_keys(self, server_name: str) -> dict[str, ServerKey]:
        """All keys we hold for a server, by key id."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(server_keys).where(server_keys.c.server_name == server_name))
            out = {}
            for r in rows:
                m = dict(r._mapping)
                m["verify_key"] = decode_base64(m["verify_key"])
                out[m["key_id"]] = ServerKey(**m)
            return out

    async def store_key_response(
        self, server_name: str, response: Mapping[str, Any], valid_until_ts: int,
    ) -> None:
        """Keep the latest signed ``/_matrix/key/v2/server`` body exactly as the server signed it."""
        row = {"server_name": server_name, "json": encode_json(response), "valid_until_ts": valid_until_ts}
        async with self._engine.begin() as conn:
            await conn.execute(server_key_responses.delete().where(
                server_key_responses.c.server_name == server_name
            ))
            await conn.execute(server_key_responses.insert().values(row))

    async def get_key_response(self, server_name: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            raw = (await conn.execute(
                sa.select(server_key_responses.c.json).where(server_key_responses.c.server_name == server_name)
            )).scalar()
        return None if raw is None else json.loads(raw)
