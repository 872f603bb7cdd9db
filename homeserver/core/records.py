"""Plain records that services and storage hand each other: a new room, a membership as of
one event, a receipt, a notification, a commit's batch, an access token, a key. Pure data,
so services depend on these core types and on store classes only, never on storage's own
definitions (tests/test_architecture.py checks that)."""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.core.events import StoredEvent
from homeserver.core.state_groups import NewStateGroup, StateKey


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


@attrs.frozen
class TokenRecord:
    token_id: str
    user_id: str
    device_id: str
    expires_ts: int | None
    refresh_token: str | None
    # Made by /refresh: the token it replaces, alive until this one is first used.
    previous_token_id: str | None = None


class StoreConflict(Exception):
    """A write broke a uniqueness rule (an event or a client txn id stored twice)."""


@attrs.frozen
class RoomUpdate:
    room_id: str
    current_group: int
    max_depth: int
    current_state_delta: dict[StateKey, str | None]
    forward_extremities: tuple[str, ...]


@attrs.define
class PersistBatch:
    """Everything one commit writes. Built by the event service, written atomically."""

    events: list[StoredEvent] = attrs.field(factory=list)
    new_rooms: list[NewRoom] = attrs.field(factory=list)
    state_groups: list[NewStateGroup] = attrs.field(factory=list)
    room_updates: list[RoomUpdate] = attrs.field(factory=list)
    memberships: list[Membership] = attrs.field(factory=list)
    redactions: list[tuple[str, str]] = attrs.field(factory=list)  # (redaction id, target id)
    # Federation: (destination, PDU JSON) written with the events, so an event is
    # never committed without its delivery being queued (and vice versa).
    outbox: list[tuple[str, str]] = attrs.field(factory=list)
    edges: list[tuple[str, str]] = attrs.field(factory=list)  # (event, prev event), received events
    received_ts: int = 0

    def extend(self, other: PersistBatch) -> None:
        self.events += other.events
        self.new_rooms += other.new_rooms
        self.state_groups += other.state_groups
        self.room_updates += other.room_updates
        self.memberships += other.memberships
        self.redactions += other.redactions
        self.outbox += other.outbox
        self.edges += other.edges
        self.received_ts = max(self.received_ts, other.received_ts)


@attrs.frozen
class Relation:
    event_id: str
    relates_to_id: str
    rel_type: str
    type: str
    sender: str
    room_id: str
    stream_ordering: int


@attrs.frozen
class RetryState:
    """Backoff of one destination: retry no earlier than ``retry_after_ts`` (ms)."""

    failure_count: int = 0
    retry_after_ts: int = 0
    last_success_ts: int | None = None


@attrs.frozen
class ServerKey:
    server_name: str
    key_id: str
    verify_key: bytes  # raw 32-byte ed25519 public key
    valid_until_ts: int  # already capped by the keyring
    expired_ts: int | None  # set for old_verify_keys
    fetched_ts: int


@attrs.frozen
class BackupVersion:
    version: int
    algorithm: str
    auth_data: dict[str, Any]
    etag: int


@attrs.frozen
class RoomKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "first_message_index": self.first_message_index, "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified, "session_data": self.session_data,
        }


@attrs.frozen
class OneTimeKey:
    """A key as /keys/upload named it: ``algorithm:key_id`` -> key object."""

    algorithm: str
    key_id: str
    key: Any


@attrs.frozen
class QueuedPush:
    """A push-gateway delivery waiting in the durable queue, with its notification and the
    pusher it goes to (None when the pusher or the notification is gone meanwhile)."""

    id: int
    user_id: str
    app_id: str
    pushkey_sha256: str
    event_id: str
    room_id: str
    attempts: int
    pusher: dict[str, Any] | None
    actions: list[Any] | None


@attrs.frozen
class DueDigest:
    """An email digest due for a user: what was mailed before is up to `mailed_upto`."""

    user_id: str
    mailed_upto: int
    attempts: int


@attrs.frozen
class SearchRow:
    stream_ordering: int
    event_id: str
    room_id: str
    sender: str
    key: str
    origin_server_ts: int
    tokens: str


@attrs.frozen
class RoomWindow:
    """Where in one room the searcher may read (stream positions, None = unbounded)."""

    room_id: str
    since: int | None = None
    upto: int | None = None


@attrs.frozen
class Report:
    kind: str
    reporter: str
    room_id: str | None
    event_id: str | None
    target_user_id: str | None
    reason: str | None
    received_ts: int
    score: int | None = None  # event reports only: -100..0, as older clients send it
