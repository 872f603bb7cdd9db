"""The assistant's calls to the homeserver: client-server API with the as_token (acting as
the assistant's own user, spec "Identity assertion") and Tricolor's record API."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp


class HomeserverError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"homeserver answered {status}: {body}")
        self.status = status
        self.body = body


def _q(value: str) -> str:
    return quote(value, safe="")


class Homeserver:
    def __init__(self, base_url: str, as_token: str, user_id: str, session: aiohttp.ClientSession) -> None:
        self._base = base_url.rstrip("/")
        self._token = as_token
        self.user_id = user_id
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=30)

    async def call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        async with self._session.request(
            method, self._base + path, json=body, params=params, timeout=self._timeout,
            headers={"Authorization": f"Bearer {self._token}"},
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise HomeserverError(resp.status, data)
            return data

    async def join(self, room_id: str) -> None:
        await self.call("POST", f"/_matrix/client/v3/join/{_q(room_id)}", {})

    async def state(self, room_id: str) -> list[dict[str, Any]]:
        return list(await self.call("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/state"))

    async def event(self, room_id: str, event_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/event/{_q(event_id)}"))

    async def before(self, room_id: str, event_id: str, limit: int) -> list[dict[str, Any]]:
        """Events just before one (oldest first): /context splits its limit around the event."""
        if limit <= 0:
            return []
        got = await self.call(
            "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/context/{_q(event_id)}", params={"limit": str(limit * 2)},
        )
        return list(reversed(got.get("events_before", [])))

    async def send(self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = "m.room.message") -> str:
        got = await self.call(
            "PUT", f"/_matrix/client/v3/rooms/{_q(room_id)}/send/{event_type}/{_q(txn_id)}", content,
        )
        return str(got["event_id"])

    async def put_state(self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]) -> None:
        await self.call("PUT", f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{event_type}/{_q(state_key)}", content)

    async def set_display_name(self, name: str) -> None:
        await self.call("PUT", f"/_matrix/client/v3/profile/{_q(self.user_id)}/displayname", {"displayname": name})

    # -- records (Tricolor API) ----------------------------------------------------------

    async def open_record(self, room_id: str, event_id: str, provider: str, request: Any) -> dict[str, Any]:
        return dict(await self.call("POST", f"/_tricolor/client/v1/rooms/{_q(room_id)}/ai/interactions", {
            "user_event_id": event_id, "provider": provider, "request": request,
        }))

    async def finish_record(self, room_id: str, record_id: int, **values: Any) -> None:
        await self.call("PUT", f"/_tricolor/client/v1/rooms/{_q(room_id)}/ai/interactions/{record_id}", values)

    async def pending_records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        before: str | None = None
        while True:
            params = {"limit": "100"} | ({"from": before} if before else {})
            page = await self.call("GET", "/_tricolor/client/v1/ai/interactions/pending", params=params)
            out += page["chunk"]
            before = page.get("next_batch")
            if not before:
                return out
