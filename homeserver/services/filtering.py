"""Sync filters (the subset clients rely on): timeline limit, types, senders, rooms."""

from __future__ import annotations

import fnmatch
from typing import Any

import attrs

from homeserver.core.errors import MatrixError
from homeserver.core.events import Event


def _str_list(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MatrixError(400, "M_BAD_JSON", f"{name} must be a list of strings")
    return tuple(value)


def _type_match(event_type: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


@attrs.frozen
class EventFilter:
    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    lazy_load_members: bool = False
    # Spec "Receiving notifications": per-thread unread counts in /sync when asked for.
    unread_thread_notifications: bool = False

    @classmethod
    def parse(cls, body: Any, name: str = "filter") -> EventFilter:
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise MatrixError(400, "M_BAD_JSON", f"{name} must be an object")
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise MatrixError(400, "M_BAD_JSON", f"{name}.limit must be a non-negative integer")
        return cls(
            limit=limit,
            types=_str_list(body.get("types"), f"{name}.types"),
            not_types=_str_list(body.get("not_types"), f"{name}.not_types") or (),
            senders=_str_list(body.get("senders"), f"{name}.senders"),
            not_senders=_str_list(body.get("not_senders"), f"{name}.not_senders") or (),
            lazy_load_members=bool(body.get("lazy_load_members", False)),
            unread_thread_notifications=body.get("unread_thread_notifications") is True,
        )

    def matches(self, event: Event) -> bool:
        if self.types is not None and not _type_match(event.type, self.types):
            return False
        if self.not_types and _type_match(event.type, self.not_types):
            return False
        if self.senders is not None and event.sender not in self.senders:
            return False
        return event.sender not in self.not_senders


@attrs.frozen
class SyncFilter:
    timeline: EventFilter = EventFilter()
    state: EventFilter = EventFilter()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False

    @classmethod
    def parse(cls, body: Any) -> SyncFilter:
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise MatrixError(400, "M_BAD_JSON", "filter must be an object")
        room = body.get("room") or {}
        if not isinstance(room, dict):
            raise MatrixError(400, "M_BAD_JSON", "filter.room must be an object")
        return cls(
            timeline=EventFilter.parse(room.get("timeline"), "room.timeline"),
            state=EventFilter.parse(room.get("state"), "room.state"),
            rooms=_str_list(room.get("rooms"), "room.rooms"),
            not_rooms=_str_list(room.get("not_rooms"), "room.not_rooms") or (),
            include_leave=bool(room.get("include_leave", False)),
        )

    def room_allowed(self, room_id: str) -> bool:
        if self.rooms is not None and room_id not in self.rooms:
            return False
        return room_id not in self.not_rooms
