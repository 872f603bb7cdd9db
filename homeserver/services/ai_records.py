"""AI interaction records (Tricolor extension): written by the AI assistant application
service through its as_token, listed by a room's DOCTORs and admins and by server admins."""

from __future__ import annotations

import json
from typing import Any

from homeserver.core.ai_roles import DOCTOR, ROLE_EVENT, role_of, role_state_key
from homeserver.core.auth_helpers import (
    POWER_LEVELS_KEY,
    required_power_level,
    room_creator,
    user_power_level,
)
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.services.appservice import AppServiceRegistry
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.reader import EventReader
from storage.stores.ai_records import AiRecordStore

STATUSES = ("pending", "success", "failed")
MAX_PAGE = 100


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("request", "response"):
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except ValueError:
                pass
    return out


class AiRecordService:
    def __init__(self, *, store: AiRecordStore, events: EventReader, appservices: AppServiceRegistry) -> None:
        self._store = store
        self._events = events
        self._appservices = appservices

    def _service(self, requester: Requester) -> None:
        if self._appservices.service_of(requester) is None:
            raise forbidden("Only an application service writes AI interaction records")

    async def _in_room(self, requester: Requester, room_id: str) -> None:
        head = await self._events.room_head(room_id)
        if head is None or head.members.get(requester.user_id) != "join":
            raise forbidden("The assistant is not in this room")

    async def open(
        self, requester: Requester, room_id: str, user_event_id: str, provider: str, request: Any,
    ) -> dict[str, Any]:
        """The record of one message (created pending the first time): ``created`` says
        whether this call made it, so a redelivered message is not answered twice."""
        self._service(requester)
        await self._in_room(requester, room_id)
        stored = await self._events.get_event(user_event_id)
        if stored is None or stored.event.room_id != room_id:
            raise not_found("Unknown message")
        event = stored.event
        row, created = await self._store.create(
            room_id=room_id, user_id=event.sender, user_event_id=user_event_id, provider=provider,
            request=json.dumps(request), now=now_ms(),
        )
        return {**_public(row), "created": created}

    async def finish(
        self, requester: Requester, room_id: str, record_id: int, *, status: str, response: Any,
        reply_event_id: str | None, duration_ms: int | None, error: str | None,
    ) -> dict[str, Any]:
        self._service(requester)
        if status not in STATUSES:
            raise MatrixError(400, "M_INVALID_PARAM", f"status must be one of {', '.join(STATUSES)}")
        row = await self._store.get(record_id)
        if row is None or row["room_id"] != room_id:
            raise not_found("Unknown record")
        await self._in_room(requester, room_id)
        await self._store.update(record_id, {
            "status": status, "response": None if response is None else json.dumps(response),
            "reply_event_id": reply_event_id, "duration_ms": duration_ms, "error": error,
            "updated_ts": now_ms(),
        })
        updated = await self._store.get(record_id)
        assert updated is not None
        return _public(updated)

    async def list_room(
        self, requester: Requester, room_id: str, before: int | None, limit: int,
    ) -> dict[str, Any]:
        """DOCTORs of the room and its admins (who may set roles) only."""
        head = await self._events.room_head(room_id)
        if head is None or head.members.get(requester.user_id) != "join":
            raise forbidden("You are not in this room")
        keys = [k for k in head.state if k == (ROLE_EVENT, role_state_key(requester.user_id))]
        keys += [k for k in (POWER_LEVELS_KEY, ("m.room.create", "")) if k in head.state]
        state = await self._events.state_events({k: head.state[k] for k in keys})
        own = state.get((ROLE_EVENT, role_state_key(requester.user_id)))
        roles = {requester.user_id: own.content} if own is not None else {}
        creator = room_creator(state, head.room_version)
        is_doctor = role_of(requester.user_id, roles, creator) == DOCTOR
        is_admin = user_power_level(state, requester.user_id, head.room_version) >= required_power_level(
            state, ROLE_EVENT, True,
        )
        if not (is_doctor or is_admin):
            raise forbidden("Only the room's doctors and admins can read AI interaction records")
        return await self._page(room_id, None, before, limit)

    async def list_all(
        self, requester: Requester, room_id: str | None, status: str | None, before: int | None, limit: int,
    ) -> dict[str, Any]:
        if not requester.is_admin:
            raise forbidden("Server admins only")
        if status is not None and status not in STATUSES:
            raise MatrixError(400, "M_INVALID_PARAM", f"status must be one of {', '.join(STATUSES)}")
        return await self._page(room_id, status, before, limit)

    async def pending(self, requester: Requester, before: int | None, limit: int) -> dict[str, Any]:
        """What the assistant left unanswered (it resumes these after a restart)."""
        self._service(requester)
        return await self._page(None, "pending", before, limit)

    async def _page(self, room_id: str | None, status: str | None, before: int | None, limit: int) -> dict[str, Any]:
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self._store.page(room_id=room_id, status=status, before=before, limit=limit)
        out: dict[str, Any] = {"chunk": [_public(r) for r in rows]}
        if len(rows) == limit:
            out["next_batch"] = str(rows[-1]["id"])
        return out
