"""Fan-out after commit: what the room writer made durable, told to whoever listens.

Subscribers are given to the writer at start-up (today: the recent-event ring,
the notifier, the federation outbox). Guarantee: a subscriber hears of a commit
only after it is durable, each commit once, in stream order (commits are enqueued
and made durable in stream order, see persister.py); a commit that failed is
never published. Subscribers are called synchronously and must be cheap: one that
needs I/O hands the record to its own task. One that raises is logged and skipped;
the send never fails or waits because of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from homeserver.core.events import StoredEvent
from homeserver.core.state_groups import StateKey
from homeserver.services.ports import FederationSenderPort
from homeserver.services.room_heads import RoomHead

log = logging.getLogger(__name__)


@attrs.frozen
class Committed:
    """One commit of the room writer."""

    events: Sequence[StoredEvent]  # in stream order; outliers and backfill count down from 0
    # The room's head after the commit; None when its timeline did not move
    # (outliers, backfilled history, a soft-failed event).
    head: RoomHead | None = None
    state_delta: Mapping[StateKey, str | None] = attrs.field(factory=dict)  # None: removed
    membership_changes: Sequence[tuple[str, int]] = ()  # (user id, stream position)
    redactions: Sequence[tuple[str, str]] = ()  # (redaction event, target) applied
    destinations: frozenset[str] = frozenset()  # servers PDUs were queued for, same commit

    @property
    def position(self) -> int:
        """The highest stream position this commit wrote."""
        return max(
            [se.stream_ordering for se in self.events] + [s for _, s in self.membership_changes],
            default=0,
        )


class CommitSubscriber(Protocol):
    def on_committed(self, commit: Committed) -> None:
        """Called once per commit, after it is durable, in stream order. Must not block."""


def publish(subscribers: Sequence[CommitSubscriber], commit: Committed) -> None:
    for subscriber in subscribers:
        try:
            subscriber.on_committed(commit)
        except Exception:
            log.exception("commit subscriber %r failed; the commit stands", subscriber)


class WakeOutbox:
    """A subscriber of the room writer: PDUs it queued in the outbox, in the events'
    own commit, are delivered now rather than at the sender's next retry."""

    def __init__(self, sender: FederationSenderPort) -> None:
        self._sender = sender

    def on_committed(self, commit: Committed) -> None:
        if commit.destinations:
            self._sender.wake(commit.destinations)
