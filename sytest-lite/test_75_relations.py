"""Relations, threads, bundled aggregations, /context, /timestamp_to_event and sync filters."""

import json

from sltools import find_event, quote, timeline_events

V1 = "/_matrix/client/v1"


def _thread(root, body):
    return {"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}}


def _edit(target, body):
    return {"msgtype": "m.text", "body": "* " + body, "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}}


async def _send(user, room, content):
    return (await user.send_event(room, "m.room.message", content)).expect(200)["event_id"]


async def test_relations_and_threads(user, make_user):
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    root = await user.send_message(room, "root")
    r1 = await _send(bob, room, _thread(root, "one"))
    r2 = await _send(user, room, _thread(root, "two"))
    got = (await bob.get(f"{V1}/rooms/{quote(room)}/relations/{quote(root)}/m.thread")).expect(200)
    assert [e["event_id"] for e in got["chunk"]] == [r2, r1]
    page = (await bob.get(f"{V1}/rooms/{quote(room)}/relations/{quote(root)}", params={"limit": 1})).expect(200)
    assert [e["event_id"] for e in page["chunk"]] == [r2] and page.get("next_batch")
    rest = (await bob.get(f"{V1}/rooms/{quote(room)}/relations/{quote(root)}",
                          params={"limit": 1, "from": page["next_batch"]})).expect(200)
    assert [e["event_id"] for e in rest["chunk"]] == [r1]

    threads = (await bob.get(f"{V1}/rooms/{quote(room)}/threads")).expect(200)
    assert [e["event_id"] for e in threads["chunk"]] == [root]
    summary = threads["chunk"][0]["unsigned"]["m.relations"]["m.thread"]
    assert summary["count"] == 2 and summary["latest_event"]["event_id"] == r2
    assert summary["current_user_participated"] is True


async def test_edit_is_bundled(user):
    """Spec: the most recent replacement is bundled under unsigned.m.relations.m.replace."""
    room = await user.create_room()
    original = await user.send_message(room, "teh typo")
    fix = await _send(user, room, _edit(original, "the typo"))
    event = (await user.get(f"rooms/{quote(room)}/event/{quote(original)}")).expect(200)
    assert event["unsigned"]["m.relations"]["m.replace"]["event_id"] == fix
    chunk = (await user.messages(room, dir="b", limit=10)).expect(200)["chunk"]
    bundled = find_event(chunk, event_id=original)
    assert bundled["unsigned"]["m.relations"]["m.replace"]["event_id"] == fix


async def test_context(user):
    """SyTest: /context/ on joined room works."""
    room = await user.create_room()
    ids = [await user.send_message(room, f"m{i}") for i in range(5)]
    ctx = (await user.get(f"rooms/{quote(room)}/context/{quote(ids[2])}", params={"limit": 2})).expect(200)
    assert ctx["event"]["event_id"] == ids[2]
    assert [e["event_id"] for e in ctx["events_before"]] == [ids[1]]
    assert [e["event_id"] for e in ctx["events_after"]] == [ids[3]]
    assert isinstance(ctx["start"], str) and isinstance(ctx["end"], str)
    assert any(e["type"] == "m.room.create" for e in ctx["state"])


async def test_timestamp_to_event(user):
    room = await user.create_room()
    event_id = await user.send_message(room, "when")
    ts = (await user.get(f"rooms/{quote(room)}/event/{quote(event_id)}")).expect(200)["origin_server_ts"]
    got = (await user.get(f"{V1}/rooms/{quote(room)}/timestamp_to_event",
                          params={"ts": ts + 3_600_000, "dir": "b"})).expect(200)
    assert got["event_id"] == event_id and got["origin_server_ts"] == ts


async def test_sync_filter_globs_event_fields_and_lazy_members(user, make_user):
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    await user.send_message(room, "hello")
    (await user.send_event(room, "org.sytest.custom", {"k": 1})).expect(200)
    sync = await bob.sync(filter=json.dumps({"room": {"timeline": {"types": ["org.sytest.*"]}}}))
    assert [e["type"] for e in timeline_events(sync, room)] == ["org.sytest.custom"]
    sync = await bob.sync(filter={"event_fields": ["type", "content.body"],
                                  "room": {"timeline": {"types": ["m.room.message"], "limit": 1}}})
    assert timeline_events(sync, room) == [{"type": "m.room.message", "content": {"body": "hello"}}]
    lazy = await bob.sync(filter={"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}})
    state = lazy["rooms"]["join"][room]["state"]["events"]
    members = {e["state_key"] for e in state if e["type"] == "m.room.member"}
    assert user.user_id in members  # the sender of the one timeline event
    assert members <= {user.user_id, bob.user_id}
