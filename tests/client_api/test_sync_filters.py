"""Sync filters applied end to end (spec: "Filtering", "Lazy-loading room members")."""

from __future__ import annotations

from typing import Any

from tests.client_api.test_sync import chat, state_of
from tests.helpers import Matrix, assert_error, q, timeline


async def test_timeline_type_globs_senders_and_contains_url(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.send(room, "from alice")
    await bob.send(room, "from bob")
    await alice.send(room, {"msgtype": "m.image", "body": "cat.png", "url": "mxc://hs.test/cat"})
    await alice.send(room, {"k": 1}, type="org.example.custom")

    def types_and_bodies(flt: dict[str, Any]) -> list[Any]:
        return [(e["type"], e["content"].get("body")) for e in timeline(sync_of[str(flt)], room)]

    sync_of: dict[str, Any] = {}
    filters = [
        {"types": ["org.example.*"]},
        {"types": ["m.room.message"], "not_senders": [alice.user_id]},
        {"types": ["m.room.mess*"], "senders": [alice.user_id]},
        {"types": ["m.room.message"], "contains_url": True},
        {"types": ["m.room.message"], "contains_url": False, "senders": [bob.user_id]},
        {"types": ["m.room.messag?"]},
    ]
    for flt in filters:
        sync_of[str(flt)] = await alice.sync(filter={"room": {"timeline": {**flt, "limit": 20}}})
    assert types_and_bodies(filters[0]) == [("org.example.custom", None)]
    assert types_and_bodies(filters[1]) == [("m.room.message", "from bob")]
    assert types_and_bodies(filters[2]) == [("m.room.message", "from alice"), ("m.room.message", "cat.png")]
    assert types_and_bodies(filters[3]) == [("m.room.message", "cat.png")]
    assert types_and_bodies(filters[4]) == [("m.room.message", "from bob")]
    assert types_and_bodies(filters[5]) == []


async def test_per_section_room_lists(hs: Matrix) -> None:
    alice, _, one = await chat(hs)
    two = await alice.create_room(name="Two")
    await alice.send(one, "in one")
    await alice.send(two, "in two")
    sync = await alice.sync(filter={"room": {"timeline": {"not_rooms": [one], "types": ["m.room.message"]}}})
    assert timeline(sync, one) == [] and [e["content"]["body"] for e in timeline(sync, two)] == ["in two"]
    sync = await alice.sync(filter={"room": {"state": {"rooms": [two]}, "timeline": {"limit": 1}}})
    assert sync["rooms"]["join"][one]["state"]["events"] == [] and sync["rooms"]["join"][two]["state"]["events"]


async def test_event_fields(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    await alice.send(room, "trimmed")
    sync = await alice.sync(filter={"event_fields": ["type", "content.body"], "room": {"timeline": {"limit": 1}}})
    assert timeline(sync, room) == [{"type": "m.room.message", "content": {"body": "trimmed"}}]
    assert all(set(e) <= {"type", "content"} for e in sync["rooms"]["join"][room]["state"]["events"])


async def test_account_data_presence_and_ephemeral_filters(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    for kind in ("org.example.a", "org.example.b", "com.other.c"):
        await alice.put(f"/user/{q(alice.user_id)}/account_data/{kind}", {"x": 1})
    await alice.put(f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/org.example.r", {"x": 1})
    await alice.put(f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/com.other.r", {"x": 1})
    event_id = await bob.send(room, "read me")
    await alice.post(f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {})
    await bob.put(f"/rooms/{q(room)}/typing/{q(bob.user_id)}", {"typing": True, "timeout": 30000})

    unfiltered = await alice.sync()
    assert {e["type"] for e in unfiltered["rooms"]["join"][room]["ephemeral"]["events"]} == {"m.typing", "m.receipt"}
    assert unfiltered["presence"]["events"]

    sync = await alice.sync(filter={
        "account_data": {"types": ["org.example.*"], "limit": 1},
        "presence": {"not_types": ["*"]},
        "room": {"ephemeral": {"types": ["m.receipt"]}, "account_data": {"not_types": ["com.*"]}},
    })
    assert [e["type"] for e in sync["account_data"]["events"]] in (["org.example.a"], ["org.example.b"])
    assert sync["presence"]["events"] == []
    section = sync["rooms"]["join"][room]
    assert [e["type"] for e in section["ephemeral"]["events"]] == ["m.receipt"]
    assert [e["type"] for e in section["account_data"]["events"]] == ["org.example.r"]


async def test_lazy_loading_members(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    carol = await hs.register("carol")
    await carol.join(room)
    await carol.send(room, "carol speaks")
    await bob.send(room, "bob speaks")
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}
    initial = await alice.sync(filter=lazy)
    members = {k[1] for k in state_of(initial, room) if k[0] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}  # bob sent the one timeline event; carol is left out
    # Incremental: carol's membership did not change, but she speaks, so her member event comes along.
    await carol.send(room, "carol again")
    later = await alice.sync(initial["next_batch"], filter=lazy)
    members = {k[1]: e for k, e in state_of(later, room).items() if k[0] == "m.room.member"}
    assert set(members) == {carol.user_id}
    assert members[carol.user_id]["content"]["membership"] == "join"
    # Without lazy loading, every member is in the initial state.
    full = await alice.sync(filter={"room": {"timeline": {"limit": 1}}})
    assert {k[1] for k in state_of(full, room) if k[0] == "m.room.member"} == {alice.user_id, bob.user_id, carol.user_id}


async def test_malformed_filters_change_nothing(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    for bad in (
        {"event_fields": "type"}, {"room": {"timeline": {"contains_url": "yes"}}}, {"event_format": "xml"},
        {"room": {"rooms": ["not a room"]}}, {"room": {"timeline": {"senders": ["alice"]}}},
        {"room": {"state": {"not_rooms": ["#alias:hs.test"]}}}, {"presence": {"not_senders": ["!r:hs.test"]}},
        {"room": {"timeline": {"limit": "ten"}}}, {"room": {"include_leave": "yes"}},
    ):
        assert_error(await alice.post(f"/user/{q(alice.user_id)}/filter", bad, expect=400), "M_BAD_JSON")
        await alice.get("/sync", params={"filter": str(bad).replace("'", '"')}, expect=400)
    first = await alice.post(f"/user/{q(alice.user_id)}/filter", {})
    assert first["filter_id"] == "0"
