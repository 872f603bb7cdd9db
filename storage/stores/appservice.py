"""Application services: the per-service transaction queue and published room lists."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.events import StoredEvent
from storage.schema import appservice_room_list, appservice_state, appservice_txns, events
from storage.stores.events import _select_events, _stored


class AppServiceStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def state(self, as_id: str) -> tuple[int, int] | None:
        """(stream position, last txn id), or None for a service never seen before."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(appservice_state.c.stream_position, appservice_state.c.last_txn_id)
                .where(appservice_state.c.as_id == as_id)
            )).first()
        return None if row is None else (int(row[0]), int(row[1]))

    async def init_state(self, as_id: str, position: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(appservice_state.insert().values(as_id=as_id, stream_position=position, last_txn_id=0))

    async def pending_txns(self, as_id: str) -> list[tuple[int, str]]:
        """Transactions built but not acknowledged, oldest first: (txn id, JSON body)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(appservice_txns.c.txn_id, appservice_txns.c.body)
                .where(appservice_txns.c.as_id == as_id).order_by(appservice_txns.c.txn_id)
            )
            return [(int(r[0]), r[1]) for r in rows]

    async def add_txn(self, as_id: str, txn_id: int, body: str, position: int) -> None:
        """The transaction and the position it covers, together: after a crash the events
        are either in a stored transaction or after the position, never lost nor doubled."""
        async with self._engine.begin() as conn:
            await conn.execute(appservice_txns.insert().values(as_id=as_id, txn_id=txn_id, body=body))
            await conn.execute(
                appservice_state.update().where(appservice_state.c.as_id == as_id)
                .values(stream_position=position, last_txn_id=txn_id)
            )

    async def set_position(self, as_id: str, position: int) -> None:
        """Events up to here interested the service in nothing (no transaction needed)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                appservice_state.update().where(
                    appservice_state.c.as_id == as_id, appservice_state.c.stream_position < position,
                ).values(stream_position=position)
            )

    async def delete_txn(self, as_id: str, txn_id: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(appservice_txns.delete().where(
                appservice_txns.c.as_id == as_id, appservice_txns.c.txn_id == txn_id,
            ))

    async def events_after(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        """Timeline events after a position (catch-up after a restart), oldest first."""
        q = (
            _select_events()
            .where(events.c.stream_ordering > after, events.c.stream_ordering <= upto)
            .where(events.c.outlier.is_(False), events.c.soft_failed.is_(False))
            .order_by(events.c.stream_ordering).limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_stored(r) for r in await conn.execute(q)]

    # -- published room lists ------------------------------------------------------------

    async def set_listed(self, as_id: str, network_id: str, room_id: str, listed: bool) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(appservice_room_list.delete().where(
                appservice_room_list.c.as_id == as_id, appservice_room_list.c.network_id == network_id,
                appservice_room_list.c.room_id == room_id,
            ))
            if listed:
                await conn.execute(appservice_room_list.insert().values(
                    as_id=as_id, network_id=network_id, room_id=room_id,
                ))

    async def listed_rooms(self, network_id: str | None) -> list[str]:
        """Rooms in one network's directory (None: every network's)."""
        q = sa.select(appservice_room_list.c.room_id).distinct()
        if network_id is not None:
            q = q.where(appservice_room_list.c.network_id == network_id)
        async with self._engine.connect() as conn:
            return [r[0] for r in await conn.execute(q)]
