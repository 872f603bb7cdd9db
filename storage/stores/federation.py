"""Inbound transaction de-duplication (HTTP retries and AMQP redeliveries)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import federation_inbound_txns


class InboundTxnStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get_response(self, origin: str, txn_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            raw = (await conn.execute(sa.select(federation_inbound_txns.c.response_json).where(
                federation_inbound_txns.c.origin == origin, federation_inbound_txns.c.txn_id == txn_id,
            ))).scalar()
        return json.loads(raw) if raw is not None else None

    async def put_response(self, origin: str, txn_id: str, response: dict[str, Any], now_ms: int) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(federation_inbound_txns.insert().values(
                    origin=origin, txn_id=txn_id, response_json=json.dumps(response), received_ts=now_ms,
                ))
        except IntegrityError:
            pass  # a concurrent duplicate already recorded the same outcome
