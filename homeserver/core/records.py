"""Plain records that services and storage hand each other: a new room, a membership as of
one event, a receipt, a notification. Pure data, so services need no storage row types."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class NewRoom:
    room_id: str
    room_version: str
    creator: str
    created_ts: int


@attrs.frozen
class Membership:
    """A user's membership of a room as of one event (written with it, read back
    from the room_members index)."""

    room_id: str
    user_id: str
    membership: str
    event_id: str
    sender: str
    stream_ordering: int


@attrs.frozen
class Receipt:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str
    event_id: str
    ts: int
    stream_id: int


@attrs.frozen
class Notification:
    """What push-rule evaluation decided for one local user and one event that notifies."""

    user_id: str
    event_id: str
    room_id: str
    stream_ordering: int
    thread_id: str  # "main" outside threads
    actions: list[Any]
    highlight: bool
    ts: int


# (room_id, thread_id) -> stream position of the user's latest read receipt there;
# thread_id "" is an unthreaded receipt (spec: it clears every thread).
ReadPositions = dict[tuple[str, str], int]
