"""The notifier wakes exactly the long-polls a commit concerns, and moves the token."""

from __future__ import annotations

from homeserver.services.fanout import Committed
from homeserver.services.notifier import Notifier, SyncToken, WakeOnCommit
from homeserver.services.room_heads import RoomHead
from tests.homeserver.services.writer_setup import (
    ALICE,
    Recorder,
    initial_state,
    message,
    room_writer,
)

SERVER = "hs.test"
BOB, CAROL, REMOTE = f"@bob:{SERVER}", f"@carol:{SERVER}", "@dan:other.test"


def head(members: dict[str, str]) -> RoomHead:
    return RoomHead("!r:hs.test", "10", {}, 1, 0, ["$last"], 5, members)


async def test_a_room_commit_wakes_its_joined_local_members_only() -> None:
    notifier = Notifier()
    wake = WakeOnCommit(notifier, SERVER)
    waiting = {u: notifier.register(u) for u in (ALICE, BOB, CAROL)}

    wake.on_committed(Committed([], head({ALICE: "join", BOB: "leave", REMOTE: "join"})))

    assert waiting[ALICE].done()
    assert not waiting[BOB].done() and not waiting[CAROL].done()


async def test_an_invite_to_a_room_we_are_not_in_wakes_the_invitee_and_moves_the_token() -> None:
    notifier = Notifier()
    notifier.seed("events", 10)
    wake = WakeOnCommit(notifier, SERVER)
    bob = notifier.register(BOB)

    wake.on_committed(Committed([], None, membership_changes=[(BOB, 11)]))

    assert bob.done()
    assert notifier.current_token() == SyncToken(events=11)
    assert notifier.current_token().is_after(SyncToken(events=10))


async def test_a_commit_that_moved_no_room_and_no_membership_wakes_nobody() -> None:
    notifier = Notifier()
    notifier.seed("events", 10)
    alice = notifier.register(ALICE)

    WakeOnCommit(notifier, SERVER).on_committed(Committed([]))

    assert not alice.done()
    assert notifier.current_token() == SyncToken(events=10)


async def test_account_data_wakes_its_user_and_is_known_to_have_changed() -> None:
    notifier = Notifier()
    notifier.seed("account_data", 3)
    alice, bob = notifier.register(ALICE), notifier.register(BOB)

    notifier.on_account_data(4, ALICE)

    assert alice.done() and not bob.done()
    assert notifier.maybe_changed("account_data", ALICE, 3)
    assert not notifier.maybe_changed("account_data", BOB, 3)


async def test_a_sent_message_wakes_a_member_waiting_on_the_notifier(db_url: str) -> None:
    notifier = Notifier()
    async with room_writer(db_url, [WakeOnCommit(notifier, SERVER), Recorder()]) as s:
        await s.writer.create_room("!r:hs.test", "10", ALICE, initial_state())
        since = notifier.current_token()
        waiter = notifier.register(ALICE)
        sent = await s.writer.send_event("!r:hs.test", message("hello"))

    assert waiter.done()
    assert notifier.events_position == sent.stream_ordering
    assert notifier.current_token().is_after(since)
