"""Typing notifications and read receipts across servers (EDUs)."""

from fedtools import shared_room
from sltools import FEDERATION_DEADLINE, ephemeral_events, find_event, timeline_events


def _typing(s, room):
    evs = ephemeral_events(s, room, "m.typing")
    return evs[-1]["content"]["user_ids"] if evs else None


async def test_typing_across_servers(alice, bob):
    """SyTest: Typing notifications also sent to remote room members; typing can be stopped."""
    room = await shared_room(alice, bob)
    since = (await bob.sync())["next_batch"]
    (await alice.set_typing(room, True)).expect(200)
    s, _ = await bob.sync_until(
        since, lambda s: alice.user_id in (_typing(s, room) or []), deadline=FEDERATION_DEADLINE
    )
    (await alice.set_typing(room, False)).expect(200)
    await bob.sync_until(
        s["next_batch"],
        lambda s: (t := _typing(s, room)) is not None and alice.user_id not in t,
        deadline=FEDERATION_DEADLINE,
    )


async def test_typing_from_remote_user(alice, bob):
    room = await shared_room(alice, bob)
    since = (await alice.sync())["next_batch"]
    (await bob.set_typing(room, True)).expect(200)
    await alice.sync_until(
        since, lambda s: bob.user_id in (_typing(s, room) or []), deadline=FEDERATION_DEADLINE
    )


async def test_read_receipts_across_servers(alice, bob):
    """SyTest: Read receipts are visible to remote members (both directions)."""
    room = await shared_room(alice, bob)
    bob_since = (await bob.sync())["next_batch"]
    event_id = await alice.send_message(room, "please read")
    await bob.sync_until(
        bob_since,
        lambda s: find_event(timeline_events(s, room), event_id=event_id),
        deadline=FEDERATION_DEADLINE,
    )
    alice_since = (await alice.sync())["next_batch"]
    (await bob.send_receipt(room, event_id)).expect(200)

    def receipt_by(user_id):
        def check(s):
            for ev in ephemeral_events(s, room, "m.receipt"):
                entry = ev["content"].get(event_id, {}).get("m.read", {}).get(user_id)
                if entry is not None:
                    return entry
            return None

        return check

    _, entry = await alice.sync_until(
        alice_since, receipt_by(bob.user_id), deadline=FEDERATION_DEADLINE
    )
    assert isinstance(entry.get("ts"), int)

    # And the other way: alice's receipt reaches bob.
    bob_since = (await bob.sync())["next_batch"]
    (await alice.send_receipt(room, event_id)).expect(200)
    await bob.sync_until(bob_since, receipt_by(alice.user_id), deadline=FEDERATION_DEADLINE)
