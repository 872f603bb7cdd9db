"""Relations, threads, bundled aggregations, /context and /timestamp_to_event (spec:
"Forming relationships between events", "Threading", "Event replacements")."""

from __future__ import annotations

from typing import Any

from tests.client_api.test_sync import chat
from tests.helpers import Matrix, User, assert_error, q, timeline

V1 = "/_matrix/client/v1"


def edit(target: str, body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": f"* {body}", "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}}


def reply_in_thread(root: str, body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}}


def reference(target: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": "see", "m.relates_to": {"rel_type": "m.reference", "event_id": target}}


async def relations(user: User, room: str, event_id: str, tail: str = "", **params: Any) -> Any:
    return await user.get(f"{V1}/rooms/{q(room)}/relations/{q(event_id)}{tail}", params=params)


async def test_relations_list_filter_and_paginate(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    root = await alice.send(room, "root")
    t1 = await bob.send(room, reply_in_thread(root, "one"))
    t2 = await alice.send(room, reply_in_thread(root, "two"))
    ref = await bob.send(room, reference(root))
    await alice.send(room, "unrelated")

    got = await relations(bob, room, root)
    assert [e["event_id"] for e in got["chunk"]] == [ref, t2, t1]  # newest first by default
    assert [e["event_id"] for e in (await relations(bob, room, root, dir="f"))["chunk"]] == [t1, t2, ref]
    assert [e["event_id"] for e in (await relations(bob, room, root, "/m.thread"))["chunk"]] == [t2, t1]
    only = await relations(bob, room, root, "/m.thread/m.room.message")
    assert [e["event_id"] for e in only["chunk"]] == [t2, t1]
    assert (await relations(bob, room, root, "/m.thread/m.reaction"))["chunk"] == []

    first = await relations(bob, room, root, limit=2)
    assert [e["event_id"] for e in first["chunk"]] == [ref, t2]
    second = await relations(bob, room, root, limit=2, **{"from": first["next_batch"]})
    assert [e["event_id"] for e in second["chunk"]] == [t1] and "next_batch" not in second

    assert_error(await bob.get(f"{V1}/rooms/{q(room)}/relations/{q(root)}", params={"dir": "x"}, expect=400),
                 "M_INVALID_PARAM")
    assert_error(await bob.get(f"{V1}/rooms/{q(room)}/relations/{q('$missing')}", expect=404), "M_NOT_FOUND")
    outsider = await hs.register("eve")
    await outsider.get(f"{V1}/rooms/{q(room)}/relations/{q(root)}", expect=403)


async def test_recurse_follows_relations_of_relations(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    root = await alice.send(room, "root")
    reply = await bob.send(room, reply_in_thread(root, "reply"))
    fixed = await bob.send(room, edit(reply, "reply, fixed"))
    flat = await relations(alice, room, root)
    assert [e["event_id"] for e in flat["chunk"]] == [reply]
    deep = await relations(alice, room, root, recurse="true")
    assert [e["event_id"] for e in deep["chunk"]] == [fixed, reply]
    assert deep["recursion_depth"] >= 2


async def test_bundled_edit_thread_and_references(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    root = await alice.send(room, "typo")
    await bob.send(room, edit(root, "by someone else"))  # not the sender: not a valid edit
    first = await alice.send(room, edit(root, "first fix"))
    latest = await alice.send(room, edit(root, "second fix"))
    await bob.send(room, reply_in_thread(root, "in thread"))
    last_reply = await bob.send(room, reply_in_thread(root, "again"))
    ref = await bob.send(room, reference(root))

    def check(event: dict[str, Any], viewer: User) -> None:
        rel = event["unsigned"]["m.relations"]
        assert rel["m.replace"]["event_id"] == latest
        assert rel["m.replace"]["content"]["m.new_content"]["body"] == "second fix"
        assert rel["m.thread"]["count"] == 2 and rel["m.thread"]["latest_event"]["event_id"] == last_reply
        assert rel["m.thread"]["current_user_participated"] is True  # alice sent the root, bob replied
        assert rel["m.reference"] == {"chunk": [{"event_id": ref}]}

    for viewer in (alice, bob):
        check(await viewer.get(f"/rooms/{q(room)}/event/{q(root)}"), viewer)
        chunk = (await viewer.messages(room, limit=50))["chunk"]
        check(next(e for e in chunk if e["event_id"] == root), viewer)
        sync = await viewer.sync(filter={"room": {"timeline": {"limit": 50}}})
        check(next(e for e in timeline(sync, room) if e["event_id"] == root), viewer)
        ctx = await viewer.get(f"/rooms/{q(room)}/context/{q(root)}")
        check(ctx["event"], viewer)

    # Redacting the newest edit brings back the previous one; a redacted reply leaves the thread.
    await alice.put(f"/rooms/{q(room)}/redact/{q(latest)}/r1", {})
    await bob.put(f"/rooms/{q(room)}/redact/{q(last_reply)}/r2", {})
    rel = (await bob.get(f"/rooms/{q(room)}/event/{q(root)}"))["unsigned"]["m.relations"]
    assert rel["m.replace"]["event_id"] == first
    assert rel["m.thread"]["count"] == 1
    assert last_reply not in [e["event_id"] for e in (await relations(bob, room, root))["chunk"]]


async def test_threads_list_with_include_and_pagination(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    carol = await hs.register("carol")
    await carol.join(room)
    a = await alice.send(room, "thread a")
    b = await carol.send(room, "thread b")
    c = await carol.send(room, "thread c")
    await alice.send(room, "no thread")
    await bob.send(room, reply_in_thread(a, "a1"))
    await bob.send(room, reply_in_thread(c, "c1"))
    await carol.send(room, reply_in_thread(b, "b1"))  # b is the most recently active

    path = f"{V1}/rooms/{q(room)}/threads"
    everything = await alice.get(path)
    assert [e["event_id"] for e in everything["chunk"]] == [b, c, a]
    assert everything["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"] == 1
    mine = await alice.get(path, params={"include": "participated"})
    assert [e["event_id"] for e in mine["chunk"]] == [a]  # alice sent a's root; she took no part in b or c
    bobs = await bob.get(path, params={"include": "participated"})
    assert [e["event_id"] for e in bobs["chunk"]] == [c, a]

    page = await alice.get(path, params={"limit": 2})
    assert [e["event_id"] for e in page["chunk"]] == [b, c]
    rest = await alice.get(path, params={"limit": 2, "from": page["next_batch"]})
    assert [e["event_id"] for e in rest["chunk"]] == [a]
    assert_error(await alice.get(path, params={"include": "some"}, expect=400), "M_INVALID_PARAM")


async def test_context_around_an_event(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    ids = [await alice.send(room, f"m{i}") for i in range(7)]
    ctx = await bob.get(f"/rooms/{q(room)}/context/{q(ids[3])}", params={"limit": 4})
    assert ctx["event"]["event_id"] == ids[3]
    assert [e["event_id"] for e in ctx["events_before"]] == [ids[2], ids[1]]
    assert [e["event_id"] for e in ctx["events_after"]] == [ids[4], ids[5]]
    state = {(e["type"], e["state_key"]) for e in ctx["state"]}
    assert ("m.room.create", "") in state and ("m.room.member", bob.user_id) in state
    # The tokens continue the timeline from either end.
    older = await bob.messages(room, "b", **{"from": ctx["start"], "limit": 1})
    assert [e["event_id"] for e in older["chunk"]] == [ids[0]]
    newer = await bob.messages(room, "f", **{"from": ctx["end"], "limit": 1})
    assert [e["event_id"] for e in newer["chunk"]] == [ids[6]]

    lazy = await bob.get(f"/rooms/{q(room)}/context/{q(ids[3])}",
                         params={"limit": 2, "filter": '{"lazy_load_members": true}'})
    members = {e["state_key"] for e in lazy["state"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id}
    assert_error(await bob.get(f"/rooms/{q(room)}/context/{q('$nope')}", expect=404), "M_NOT_FOUND")


async def test_timestamp_to_event(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    first = await alice.send(room, "first")
    ts = (await alice.get(f"/rooms/{q(room)}/event/{q(first)}"))["origin_server_ts"]
    path = f"{V1}/rooms/{q(room)}/timestamp_to_event"
    forwards = await bob.get(path, params={"ts": ts, "dir": "f"})
    assert forwards["origin_server_ts"] >= ts
    assert (await bob.get(path, params={"ts": ts + 10_000_000, "dir": "b"}))["origin_server_ts"] >= ts
    assert_error(await bob.get(path, params={"ts": 0, "dir": "b"}, expect=404), "M_NOT_FOUND")
    assert_error(await bob.get(path, params={"ts": ts, "dir": "sideways"}, expect=400), "M_INVALID_PARAM")
    assert_error(await bob.get(path, params={"dir": "f"}, expect=400), "M_MISSING_PARAM")
