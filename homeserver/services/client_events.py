"""Custom events reported by clients (POST /_tricolor/client/v1/events): stored with
the user, device and server time, listable by admins, and handed to listeners after
the row is committed (the same contract as the room writer's fan-out: once, after it
is durable; a listener that raises is logged and skipped).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from homeserver.core.errors import MatrixError, forbidden
from homeserver.core.paging import check_page, cursor_page
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from storage.stores.im import ImStore

log = logging.getLogger(__name__)


@attrs.frozen
class ClientEvent:
    id: int
    user_id: str
    device_id: str
    type: str
    content: dict[str, Any]
    client_ts: int | None
    received_ts: int


ClientEventListener = Callable[[ClientEvent], None]


class ClientEventService:
    def __init__(self, store: ImStore, listeners: Sequence[ClientEventListener] = ()) -> None:
        self._store = store
        self._listeners = list(listeners)

    async def report(self, requester: Requester, event_type: str, payload: str, client_ts: int | None) -> dict[str, Any]:
        if not event_type or len(event_type.encode()) > 255:
            raise MatrixError(400, "M_INVALID_PARAM", "type is 1 to 255 bytes")
        now = now_ms()
        event_id = await self._store.add_client_event(
            requester.user_id, requester.device_id, event_type, payload, client_ts, now,
        )
        event = ClientEvent(event_id, requester.user_id, requester.device_id, event_type,
                            json.loads(payload), client_ts, now)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("client event listener %r failed", listener)
        return {"id": event_id, "received_ts": now}

    async def list(
        self, requester: Requester, *, after: int, limit: int, user_id: str | None, event_type: str | None,
        since_ts: int | None, until_ts: int | None,
    ) -> dict[str, Any]:
        if not requester.is_admin:
            raise forbidden("You are not a server admin")
        limit = check_page(after, limit)
        rows = await self._store.list_client_events(
            after=after, limit=limit, user_id=user_id, event_type=event_type, since_ts=since_ts, until_ts=until_ts,
        )
        return cursor_page("events", rows, limit=limit)
