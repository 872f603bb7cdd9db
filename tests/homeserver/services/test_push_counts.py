"""Unread counts from notification rows and read receipts (spec "Receiving notifications")."""

from __future__ import annotations

from homeserver.core.events import Event
from homeserver.core.records import Notification
from homeserver.services.push import Counts, thread_of, unread_counts


def note(stream: int, thread: str = "main", room: str = "!r", highlight: bool = False) -> Notification:
    return Notification("@u", f"$e{stream}", room, stream, thread, ["notify"], highlight, 0)


def test_unthreaded_receipt_clears_every_thread_up_to_it() -> None:
    rows = [note(1), note(2, "$t"), note(3), note(4, "$t", highlight=True)]
    assert unread_counts(rows, {("!r", ""): 2}) == {"!r": {"main": Counts(1, 0), "$t": Counts(1, 1)}}


def test_threaded_receipts_clear_their_thread_only() -> None:
    rows = [note(1), note(2, "$t"), note(3, "$t")]
    assert unread_counts(rows, {("!r", "$t"): 3}) == {"!r": {"main": Counts(1, 0)}}
    assert unread_counts(rows, {("!r", "main"): 3}) == {"!r": {"$t": Counts(2, 0)}}


def test_rooms_are_counted_apart() -> None:
    rows = [note(1, room="!a"), note(2, room="!b")]
    assert unread_counts(rows, {("!a", ""): 5}) == {"!b": {"main": Counts(1, 0)}}


def test_thread_of_an_event() -> None:
    def ev(content: dict) -> Event:
        return Event("$x", {"type": "m.room.message", "room_id": "!r", "sender": "@a:hs", "content": content}, "10")

    assert thread_of(ev({"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}})) == "$root"
    assert thread_of(ev({"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})) == "main"
    assert thread_of(ev({"body": "hi"})) == "main"
