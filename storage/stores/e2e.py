"""End-to-end encryption keys, the to-device inbox and the device-list change stream.

Key JSON is stored as uploaded (signed by the client); the server never looks inside
beyond what routing needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.records import OneTimeKey
from storage.schema import (
    device_inbox,
    device_list_changes,
    e2e_cross_signing_keys,
    e2e_device_keys,
    e2e_fallback_keys,
    e2e_one_time_keys,
    e2e_user_signatures,
)


@attrs.frozen
class ToDevice:
    stream_id: int
    message: dict[str, Any]


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class E2eStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def max_stream_ids(self) -> tuple[int, int]:
        """The newest to-device and device-list stream ids."""
        async with self._engine.connect() as conn:
            inbox = (await conn.execute(sa.select(sa.func.max(device_inbox.c.stream_id)))).scalar()
            lists = (await conn.execute(sa.select(sa.func.max(device_list_changes.c.stream_id)))).scalar()
        return int(inbox or 0), int(lists or 0)

    # -- device keys -------------------------------------------------------------

    async def get_device_keys(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            raw = (await conn.execute(sa.select(e2e_device_keys.c.json).where(
                e2e_device_keys.c.user_id == user_id, e2e_device_keys.c.device_id == device_id,
            ))).scalar()
        return None if raw is None else json.loads(raw)

    async def device_keys_for(self, user_ids: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """user -> device -> keys, for users that have uploaded any."""
        wanted = list(set(user_ids))
        out: dict[str, dict[str, dict[str, Any]]] = {}
        if not wanted:
            return out
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(e2e_device_keys).where(e2e_device_keys.c.user_id.in_(wanted)))
            for r in rows:
                out.setdefault(r.user_id, {})[r.device_id] = json.loads(r.json)
        return out

    async def set_device_keys(self, user_id: str, device_id: str, keys: dict[str, Any], stream_id: int) -> None:
        """Store (or replace) a device's keys and record the change on the device-list stream."""
        async with self._engine.begin() as conn:
            await conn.execute(e2e_device_keys.delete().where(
                e2e_device_keys.c.user_id == user_id, e2e_device_keys.c.device_id == device_id,
            ))
            await conn.execute(e2e_device_keys.insert().values(
                user_id=user_id, device_id=device_id, json=_dump(keys),
            ))
            await conn.execute(device_list_changes.insert().values(stream_id=stream_id, user_id=user_id))

    async def delete_device(self, user_id: str, device_id: str, stream_id: int) -> None:
        """A device went away: its keys and queued messages with it."""
        async with self._engine.begin() as conn:
            for table in (e2e_device_keys, e2e_one_time_keys, e2e_fallback_keys, device_inbox):
                await conn.execute(table.delete().where(table.c.user_id == user_id, table.c.device_id == device_id))
            await conn.execute(device_list_changes.insert().values(stream_id=stream_id, user_id=user_id))

    # -- one-time and fallback keys ---------------------------------------------

    async def add_one_time_keys(self, user_id: str, device_id: str, keys: Sequence[OneTimeKey]) -> None:
        """Add keys; one already held under the same id is kept (uploads are retried)."""
        if not keys:
            return
        async with self._engine.begin() as conn:
            held = {
                (r.algorithm, r.key_id) for r in await conn.execute(
                    sa.select(e2e_one_time_keys.c.algorithm, e2e_one_time_keys.c.key_id).where(
                        e2e_one_time_keys.c.user_id == user_id, e2e_one_time_keys.c.device_id == device_id,
                    ))
            }
            new = [
                {"user_id": user_id, "device_id": device_id, "algorithm": k.algorithm,
                 "key_id": k.key_id, "json": _dump(k.key)}
                for k in keys if (k.algorithm, k.key_id) not in held
            ]
            if new:
                await conn.execute(e2e_one_time_keys.insert(), new)

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(e2e_one_time_keys.c.algorithm, sa.func.count()).where(
                    e2e_one_time_keys.c.user_id == user_id, e2e_one_time_keys.c.device_id == device_id,
                ).group_by(e2e_one_time_keys.c.algorithm))
            return {r[0]: int(r[1]) for r in rows}

    async def set_fallback_keys(self, user_id: str, device_id: str, keys: Sequence[OneTimeKey]) -> None:
        """Replace the fallback key of each algorithm given (spec: a new upload replaces)."""
        async with self._engine.begin() as conn:
            for k in keys:
                where = (
                    e2e_fallback_keys.c.user_id == user_id, e2e_fallback_keys.c.device_id == device_id,
                    e2e_fallback_keys.c.algorithm == k.algorithm,
                )
                old = (await conn.execute(sa.select(e2e_fallback_keys.c.key_id).where(*where))).scalar()
                if old == k.key_id:
                    continue  # the same key again: keep its `used` mark
                await conn.execute(e2e_fallback_keys.delete().where(*where))
                await conn.execute(e2e_fallback_keys.insert().values(
                    user_id=user_id, device_id=device_id, algorithm=k.algorithm, key_id=k.key_id,
                    json=_dump(k.key), used=False,
                ))

    async def unused_fallback_algorithms(self, user_id: str, device_id: str) -> list[str]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(e2e_fallback_keys.c.algorithm).where(
                e2e_fallback_keys.c.user_id == user_id, e2e_fallback_keys.c.device_id == device_id,
                e2e_fallback_keys.c.used.is_(False),
            ))
            return sorted(r[0] for r in rows)

    async def claim(self, user_id: str, device_id: str, algorithm: str) -> OneTimeKey | None:
        """Take one one-time key of `algorithm`, or else the fallback key.

        The DELETE decides who gets a key: two claimers may read the same row, but
        only one deletes it; the other tries the next one.
        """
        otk = e2e_one_time_keys.c
        while True:
            async with self._engine.begin() as conn:
                row = (await conn.execute(sa.select(otk.key_id, otk.json).where(
                    otk.user_id == user_id, otk.device_id == device_id, otk.algorithm == algorithm,
                ).order_by(otk.key_id).limit(1))).first()
                if row is None:
                    break
                gone = await conn.execute(e2e_one_time_keys.delete().where(
                    otk.user_id == user_id, otk.device_id == device_id, otk.algorithm == algorithm,
                    otk.key_id == row.key_id,
                ))
                if gone.rowcount == 1:
                    return OneTimeKey(algorithm, row.key_id, json.loads(row.json))
        fb = e2e_fallback_keys.c
        async with self._engine.begin() as conn:
            where = (fb.user_id == user_id, fb.device_id == device_id, fb.algorithm == algorithm)
            row = (await conn.execute(sa.select(fb.key_id, fb.json).where(*where))).first()
            if row is None:
                return None
            await conn.execute(e2e_fallback_keys.update().where(*where).values(used=True))
            return OneTimeKey(algorithm, row.key_id, json.loads(row.json))

    # -- cross-signing -----------------------------------------------------------

    async def cross_signing_keys_for(self, user_ids: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """user -> key type (master, self_signing, user_signing) -> key."""
        wanted = list(set(user_ids))
        out: dict[str, dict[str, dict[str, Any]]] = {}
        if not wanted:
            return out
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(e2e_cross_signing_keys).where(
                e2e_cross_signing_keys.c.user_id.in_(wanted)))
            for r in rows:
                out.setdefault(r.user_id, {})[r.key_type] = json.loads(r.json)
        return out

    async def set_cross_signing_keys(self, user_id: str, keys: dict[str, dict[str, Any]], stream_id: int) -> None:
        async with self._engine.begin() as conn:
            for key_type, key in keys.items():
                await conn.execute(e2e_cross_signing_keys.delete().where(
                    e2e_cross_signing_keys.c.user_id == user_id, e2e_cross_signing_keys.c.key_type == key_type,
                ))
                await conn.execute(e2e_cross_signing_keys.insert().values(
                    user_id=user_id, key_type=key_type, json=_dump(key),
                ))
            await conn.execute(device_list_changes.insert().values(stream_id=stream_id, user_id=user_id))

    async def replace_cross_signing_key(self, user_id: str, key_type: str, key: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(e2e_cross_signing_keys.update().where(
                e2e_cross_signing_keys.c.user_id == user_id, e2e_cross_signing_keys.c.key_type == key_type,
            ).values(json=_dump(key)))

    async def replace_device_keys(self, user_id: str, device_id: str, keys: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(e2e_device_keys.update().where(
                e2e_device_keys.c.user_id == user_id, e2e_device_keys.c.device_id == device_id,
            ).values(json=_dump(keys)))

    async def add_user_signature(
        self, signer: str, target_user_id: str, target_key_id: str, signing_key_id: str, signature: str,
    ) -> None:
        """A signature by `signer`'s user-signing key of another user's master key (the same
        one again replaces it)."""
        key = {
            "signer": signer, "target_user_id": target_user_id, "target_key_id": target_key_id,
            "signing_key_id": signing_key_id,
        }
        async with self._engine.begin() as conn:
            await conn.execute(e2e_user_signatures.delete().where(
                *(e2e_user_signatures.c[k] == v for k, v in key.items())))
            await conn.execute(e2e_user_signatures.insert().values(**key, signature=signature))

    async def user_signatures(
        self, signer: str, target_user_ids: Iterable[str],
    ) -> dict[str, dict[str, dict[str, str]]]:
        """target user -> their master key id -> signing key id -> signature, by `signer`."""
        wanted = sorted(set(target_user_ids))
        out: dict[str, dict[str, dict[str, str]]] = {}
        if not wanted:
            return out
        async with self._engine.connect() as conn:
            for r in await conn.execute(sa.select(e2e_user_signatures).where(
                e2e_user_signatures.c.signer == signer, e2e_user_signatures.c.target_user_id.in_(wanted),
            )):
                out.setdefault(r.target_user_id, {}).setdefault(r.target_key_id, {})[r.signing_key_id] = r.signature
        return out

    async def mark_changed(self, user_id: str, stream_id: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(device_list_changes.insert().values(stream_id=stream_id, user_id=user_id))

    # -- streams -----------------------------------------------------------------

    async def last_change(self, user_id: str) -> int | None:
        """The user's newest position on the device-list stream (None: never changed)."""
        async with self._engine.connect() as conn:
            got = (await conn.execute(sa.select(sa.func.max(device_list_changes.c.stream_id)).where(
                device_list_changes.c.user_id == user_id))).scalar()
        return None if got is None else int(got)

    async def users_changed(self, after: int, upto: int) -> set[str]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(device_list_changes.c.user_id).where(
                device_list_changes.c.stream_id > after, device_list_changes.c.stream_id <= upto,
            ).distinct())
            return {r[0] for r in rows}

    async def queue_to_device(self, rows: Sequence[tuple[int, str, str, dict[str, Any]]]) -> None:
        """(stream id, user, device, message) rows, all or none."""
        if not rows:
            return
        async with self._engine.begin() as conn:
            await conn.execute(device_inbox.insert(), [
                {"stream_id": s, "user_id": u, "device_id": d, "json": _dump(m)} for s, u, d, m in rows
            ])

    async def to_device(
        self, user_id: str, device_id: str, acked: int, upto: int, limit: int, after: int | None = None,
    ) -> list[ToDevice]:
        """Delete what the device acknowledged (up to `acked`), then return what follows
        `after` (default `acked`: a transport that sends ahead of acks gives both)."""
        after = acked if after is None else max(after, acked)
        c = device_inbox.c
        async with self._engine.begin() as conn:
            if acked > 0:
                await conn.execute(device_inbox.delete().where(
                    c.user_id == user_id, c.device_id == device_id, c.stream_id <= acked,
                ))
            rows = await conn.execute(sa.select(c.stream_id, c.json).where(
                c.user_id == user_id, c.device_id == device_id, c.stream_id > after, c.stream_id <= upto,
            ).order_by(c.stream_id).limit(limit))
            return [ToDevice(r.stream_id, json.loads(r.json)) for r in rows]
