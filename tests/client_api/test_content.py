"""Event content survives exactly, on every database: Unicode, case, spaces, numbers, bursts."""

from __future__ import annotations

import asyncio

from tests.helpers import Matrix, User, assert_error, bodies, q, timeline

TRICKY = [
    "plain ascii",
    "accents: héllo wörld ñ",
    "emoji outside the BMP: 🌍🚀👩‍👩‍👧",
    "CJK: 你好\uff0c世界",
    "RTL: مرحبا بالعالم",
    "escapes: \" \\ / \b \f \n \r \t",
    "control: \u0001\u001f and NUL \u0000 inside",
    "   leading and trailing spaces   ",
    "",
]


async def chat(hs: Matrix) -> tuple[User, User, str]:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    return alice, bob, room


async def test_unicode_content_round_trips_exactly(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    ids = [await alice.send(room, text) for text in TRICKY]
    for event_id, text in zip(ids, TRICKY, strict=True):
        assert (await bob.get(f"/rooms/{q(room)}/event/{q(event_id)}"))["content"]["body"] == text
    page = await bob.messages(room, "b", limit=len(TRICKY))
    assert bodies(page["chunk"]) == list(reversed(TRICKY))
    assert bodies(timeline(await bob.sync(filter={"room": {"timeline": {"limit": 20}}}), room)) == TRICKY


async def test_unicode_in_names_topics_and_profiles(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    await alice.put_state(room, "m.room.name", {"name": "Café 🌍 会议"})
    await bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bøb 🐝"})
    assert await bob.state(room, "m.room.name") == {"name": "Café 🌍 会议"}
    assert (await alice.get(f"/profile/{q(bob.user_id)}"))["displayname"] == "Bøb 🐝"
    joined = (await alice.get(f"/rooms/{q(room)}/joined_members"))["joined"]
    assert joined[bob.user_id]["display_name"] == "Bøb 🐝"


async def test_state_keys_and_types_are_case_and_space_sensitive(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    keys = ["key", "Key", "KEY", "key ", " key", "kéy", "ke\u0301y"]
    for n, key in enumerate(keys):
        await alice.put_state(room, "org.example.k", {"n": n}, key=key)
    for n, key in enumerate(keys):
        assert await alice.state(room, "org.example.k", key) == {"n": n}, repr(key)
    await alice.put_state(room, "org.example.T", {"upper": True})
    await alice.put_state(room, "org.example.t", {"upper": False})
    assert await alice.state(room, "org.example.T") == {"upper": True}
    assert await alice.state(room, "org.example.t") == {"upper": False}
    state = await alice.room_state(room)
    assert {k[1] for k in state if k[0] == "org.example.k"} == set(keys)


async def test_transaction_ids_are_case_sensitive(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    txns = ["abc", "ABC", "äbc", "abç"]
    ids = [await alice.send(room, f"via {t!r}", txn=t) for t in txns]
    assert len(set(ids)) == len(txns)
    assert len(bodies((await bob.messages(room, limit=10))["chunk"])) == len(txns)


async def test_trailing_spaces_in_ids_are_significant(hs: Matrix) -> None:
    # MariaDB's utf8mb4_bin is PAD SPACE ('abc' = 'abc '); tables must use a NO PAD collation
    alice, bob, room = await chat(hs)
    first = await alice.send(room, "first", txn="abc")
    second = await alice.send(room, "second", txn="abc ")
    assert first != second
    assert bodies((await bob.messages(room, limit=10))["chunk"]) == ["second", "first"]
    phone = await hs.login_user("alice", device_id="PHONE")
    spaced = await hs.login_user("alice", device_id="PHONE ")
    assert (await phone.get("/account/whoami"))["device_id"] == "PHONE"
    assert (await spaced.get("/account/whoami"))["device_id"] == "PHONE "


async def test_numbers_outside_the_canonical_json_range_are_refused(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    for bad in ('{"n": 9007199254740992}', '{"n": -9007199254740992}', '{"n": 1.5}', '{"n": NaN}'):
        r = await hs.raw("PUT", f"/rooms/{q(room)}/send/org.example.num/{alice.next_txn()}",
                         token=alice.token, data=bad, headers={"Content-Type": "application/json"})
        assert r.status == 400, (bad, r.text)
        assert r.json["errcode"] in ("M_BAD_JSON", "M_NOT_JSON"), r.json
    edge = {"max": 2**53 - 1, "min": -(2**53 - 1), "zero": 0, "nested": {"list": [1, [2, {"x": None}]]}}
    event_id = await alice.send(room, edge, type="org.example.num")
    assert (await bob.get(f"/rooms/{q(room)}/event/{q(event_id)}"))["content"] == edge
    chunk = (await bob.messages(room, limit=10))["chunk"]
    assert [e["type"] for e in chunk].count("org.example.num") == 1


async def test_deeply_nested_content_is_refused_cleanly(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    deep = "[" * 30_000 + "]" * 30_000  # under the 64 KiB event limit, far too deep to parse
    r = await hs.raw("PUT", f"/rooms/{q(room)}/send/org.example.deep/t", token=alice.token,
                     data='{"x": ' + deep + "}", headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert r.json["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")


async def test_concurrent_senders_get_one_consistent_order(hs: Matrix) -> None:
    alice, bob, room = await chat(hs)
    carol = await hs.register("carol")
    await carol.join(room)
    since = (await bob.sync())["next_batch"]
    sends = [user.send(room, f"{user.user_id[1]}{n}") for n in range(10) for user in (alice, bob, carol)]
    ids = await asyncio.gather(*sends)
    assert len(set(ids)) == 30

    forward = (await bob.messages(room, "f", limit=100))["chunk"]
    order = [e["event_id"] for e in forward if e["type"] == "m.room.message"]
    assert sorted(order) == sorted(ids)
    backward = (await alice.messages(room, "b", limit=100))["chunk"]
    assert [e["event_id"] for e in backward if e["type"] == "m.room.message"] == order[::-1]
    synced = timeline(await carol.sync(since, filter={"room": {"timeline": {"limit": 100}}}), room)
    assert [e["event_id"] for e in synced] == order


async def test_concurrent_state_changes_leave_one_winner_everywhere(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    await asyncio.gather(*(alice.put_state(room, "m.room.topic", {"topic": f"t{n}"}) for n in range(10)))
    current = await alice.state(room, "m.room.topic")
    last = [e for e in (await alice.messages(room, "b", limit=1, filter={"types": ["m.room.topic"]}))["chunk"]]
    assert last[0]["content"] == current
    state = await alice.room_state(room)
    assert state[("m.room.topic", "")]["content"] == current


async def test_event_type_and_state_key_limits(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    err = await alice.put_state(room, "org.example.k", {}, key="k" * 300, expect=400)
    assert_error(err, "M_BAD_JSON")
    err = await alice.send(room, {"a": 1}, type="t" * 300, expect=400)
    assert err["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM")
    await alice.put_state(room, "org.example.k", {"ok": True}, key="k" * 200)
    assert await alice.state(room, "org.example.k", "k" * 200) == {"ok": True}
