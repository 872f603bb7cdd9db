"""/sync long-poll: one of the transports of the sync engine (sync_engine.py).

An idle long-poll costs one future; a token that is already current skips
the database entirely until the notifier says something concerns the user.
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.services.auth import Requester
from homeserver.services.ephemeral import PresenceService
from homeserver.services.filtering import SyncFilter
from homeserver.services.notifier import SyncToken
from homeserver.services.sync_engine import SyncEngine, empty_response, has_data

__all__ = ["SyncService", "parse_since"]


def parse_since(since: str | None) -> SyncToken | None:
    if not since:
        return None
    try:
        return SyncToken.parse(since)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid since token") from None


class SyncService:
    def __init__(self, *, engine: SyncEngine, presence: PresenceService) -> None:
        self.engine = engine
        self._presence = presence
        self._notifier = engine.notifier

    async def sync(
        self,
        requester: Requester,
        since: str | None,
        timeout_ms: int,
        sync_filter: SyncFilter,
        full_state: bool = False,
        set_presence: str = "online",
    ) -> dict[str, Any]:
        if set_presence != "offline":
            await self._presence.touch(requester.user_id, set_presence)
        since_token = parse_since(since)
        if since_token is None or full_state or timeout_ms <= 0:
            return await self.engine.compute(requester, since_token, sync_filter, full_state)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        user = requester.user_id
        while True:
            waiter = self._notifier.register(user)
            try:
                current = self._notifier.current_token()
                if current.is_after(since_token):
                    resp = await self.engine.compute(
                        requester, since_token, sync_filter, False, current
                    )
                    if has_data(resp):
                        return resp
                    since_token = current
                remaining = deadline - loop.time()
                # Shutting down: an empty answer now lets the client resume from the same
                # token on the next server, instead of the poll holding the shutdown.
                if remaining <= 0 or self._notifier.closed:
                    return empty_response(since_token.encode())
                try:
                    await asyncio.wait_for(waiter, remaining)
                except TimeoutError:
                    return empty_response(self._notifier.current_token().encode())
            finally:
                self._notifier.unregister(user, waiter)
