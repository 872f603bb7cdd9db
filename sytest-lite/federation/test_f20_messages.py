"""Messages, history and room state across servers."""

import asyncio

from fedtools import server_of, shared_room, wait_membership, wait_same_state
from sltools import FEDERATION_DEADLINE, bodies, eventually, quote, timeline_events


def _message(room, body):
    def check(s):
        for ev in timeline_events(s, room):
            if ev.get("type") == "m.room.message" and ev.get("content", {}).get("body") == body:
                return ev
        return None

    return check


async def test_messages_both_ways(alice, bob):
    """SyTest: Remote room members can get room messages; Remote user can send messages."""
    room = await shared_room(alice, bob)
    bob_since = (await bob.sync())["next_batch"]
    alice_since = (await alice.sync())["next_batch"]

    first = await alice.send_message(room, "from alice to bob")
    _, ev = await bob.sync_until(
        bob_since, _message(room, "from alice to bob"), deadline=FEDERATION_DEADLINE
    )
    assert ev["sender"] == alice.user_id
    assert ev["event_id"] == first

    second = await bob.send_message(room, "from bob to alice")
    _, ev = await alice.sync_until(
        alice_since, _message(room, "from bob to alice"), deadline=FEDERATION_DEADLINE
    )
    assert ev["sender"] == bob.user_id
    assert ev["event_id"] == second

    # Both servers give the same event for the same id.
    for viewer in (alice, bob):
        for event_id, sender in ((first, alice.user_id), (second, bob.user_id)):
            r = await viewer.get(f"rooms/{quote(room)}/event/{quote(event_id)}")
            assert r.expect(200)["sender"] == sender


async def test_messages_in_order_via_messages_api(alice, bob):
    """Several messages from each side appear in /messages on both servers in one order."""
    room = await shared_room(alice, bob)
    sent = []
    for i in range(3):
        sent.append(await alice.send_message(room, f"a{i}"))

    async def ordered(viewer, expected):
        chunk = (await viewer.messages(room, limit=50)).expect(200)["chunk"]
        ids = [e["event_id"] for e in reversed(chunk) if e["type"] == "m.room.message"]
        return ids if ids == expected else None

    # Bob answers once his server has alice's messages, so the order is causal (without
    # that wait the two servers could legitimately order concurrent events differently).
    await eventually(lambda: ordered(bob, sent), what="bob's server has alice's messages")
    for i in range(3):
        sent.append(await bob.send_message(room, f"b{i}"))

    await eventually(lambda: ordered(bob, sent), what="bob's server has the six messages in order")
    await eventually(
        lambda: ordered(alice, sent), what="alice's server has the six messages in order"
    )


async def test_history_before_join_via_messages(alice, bob):
    """SyTest: Remote users may paginate history sent before they joined (backfill)."""
    room = await alice.create_room(preset="public_chat")
    # public_chat gives history_visibility "shared": members see history from before joining.
    before = [f"before join {i}" for i in range(5)]
    for body in before:
        await alice.send_message(room, body)
    r = await bob.join(room, via=[server_of(alice)])
    r.expect(200)
    await wait_membership(alice, room, bob.user_id, "join")

    async def history():
        seen: list[str] = []
        from_token = None
        for _ in range(10):
            params = {"limit": 10}
            if from_token:
                params["from"] = from_token
            j = (await bob.messages(room, **params)).expect(200)
            seen += bodies(j["chunk"])
            if not j["chunk"] or "end" not in j:
                break
            from_token = j["end"]
        return seen if set(before) <= set(seen) else None

    seen = await eventually(
        history, what="bob's /messages shows the messages from before he joined"
    )
    assert [b for b in reversed(seen) if b in before] == before


async def test_remote_user_sets_state_with_power(alice, bob):
    """A remote member given power changes the room name; the room's server accepts it."""
    room = await shared_room(alice, bob)
    pl = (await alice.get_state(room, "m.room.power_levels")).expect(200)
    pl.setdefault("users", {})[bob.user_id] = 100
    (await alice.put_state(room, "m.room.power_levels", pl)).expect(200)

    async def bob_has_power():
        r = await bob.get_state(room, "m.room.power_levels")
        return r.status == 200 and r.json.get("users", {}).get(bob.user_id) == 100

    await eventually(bob_has_power, what="bob's server sees his new power level")
    (await bob.put_state(room, "m.room.name", {"name": "named by bob"})).expect(200)

    async def alice_sees_name():
        r = await alice.get_state(room, "m.room.name")
        return r.status == 200 and r.json.get("name") == "named by bob"

    await eventually(alice_sees_name, what="alice's server sees the name set by bob")


async def test_unauthorised_remote_state_change_refused(alice, bob):
    """A remote member without power cannot change the room name (refused locally or
    rejected by the room's server; either way the name does not change on alice's side)."""
    room = await shared_room(alice, bob, name="original name")
    r = await bob.put_state(room, "m.room.name", {"name": "hijacked"})
    r.expect_error(403, "M_FORBIDDEN")
    r = await alice.get_state(room, "m.room.name")
    assert r.expect(200)["name"] == "original name"


async def test_both_servers_agree_on_room_state(alice, bob):
    """After joins, a rename and a topic change, both servers report the same current state."""
    room = await shared_room(alice, bob)
    (await alice.put_state(room, "m.room.name", {"name": "agreed"})).expect(200)
    topic = (await alice.put_state(room, "m.room.topic", {"topic": "agreement"})).expect(200)

    async def bob_has_topic():
        r = await bob.get_state(room, "m.room.topic")
        return r.status == 200 and r.json.get("topic") == "agreement"

    await eventually(bob_has_topic, what="bob's server has the topic")
    await bob.send_message(room, "hello")
    state = await wait_same_state(alice, bob, room)
    assert ("m.room.member", bob.user_id) in state
    assert state[("m.room.topic", "")] == topic["event_id"]


async def test_servers_converge_after_concurrent_state_and_messages(alice, bob):
    """A state change on one server while the other sends messages (a fork in the room
    DAG): once each has the other's events, both report the same current state, which
    includes the state change (nothing in the fork conflicts with it)."""
    room = await shared_room(alice, bob)
    put_topic, fork = await asyncio.gather(
        alice.put_state(room, "m.room.topic", {"topic": "concurrent"}),
        bob.send_message(room, "sent while the topic changes"),
    )
    topic = put_topic.expect(200)["event_id"]

    async def has(user, event_id):
        return (await user.get(f"rooms/{quote(room)}/event/{quote(event_id)}")).status == 200

    await eventually(lambda: has(bob, topic), what="bob's server has the topic event")
    await eventually(lambda: has(alice, fork), what="alice's server has bob's message")
    # Both servers now hold the same events: the state must agree (almost) at once.
    state = await wait_same_state(alice, bob, room, deadline=10)
    assert state.get(("m.room.topic", "")) == topic
