"""Per-room material of initial syncs, computed once and shared by every member.

An initial sync (and a room newly joined since a token) gives each room its newest
events, whether more exist, `prev_batch` and the state at the start of that window
(with lazy loading: the senders' members). None of that depends on who asks, as long
as the user may read the whole history (`visible_window` without a start) — so it is
kept per (room, position of the room's last change, timeline filter, lazy flag) and
shared by every user of the room. The fan-out keeps it current: each commit moves the
room's last-change position (`on_committed`), which changes the key, so material of
an older room state is never used; old entries leave by LRU.

What stays per user is cheap and in memory: the user's own member event, the summary's
heroes, `transaction_id` and `age` in `unsigned` (so events are formatted per response).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import msgspec

from homeserver.core.events import StoredEvent
from homeserver.core.state_groups import StateMap
from homeserver.services.lru import LruCache

if TYPE_CHECKING:
    from homeserver.services.fanout import Committed

_encode = msgspec.json.Encoder().encode


@attrs.frozen
class RoomMaterial:
    window: list[StoredEvent]  # oldest first
    limited: bool
    prev_batch: str
    state: StateMap  # at the start of the window: complete
    lazy_state: StateMap  # the same, members of the window's senders only (lazy loading)
    # (event id, bundled) -> the event's JSON serialised once, `unsigned.age` left out
    # (spliced in per response), or None when it must be formatted per user.
    fragments: dict[tuple[str, bool], Fragment | None] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class Fragment:
    event: dict[str, Any]  # as formatted when cached: what server-side readers look at
    head: bytes  # the event's JSON up to (without) its closing brace, no `unsigned`
    origin_server_ts: int
    unsigned_rest: bytes  # `unsigned` after `{` without `age`: b"}" when there is nothing else

    def with_age(self, now: int) -> bytes:
        age = str(max(0, now - self.origin_server_ts)).encode()
        rest = b"}" if self.unsigned_rest == b"}" else b"," + self.unsigned_rest
        return self.head + b',"unsigned":{"age":' + age + rest + b"}"


def fragment(event: dict[str, Any]) -> Fragment | None:
    """The shareable serialisation of a formatted client event; None when something in
    it depends on who reads it (bundled aggregations carry per-user thread flags) or
    when it is not the plain shape (a redacted event's nested `redacted_because`)."""
    unsigned = event.get("unsigned")
    if not isinstance(unsigned, dict) or "m.relations" in unsigned or "redacted_because" in unsigned:
        return None
    if "transaction_id" in unsigned or "age" not in unsigned:
        return None
    rest = {k: v for k, v in unsigned.items() if k != "age"}
    body = {k: v for k, v in event.items() if k != "unsigned"}
    return Fragment(event, _encode(body)[:-1], int(event.get("origin_server_ts", 0)), _encode(rest)[1:])


class SharedEvent(Mapping[str, Any]):
    """A room event in a sync response, already serialised: reads like the event (for
    code that inspects responses, e.g. device-list changes from member events) and is
    written as its bytes by `encode_sync`."""

    __slots__ = ("_event", "raw")

    def __init__(self, event: dict[str, Any], raw: bytes) -> None:
        self._event = event
        self.raw = raw

    def __getitem__(self, key: str) -> Any:
        return self._event[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._event)

    def __len__(self) -> int:
        return len(self._event)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, SharedEvent):
        return msgspec.Raw(obj.raw)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_sync_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_sync(value: Any) -> bytes:
    """JSON of a sync response (or frame) whose room events may be SharedEvents."""
    return _sync_encoder.encode(value)


class RoomMaterialCache:
    """A commit subscriber: per-room last-change positions, and the material keyed by them."""

    def __init__(self, floor: int, size: int = 20_000) -> None:
        self._floor = floor  # every room's last change at start-up is at or before this
        self._last: dict[str, int] = {}
        # Bumped by every commit touching the room, also those that do not move its
        # timeline (backfill, outliers): history we now hold may change `limited`.
        self._generation: dict[str, int] = {}
        self._cache: LruCache[tuple[str, int, int, Hashable], RoomMaterial] = LruCache(size)
        self.hits = 0
        self.misses = 0

    def caches(self) -> dict[str, LruCache[Any, Any]]:
        """Named caches, for their hit rates on /metrics."""
        return {"initial_sync_room_material": self._cache}

    def on_committed(self, commit: Committed) -> None:
        position = commit.position
        rooms = {se.event.room_id for se in commit.events}
        if commit.head is not None:
            rooms.add(commit.head.room_id)
        for room in rooms:
            self._generation[room] = self._generation.get(room, 0) + 1
            if position > self._last.get(room, 0):
                self._last[room] = position

    def reset(self, floor: int) -> None:
        """Workers: notices up to `floor` may have been missed; start over from there."""
        self._floor = max(self._floor, floor)
        self._last.clear()
        self._generation.clear()
        self._cache.clear()

    def last_change(self, room_id: str) -> int:
        return self._last.get(room_id, self._floor)

    def key(self, room_id: str, upto: int, variant: Hashable) -> tuple[str, int, int, Hashable] | None:
        """The cache key of the room's material at `upto`, or None when `upto` is older
        than the room's last change (that window is not the shared one)."""
        last = self.last_change(room_id)
        if upto < last:
            return None
        return (room_id, last, self._generation.get(room_id, 0), variant)

    def get(self, key: tuple[str, int, int, Hashable]) -> RoomMaterial | None:
        hit = self._cache.get(key)
        if hit is None:
            self.misses += 1
        else:
            self.hits += 1
        return hit

    def put(self, key: tuple[str, int, int, Hashable], material: RoomMaterial) -> None:
        self._cache.put(key, material)
