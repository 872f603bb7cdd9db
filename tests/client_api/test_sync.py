"""/sync (initial, incremental, long-poll, invite/leave, full_state) and filters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import attrs

from config.schema import HomeserverConfig, LimitsConfig
from tests.helpers import Matrix, User, assert_error, bodies, q, timeline


async def chat(hs: Matrix) -> tuple[User, User, str]:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", name="Chat")
    await bob.join(room)
    return alice, bob, room


def state_of(sync: dict, room: str) -> dict[tuple[str, str], dict]:
    events = sync["rooms"]["join"][room]["state"]["events"]
    return {(e["type"], e["state_key"]): e for e in events}


def sequence(token: str) -> tuple[int, ...]:
    """Our tokens look like s<n>_<n>...: comparable positions (opaque to clients)."""
    assert token.startswith("s"), token
    return tuple(int(p) for p in token[1:].split("_"))


# -- filters ------------------------------------------------------------------------------


async def test_create_and_get_a_filter(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    body = {"room": {"timeline": {"limit": 5, "types": ["m.room.message"]}}, "presence": {"types": []}}
    got = await alice.post(f"/user/{q(alice.user_id)}/filter", body)
    assert isinstance(got["filter_id"], str) and got["filter_id"]
    assert await alice.get(f"/user/{q(alice.user_id)}/filter/{got['filter_id']}") == body
    second = await alice.post(f"/user/{q(alice.user_id)}/filter", {})
    assert second["filter_id"] != got["filter_id"]


async def test_unknown_filter_is_404(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    for fid in ("12345", "abc"):
        assert_error(await alice.get(f"/user/{q(alice.user_id)}/filter/{fid}", expect=404), "M_NOT_FOUND")


async def test_filters_of_other_users_are_private(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    fid = (await alice.post(f"/user/{q(alice.user_id)}/filter", {"room": {}}))["filter_id"]
    assert_error(await bob.get(f"/user/{q(alice.user_id)}/filter/{fid}", expect=403), "M_FORBIDDEN")
    assert_error(await bob.post(f"/user/{q(alice.user_id)}/filter", {}, expect=403), "M_FORBIDDEN")
    assert_error(await bob.get(f"/user/{q(bob.user_id)}/filter/{fid}", expect=404), "M_NOT_FOUND")


async def test_malformed_filter_is_refused(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    err = await alice.post(f"/user/{q(alice.user_id)}/filter", {"room": {"timeline": {"limit": "ten"}}}, expect=400)
    assert_error(err, "M_BAD_JSON")


async def test_sync_honours_a_stored_filters_timeline_limit(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    for n in range(1, 6):
        await alice.send(room, f"m{n}")
    fid = (await bob.post(f"/user/{q(bob.user_id)}/filter", {"room": {"timeline": {"limit": 2}}}))["filter_id"]
    section = (await bob.sync(filter=fid))["rooms"]["join"][room]["timeline"]
    assert bodies(section["events"]) == ["m4", "m5"]
    assert len(section["events"]) == 2 and section["limited"] is True


async def test_sync_honours_timeline_types_in_an_inline_filter(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.put_state(room, "m.room.topic", {"topic": "topic"})
    await alice.send(room, {"x": 1}, type="org.example.other")
    await alice.send(room, "text")
    sync = await bob.sync(filter={"room": {"timeline": {"types": ["m.room.message"]}}})
    events = timeline(sync, room)
    assert [e["type"] for e in events] == ["m.room.message"]
    assert bodies(events) == ["text"]
    # state still tells the client the topic even though the timeline left it out
    assert state_of(sync, room)[("m.room.topic", "")]["content"] == {"topic": "topic"}


async def test_sync_with_an_unknown_filter_id_fails(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    err = await alice.get("/sync", params={"filter": "999"}, expect=400)
    assert err["errcode"] in ("M_INVALID_PARAM", "M_NOT_FOUND")


async def test_sync_rooms_filter(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    one = await alice.create_room()
    two = await alice.create_room()
    sync = await alice.sync(filter={"room": {"rooms": [two]}})
    assert list(sync["rooms"]["join"]) == [two]
    sync = await alice.sync(filter={"room": {"not_rooms": [two]}})
    assert list(sync["rooms"]["join"]) == [one]


# -- initial and incremental -------------------------------------------------------------


async def test_initial_sync_has_every_required_key(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.send(room, "hello")
    sync = await bob.sync()
    for key in ("next_batch", "rooms", "account_data", "to_device", "device_lists",
                "device_one_time_keys_count", "presence"):
        assert key in sync, key
    assert set(sync["rooms"]) >= {"join", "invite", "leave"}
    section = sync["rooms"]["join"][room]
    for key in ("timeline", "state", "ephemeral", "account_data"):
        assert key in section, key
    assert set(section["timeline"]) >= {"events", "limited", "prev_batch"}
    assert section["summary"]["m.joined_member_count"] == 2
    assert section["summary"]["m.heroes"] == [alice.user_id]
    assert all("room_id" not in e for e in section["timeline"]["events"])


async def test_initial_sync_timeline_and_state_do_not_overlap(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    for n in range(1, 13):
        await alice.send(room, f"m{n}")
    sync = await bob.sync()
    section = sync["rooms"]["join"][room]
    events = section["timeline"]["events"]
    assert len(events) == 10  # the default limit
    assert bodies(events) == [f"m{n}" for n in range(3, 13)]
    assert section["timeline"]["limited"] is True
    state = state_of(sync, room)
    assert state[("m.room.name", "")]["content"] == {"name": "Chat"}
    assert state[("m.room.member", bob.user_id)]["content"]["membership"] == "join"
    assert ("m.room.create", "") in state
    timeline_ids = {e["event_id"] for e in events}
    assert not timeline_ids & {e["event_id"] for e in state.values()}


async def test_initial_sync_with_a_small_room_is_not_limited(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(name="Small")
    section = (await alice.sync())["rooms"]["join"][room]
    assert section["timeline"]["limited"] is False
    assert section["timeline"]["events"][0]["type"] == "m.room.create"
    assert section["state"]["events"] == []  # everything is in the timeline


async def test_incremental_sync_returns_only_new_events(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.send(room, "old")
    first = await bob.sync()
    await alice.send(room, "new 1")
    await bob.send(room, "new 2")
    second = await bob.sync(first["next_batch"])
    section = second["rooms"]["join"][room]
    assert bodies(section["timeline"]["events"]) == ["new 1", "new 2"]
    assert section["timeline"]["limited"] is False
    assert section["state"]["events"] == []
    assert sequence(second["next_batch"]) > sequence(first["next_batch"])
    third = await bob.sync(second["next_batch"])
    assert third["rooms"]["join"] == {}


async def test_incremental_sync_for_another_rooms_event_leaves_this_room_out(hs: Matrix) -> None:
    alice, bob, _ = await chat(hs)
    other = await alice.create_room(preset="public_chat")
    await bob.join(other)
    since = (await bob.sync())["next_batch"]
    await alice.send(other, "elsewhere")
    sync = await bob.sync(since)
    assert list(sync["rooms"]["join"]) == [other]


async def test_reusing_an_old_since_token_returns_the_data_again(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    since = (await bob.sync())["next_batch"]
    await alice.send(room, "again")
    assert bodies(timeline(await bob.sync(since), room)) == ["again"]
    assert bodies(timeline(await bob.sync(since), room)) == ["again"]


async def test_limited_incremental_sync_carries_the_state_delta(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    since = (await bob.sync())["next_batch"]
    await alice.put_state(room, "m.room.topic", {"topic": "changed in the gap"})
    for n in range(1, 6):
        await alice.send(room, f"m{n}")
    sync = await bob.sync(since, filter={"room": {"timeline": {"limit": 2}}})
    section = sync["rooms"]["join"][room]
    assert section["timeline"]["limited"] is True
    assert bodies(section["timeline"]["events"]) == ["m4", "m5"]
    state = state_of(sync, room)
    assert state[("m.room.topic", "")]["content"] == {"topic": "changed in the gap"}
    assert ("m.room.create", "") not in state  # unchanged state is not repeated


async def test_full_state_returns_the_whole_state_on_an_incremental_sync(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    since = (await bob.sync())["next_batch"]
    await alice.send(room, "new")
    sync = await bob.sync(since, full_state=True)
    state = state_of(sync, room)
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", alice.user_id)} <= set(state)
    assert bodies(timeline(sync, room)) == ["new"]


async def test_invalid_since_is_refused(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    err = await alice.get("/sync", params={"since": "not-a-token"}, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


# -- long-poll ---------------------------------------------------------------------------


async def test_long_poll_wakes_up_when_a_message_arrives(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    since = (await bob.sync())["next_batch"]
    started = time.monotonic()
    poll = asyncio.create_task(bob.sync(since, timeout=10_000))
    await asyncio.sleep(0.1)
    assert not poll.done(), "the long-poll returned before anything happened"
    await alice.send(room, "wake up")
    sync = await asyncio.wait_for(poll, 15)
    assert time.monotonic() - started < 10, "the long-poll ran into its timeout"
    assert bodies(timeline(sync, room)) == ["wake up"]


async def test_long_poll_wakes_up_for_an_invite(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room()
    since = (await bob.sync())["next_batch"]
    poll = asyncio.create_task(bob.sync(since, timeout=10_000))
    await asyncio.sleep(0.1)
    await alice.invite(room, bob)
    sync = await asyncio.wait_for(poll, 15)
    assert list(sync["rooms"]["invite"]) == [room]


async def test_long_poll_ignores_rooms_the_user_is_not_in(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    private = await alice.create_room()
    since = (await bob.sync())["next_batch"]
    poll = asyncio.create_task(bob.sync(since, timeout=10_000))
    await asyncio.sleep(0.05)
    await alice.send(private, "bob must not see this")
    await asyncio.sleep(0.2)
    assert not poll.done(), "an event in someone else's room woke the long-poll"
    await alice.send(room, "for bob")
    sync = await asyncio.wait_for(poll, 15)
    assert list(sync["rooms"]["join"]) == [room]
    assert bodies(timeline(sync, room)) == ["for bob"]


async def test_long_poll_times_out_with_an_empty_response(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    since = (await alice.sync())["next_batch"]
    sync = await alice.sync(since, timeout=200)
    assert sync["rooms"]["join"] == {} and sync["next_batch"]
    assert sequence(sync["next_batch"])[0] >= sequence(since)[0]
    assert room not in sync["rooms"]["join"]


# -- invites, joins and leaves -----------------------------------------------------------


async def test_invite_appears_with_stripped_state(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(name="Secret plans", topic="shh")
    since = (await bob.sync())["next_batch"]
    await alice.invite(room, bob)
    sync = await bob.sync(since)
    assert room not in sync["rooms"]["join"]
    events = sync["rooms"]["invite"][room]["invite_state"]["events"]
    by_type = {e["type"]: e for e in events if e["type"] != "m.room.member"}
    assert by_type["m.room.name"]["content"] == {"name": "Secret plans"}
    assert by_type["m.room.topic"]["content"] == {"topic": "shh"}
    assert by_type["m.room.join_rules"]["content"] == {"join_rule": "invite"}
    invite = next(e for e in events if e["type"] == "m.room.member")
    assert invite["state_key"] == bob.user_id and invite["sender"] == alice.user_id
    assert invite["content"]["membership"] == "invite"
    for e in events:
        assert set(e) == {"type", "state_key", "sender", "content"}
    assert (await bob.sync())["rooms"]["invite"].keys() == {room}  # initial sync shows it too


async def test_a_room_joined_since_the_token_comes_with_full_state(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", name="Joined later")
    for n in range(1, 4):
        await alice.send(room, f"m{n}")
    since = (await bob.sync())["next_batch"]
    await bob.join(room)
    sync = await bob.sync(since)
    assert room not in sync["rooms"]["invite"]
    section = sync["rooms"]["join"][room]
    events = section["timeline"]["events"]
    assert events[-1]["type"] == "m.room.member" and events[-1]["state_key"] == bob.user_id
    seen = {(e["type"], e.get("state_key")) for e in events + section["state"]["events"]}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.power_levels", "")} <= seen


async def test_leaving_puts_the_room_under_leave_once(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    since = (await bob.sync())["next_batch"]
    await bob.leave(room)
    await alice.send(room, "after bob left")
    sync = await bob.sync(since)
    assert room not in sync["rooms"]["join"]
    left = sync["rooms"]["leave"][room]
    assert {"timeline", "state"} <= set(left)
    last = left["timeline"]["events"][-1]
    assert last["type"] == "m.room.member" and last["content"]["membership"] == "leave"
    assert "after bob left" not in bodies(left["timeline"]["events"])
    later = await bob.sync(sync["next_batch"])
    assert room not in later["rooms"]["leave"] and room not in later["rooms"]["join"]


async def test_kicked_and_banned_users_see_the_room_under_leave(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    carol = await hs.register("carol")
    await carol.join(room)
    bob_since = (await bob.sync())["next_batch"]
    carol_since = (await carol.sync())["next_batch"]
    await alice.post(f"/rooms/{q(room)}/kick", {"user_id": bob.user_id, "reason": "bye"})
    await alice.post(f"/rooms/{q(room)}/ban", {"user_id": carol.user_id})
    kicked = (await bob.sync(bob_since))["rooms"]["leave"][room]["timeline"]["events"][-1]
    assert kicked["sender"] == alice.user_id and kicked["content"]["membership"] == "leave"
    banned = (await carol.sync(carol_since))["rooms"]["leave"][room]["timeline"]["events"][-1]
    assert banned["content"]["membership"] == "ban"


async def test_other_members_see_joins_and_leaves_in_the_timeline(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    since = (await alice.sync())["next_batch"]
    carol = await hs.register("carol")
    await carol.join(room)
    await carol.leave(room)
    events = timeline(await alice.sync(since), room)
    assert [(e["state_key"], e["content"]["membership"]) for e in events] == [
        (carol.user_id, "join"), (carol.user_id, "leave"),
    ]
    assert events[1]["unsigned"]["prev_content"]["membership"] == "join"


async def test_next_batch_increases_with_every_change(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    tokens = [(await bob.sync())["next_batch"]]
    for n in range(3):
        await alice.send(room, f"m{n}")
        tokens.append((await bob.sync(tokens[-1]))["next_batch"])
    positions = [sequence(t) for t in tokens]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_long_poll_wakes_up_when_the_user_is_kicked(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    since = (await bob.sync())["next_batch"]
    poll = asyncio.create_task(bob.sync(since, timeout=10_000))
    await asyncio.sleep(0.1)
    await alice.post(f"/rooms/{q(room)}/kick", {"user_id": bob.user_id})
    sync = await asyncio.wait_for(poll, 15)
    assert room in sync["rooms"]["leave"]


# -- account data ----------------------------------------------------------------------


async def test_account_data_round_trip_and_sync(hs: Matrix) -> None:
    alice, bob, _ = await chat(hs)
    path = f"/user/{q(alice.user_id)}/account_data/org.example.settings"
    assert_error(await alice.get(path, expect=404), "M_NOT_FOUND")
    since = (await alice.sync())["next_batch"]
    poll = asyncio.create_task(alice.sync(since, timeout=10_000))
    await asyncio.sleep(0.1)
    await alice.put(path, {"theme": "dark"})
    sync = await asyncio.wait_for(poll, 15)
    assert {"type": "org.example.settings", "content": {"theme": "dark"}} in sync["account_data"]["events"]
    assert await alice.get(path) == {"theme": "dark"}

    assert_error(await bob.get(path, expect=403), "M_FORBIDDEN")
    assert_error(await bob.put(path, {"theme": "light"}, expect=403), "M_FORBIDDEN")
    assert await alice.get(path) == {"theme": "dark"}
    assert {"type": "org.example.settings", "content": {"theme": "dark"}} in (
        await alice.sync())["account_data"]["events"]


async def test_room_account_data_round_trip(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    path = f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/org.example.tag"
    assert_error(await alice.get(path, expect=404), "M_NOT_FOUND")
    await alice.put(path, {"pinned": True})
    assert await alice.get(path) == {"pinned": True}
    section = (await alice.sync())["rooms"]["join"][room]
    assert {"type": "org.example.tag", "content": {"pinned": True}} in section["account_data"]["events"]
    fully_read = f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/m.fully_read"
    assert (await alice.put(fully_read, {"event_id": "$x"}, expect=405))["errcode"] == "M_BAD_JSON"


async def test_room_account_data_change_alone_reaches_incremental_sync(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    since = (await alice.sync())["next_batch"]
    poll = asyncio.create_task(alice.sync(since, timeout=10_000))
    await asyncio.sleep(0.1)
    await alice.put(f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/org.example.tag", {"pinned": True})
    sync = await asyncio.wait_for(poll, 15)
    section = sync["rooms"]["join"][room]
    assert section["account_data"]["events"] == [{"type": "org.example.tag", "content": {"pinned": True}}]
    assert section["timeline"]["events"] == []


async def test_a_rejected_invite_moves_from_invite_to_leave(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(invite=[bob.user_id])
    first = await bob.sync()
    assert list(first["rooms"]["invite"]) == [room]
    await bob.leave(room)
    sync = await bob.sync(first["next_batch"])
    assert room not in sync["rooms"]["invite"] and room not in sync["rooms"]["join"]
    assert room in sync["rooms"]["leave"]
    assert (await bob.sync())["rooms"]["invite"] == {}


async def test_leaving_and_rejoining_between_syncs_shows_the_room_as_joined(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    since = (await bob.sync())["next_batch"]
    await bob.leave(room)
    await alice.send(room, "while bob was away")
    await bob.join(room)
    sync = await bob.sync(since)
    assert room not in sync["rooms"]["leave"]
    events = sync["rooms"]["join"][room]["timeline"]["events"]
    memberships = [e["content"]["membership"] for e in events if e["type"] == "m.room.member"]
    assert memberships[-1] == "join"


async def test_an_invited_user_syncing_initially_sees_no_timeline_of_the_room(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(invite=[bob.user_id])
    await alice.send(room, "not for bob yet")
    sync = await bob.sync()
    assert room not in sync["rooms"]["join"]
    assert "timeline" not in sync["rooms"]["invite"][room]


async def test_limited_is_exact_at_the_timeline_limit(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(name="Exact")
    total = len((await alice.messages(room, "f", limit=100))["chunk"])
    exact = (await alice.sync(filter={"room": {"timeline": {"limit": total}}}))["rooms"]["join"][room]
    assert len(exact["timeline"]["events"]) == total and exact["timeline"]["limited"] is False
    short = (await alice.sync(filter={"room": {"timeline": {"limit": total - 1}}}))["rooms"]["join"][room]
    assert len(short["timeline"]["events"]) == total - 1 and short["timeline"]["limited"] is True
    assert short["state"]["events"][0]["type"] == "m.room.create"

    since = (await alice.sync())["next_batch"]
    for n in range(3):
        await alice.send(room, f"m{n}")
    section = (await alice.sync(since, filter={"room": {"timeline": {"limit": 3}}}))["rooms"]["join"][room]
    assert bodies(section["timeline"]["events"]) == ["m0", "m1", "m2"]
    assert section["timeline"]["limited"] is False


async def test_a_room_joined_since_the_token_comes_with_its_history(hs: Matrix) -> None:
    """A client that sees a join in an incremental sync must be able to scroll back to the
    room's creation (matrix-js-sdk stops paginating when the timeline is not limited)."""
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", name="History")
    await alice.send(room, "before bob")
    since = (await bob.sync())["next_batch"]
    await bob.join(room)
    section = (await bob.sync(since))["rooms"]["join"][room]
    assert "before bob" in bodies(section["timeline"]["events"])
    await bob.send(room, "after bob")
    for _ in range(30):  # an incremental sync with more than the limit is limited and paginates
        await alice.send(room, "filler")
    since = (await bob.sync())["next_batch"]
    await bob.leave(room)
    await bob.join(room)
    section = (await bob.sync(since))["rooms"]["join"][room]
    assert section["timeline"]["limited"] is True
    older = await bob.messages(room, "b", **{"from": section["timeline"]["prev_batch"], "limit": 100})
    assert "m.room.create" in [e["type"] for e in older["chunk"]]


async def test_a_gap_wider_than_the_incremental_scan_keeps_every_room_exact(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    """More events in the gap than one incremental scan reads (a busy room drowned a quiet
    one): the quiet room is still there, with its newest events, `limited`, a `prev_batch`
    that continues exactly before them, and (lazy loading) its senders' members."""
    scan = 60
    hs = await start_hs(attrs.evolve(hs_config, limits=LimitsConfig(incremental_sync_scan=scan)))
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    quiet = await alice.create_room(preset="public_chat", name="Quiet")
    busy = await alice.create_room(preset="public_chat", name="Busy")
    for user in (bob, carol):
        await user.join(quiet)
    await bob.join(busy)
    since = (await bob.sync())["next_batch"]
    for n in range(12):
        await (carol if n % 2 else alice).send(quiet, f"q{n}")
    for start in range(0, scan + 10, 35):
        await asyncio.gather(*(alice.send(busy, f"b{n}") for n in range(start, start + 35)))
    lazy = {"room": {"timeline": {"limit": 5}, "state": {"lazy_load_members": True}}}
    sync = await bob.sync(since, filter=lazy)
    section = sync["rooms"]["join"][quiet]
    assert bodies(section["timeline"]["events"]) == ["q7", "q8", "q9", "q10", "q11"]
    assert section["timeline"]["limited"] is True
    older = await bob.messages(quiet, "b", **{"from": section["timeline"]["prev_batch"], "limit": 1})
    assert bodies(older["chunk"]) == ["q6"]
    members = {k for k in state_of(sync, quiet) if k[0] == "m.room.member"}
    assert {("m.room.member", alice.user_id), ("m.room.member", carol.user_id)} <= members
    assert sync["rooms"]["join"][busy]["timeline"]["limited"] is True


async def test_private_history_sync_shows_state_not_the_history_before_joining(hs: Matrix) -> None:
    """History visibility "joined": a member who joins later gets, in an initial and in an
    incremental sync, a timeline that starts at their join, `state` that is the room as it
    was when they joined (topic changes made before included, as state not timeline), and
    with lazy loading the members of the senders they can see."""
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", name="Private history")
    await alice.put_state(room, "m.room.history_visibility", {"history_visibility": "joined"})
    await alice.put_state(room, "m.room.topic", {"topic": "set before bob"})
    for n in range(3):
        await alice.send(room, f"secret{n}")
    since = (await bob.sync())["next_batch"]
    await bob.join(room)
    await alice.send(room, "hello bob")
    for sync in (await bob.sync(since), await bob.sync()):
        section = sync["rooms"]["join"][room]
        events = section["timeline"]["events"]
        assert [e["type"] for e in events][:1] == ["m.room.member"] and events[0]["state_key"] == bob.user_id
        assert bodies(events) == ["hello bob"]
        state = state_of(sync, room)
        assert state[("m.room.topic", "")]["content"] == {"topic": "set before bob"}
        assert state[("m.room.history_visibility", "")]["content"] == {"history_visibility": "joined"}
        assert ("m.room.member", bob.user_id) not in state  # the join is in the timeline
        assert not any("secret" in str(e.get("content")) for e in section["state"]["events"])
    older = await bob.messages(room, "b", **{"from": section["timeline"]["prev_batch"], "limit": 50})
    assert not [b for b in bodies(older["chunk"]) if b.startswith("secret")]
    lazy = {"room": {"state": {"lazy_load_members": True}}}
    for sync in (await bob.sync(since, filter=lazy), await bob.sync(filter=lazy)):
        assert ("m.room.member", alice.user_id) in state_of(sync, room)
