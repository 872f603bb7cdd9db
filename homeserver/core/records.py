"""Plain records that services and storage hand each other: a new room, a membership as of
one event, a receipt. Pure data, so services need no storage row types."""

from __future__ import annotations

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
