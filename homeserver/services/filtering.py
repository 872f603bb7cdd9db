"""Sync and room event filters (spec: "Filtering", "POST /_matrix/client/v3/user/{userId}/filter").

Pure: parsing a filter body (a wrong type is 400 M_BAD_JSON) and deciding what an event,
an account data entry or a presence update passes. ``trim_response`` applies the parts that
act on a finished /sync response (account data, presence, ephemeral, event_fields), so
the sync service calls it once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import attrs

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.core.events import Event


def _bad(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


def _str_list(value: Any, name: str, sigil: str = "") -> tuple[str, ...] | None:
    """A list of strings; with ``sigil``, of ids of that kind (spec "Filtering": `rooms` are
    room ids, `senders` user ids), so a filter that could never match is refused."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{name} must be a list of strings")
    # v12 room ids name no server (ids.is_room_id); user ids always do.
    if sigil and not all(ids.is_room_id(v) if sigil == "!" else (v.startswith(sigil) and ":" in v) for v in value):
        raise _bad(f"{name} must be a list of {'room' if sigil == '!' else 'user'} ids")
    return tuple(value)


def _opt_bool(body: dict[str, Any], key: str, name: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"{name}.{key} must be a boolean")
    return value


_V = TypeVar("_V")


def lazy_members(state: Mapping[tuple[str, str], _V], senders: Iterable[str]) -> dict[tuple[str, str], _V]:
    """Spec "Lazy-loading room members": drop the member events of everyone but `senders`;
    other state is kept. Shared by /sync, /context and /messages."""
    wanted = set(senders)
    return {k: v for k, v in state.items() if k[0] != "m.room.member" or k[1] in wanted}


def glob_match(value: str, patterns: Iterable[str]) -> bool:
    """Spec: in `types`/`not_types` "a '*' can be used as a wildcard to match any sequence
    of characters" (and nothing else is special, unlike fnmatch's ? and [...])."""
    for p in patterns:
        if "*" not in p:
            if value == p:
                return True
        elif re.fullmatch(".*".join(re.escape(part) for part in p.split("*")), value, re.DOTALL):
            return True
    return False


@attrs.frozen
class EventFilter:
    """A "Filter" or "RoomEventFilter": what one section of a response keeps."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    # True: only events whose content has a `url`; False: only those without; None: both.
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    # Spec "Receiving notifications": per-thread unread counts in /sync when asked for.
    unread_thread_notifications: bool = False
    # Spec "Ignoring Users": their events are not sent, "with the exception of state events".
    ignored: frozenset[str] = frozenset()

    @classmethod
    def from_query(cls, text: str | None) -> EventFilter:
        """The `filter` query parameter of /messages and /context: a RoomEventFilter as JSON."""
        if not text:
            return cls()
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise MatrixError(400, "M_BAD_JSON", "filter is not valid JSON") from None
        return cls.parse(body)

    @classmethod
    def parse(cls, body: Any, name: str = "filter") -> EventFilter:
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise _bad(f"{name} must be an object")
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise _bad(f"{name}.limit must be a non-negative integer")
        return cls(
            limit=limit,
            types=_str_list(body.get("types"), f"{name}.types"),
            not_types=_str_list(body.get("not_types"), f"{name}.not_types") or (),
            senders=_str_list(body.get("senders"), f"{name}.senders", "@"),
            not_senders=_str_list(body.get("not_senders"), f"{name}.not_senders", "@") or (),
            rooms=_str_list(body.get("rooms"), f"{name}.rooms", "!"),
            not_rooms=_str_list(body.get("not_rooms"), f"{name}.not_rooms", "!") or (),
            contains_url=_opt_bool(body, "contains_url", name),
            lazy_load_members=bool(_opt_bool(body, "lazy_load_members", name)),
            include_redundant_members=bool(_opt_bool(body, "include_redundant_members", name)),
            unread_thread_notifications=bool(_opt_bool(body, "unread_thread_notifications", name)),
    # Spec "Receiving notifications": per-thread unread counts in /sync when asked for.
        )

    def allows(self, type_: str, sender: str | None, room_id: str | None, content: Any) -> bool:
        """The spec's rule: `not_*` wins over the inclusive lists; an absent list allows all."""
        if self.types is not None and not glob_match(type_, self.types):
            return False
        if self.not_types and glob_match(type_, self.not_types):
            return False
        if sender is not None:
            if self.senders is not None and sender not in self.senders:
                return False
            if sender in self.not_senders:
                return False
        if room_id is not None and not self.room_allowed(room_id):
            return False
        if self.contains_url is not None:
            has_url = isinstance(content, dict) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    def matches(self, event: Event) -> bool:
        if self.ignored and event.sender in self.ignored and not event.is_state:
            return False
        return self.allows(event.type, event.sender, event.room_id, event.content)

    def ignoring(self, users: frozenset[str]) -> EventFilter:
        return attrs.evolve(self, ignored=users) if users else self

    def room_allowed(self, room_id: str) -> bool:
        if self.rooms is not None and room_id not in self.rooms:
            return False
        return room_id not in self.not_rooms

    def keep(self, events: list[dict[str, Any]], room_id: str | None = None) -> list[dict[str, Any]]:
        """The client-format events (account data, presence, ephemeral) this filter passes,
        at most `limit` of them."""
        kept = [
            e for e in events
            if self.allows(e.get("type", ""), e.get("sender"), room_id, e.get("content"))
        ]
        return kept if self.limit is None else kept[: self.limit]


_FIELD_SPLIT = re.compile(r"(?<!\\)\.")


def _field_path(field: str) -> tuple[str, ...]:
    """`content.m\\.relates_to` -> ("content", "m.relates_to") (spec: "event_fields")."""
    return tuple(part.replace("\\.", ".") for part in _FIELD_SPLIT.split(field))


def pick_fields(event: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """Only the listed (dotted) fields of a client-format event, nested as in the event."""
    out: dict[str, Any] = {}
    for path in paths:
        source: Any = event
        for key in path:
            if not isinstance(source, dict) or key not in source:
                break
            source = source[key]
        else:
            target = out
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = source
    return out


@attrs.frozen
class SyncFilter:
    timeline: EventFilter = EventFilter()
    state: EventFilter = EventFilter()
    ephemeral: EventFilter = EventFilter()
    room_account_data: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    presence: EventFilter = EventFilter()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    event_fields: tuple[tuple[str, ...], ...] | None = None
    event_format: str = "client"

    @classmethod
    def parse(cls, body: Any) -> SyncFilter:
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise _bad("filter must be an object")
        room = body.get("room") or {}
        if not isinstance(room, dict):
            raise _bad("filter.room must be an object")
        fields = _str_list(body.get("event_fields"), "event_fields")
        event_format = body.get("event_format", "client")
        if event_format not in ("client", "federation"):
            raise _bad("event_format must be client or federation")
        return cls(
            timeline=EventFilter.parse(room.get("timeline"), "room.timeline"),
            state=EventFilter.parse(room.get("state"), "room.state"),
            ephemeral=EventFilter.parse(room.get("ephemeral"), "room.ephemeral"),
            room_account_data=EventFilter.parse(room.get("account_data"), "room.account_data"),
            account_data=EventFilter.parse(body.get("account_data"), "account_data"),
            presence=EventFilter.parse(body.get("presence"), "presence"),
            rooms=_str_list(room.get("rooms"), "room.rooms", "!"),
            not_rooms=_str_list(room.get("not_rooms"), "room.not_rooms", "!") or (),
            include_leave=bool(_opt_bool(room, "include_leave", "room")),
            event_fields=None if fields is None else tuple(_field_path(f) for f in fields),
            event_format=event_format,
        )

    def ignoring(self, users: frozenset[str]) -> SyncFilter:
        """This filter with the timeline dropping what ignored users sent."""
        return attrs.evolve(self, timeline=self.timeline.ignoring(users)) if users else self

    def room_allowed(self, room_id: str) -> bool:
        if self.rooms is not None and room_id not in self.rooms:
            return False
        return room_id not in self.not_rooms

    def trim_response(self, resp: dict[str, Any]) -> None:
        """Apply, in place, what acts on a finished /sync response: the account data,
        presence and ephemeral filters, and `event_fields` on room events."""
        resp["account_data"]["events"] = self.account_data.keep(resp["account_data"]["events"])
        resp["presence"]["events"] = self.presence.keep(resp["presence"]["events"])
        for kind in ("join", "leave"):
            for room_id, section in resp["rooms"][kind].items():
                for key, flt in (("ephemeral", self.ephemeral), ("account_data", self.room_account_data)):
                    if key in section:
                        section[key]["events"] = flt.keep(section[key]["events"], room_id)
                if self.event_fields is not None:
                    for key in ("timeline", "state"):
                        section[key]["events"] = [pick_fields(e, self.event_fields) for e in section[key]["events"]]
