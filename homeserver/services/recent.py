"""What changed since this process started, kept in memory for /sync.

A woken long-poll asks "what is new for this user since token T?". When T is
at or after the process's start position, every answer is here: the recent
events (a bounded ring, by stream order), the last membership change of each
user, and every redaction applied since start. Older tokens fall back to the
database. This keeps a fan-out to many waiting clients off the database.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from homeserver.core.events import StoredEvent

if TYPE_CHECKING:
    from homeserver.services.fanout import Committed


class RecentEvents:
    def __init__(self, start_stream: int, capacity: int = 10_000) -> None:
        self.start_stream = start_stream
        self._floor = start_stream  # every event with stream > floor is in the ring
        self._streams: list[int] = []
        self._events: list[StoredEvent] = []
        self._capacity = capacity
        self._member_changes: dict[str, int] = {}
        self._redacted_by: dict[str, str] = {}

    def on_committed(self, commit: Committed) -> None:
        """A subscriber of the room writer: keep what it commits, in stream order."""
        self.redactions_applied(commit.redactions)
        for user_id, stream in commit.membership_changes:
            self.membership_changed(user_id, stream)
        if commit.head is not None:  # the room's timeline moved
            self.add(commit.events)

    def add(self, stored: Iterable[StoredEvent]) -> None:
        for se in stored:
            if se.stream_ordering <= self._floor or se.outlier or se.soft_failed:
                continue
            i = bisect.bisect(self._streams, se.stream_ordering)
            self._streams.insert(i, se.stream_ordering)
            self._events.insert(i, se)
        overflow = len(self._events) - self._capacity
        if overflow > 0:
            self._floor = self._streams[overflow - 1]
            del self._streams[:overflow]
            del self._events[:overflow]

    def reset(self, floor: int) -> None:
        """Workers: notices up to `floor` may have been missed (a lost Redis subscription):
        from now on only what is after it is answered from memory."""
        self.start_stream = self._floor = max(self._floor, floor)
        keep = bisect.bisect_right(self._streams, self._floor)
        del self._streams[:keep]
        del self._events[:keep]
        self._member_changes.clear()
        self._redacted_by.clear()

    def redactions_applied(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(redaction event, target) pairs just committed as applied (not merely received)."""
        for redaction_id, target in pairs:
            self._redacted_by[target] = redaction_id

    def membership_changed(self, user_id: str, stream: int) -> None:
        self._member_changes[user_id] = max(stream, self._member_changes.get(user_id, 0))

    def member_stamp(self, user_id: str) -> int:
        """Changes whenever the user's memberships change (0: none since start)."""
        return self._member_changes.get(user_id, 0)

    def no_membership_change(self, user_id: str, since: int) -> bool:
        """True when we know for sure nothing changed for this user after `since`."""
        return since >= self.start_stream and self._member_changes.get(user_id, 0) <= since

    def covers(self, since: int) -> bool:
        return since >= self._floor

    def room_events_after(
        self, room_ids: Sequence[str], after: int, upto: int, limit: int,
    ) -> list[StoredEvent]:
        """Like EventStore.room_events_after (newest first), from memory; needs covers(after)."""
        wanted = set(room_ids)
        lo = bisect.bisect_right(self._streams, after)
        hi = bisect.bisect_right(self._streams, upto)
        out = [se for se in reversed(self._events[lo:hi]) if se.event.room_id in wanted]
        return out[:limit]

    def redactions_known(self, stored: Sequence[StoredEvent]) -> bool:
        """Redactions of these events are all in memory (they are newer than start)."""
        return all(se.stream_ordering > self.start_stream for se in stored)

    def redacted_by(self, event_ids: Iterable[str]) -> dict[str, str]:
        return {e: self._redacted_by[e] for e in event_ids if e in self._redacted_by}
