"""End-to-end encryption plumbing: /keys/*, /sendToDevice and what /sync carries for them."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from homeserver.core.signing import SigningKey, generate_signing_key, sign_json
from tests.helpers import Matrix, User, assert_error, cross_signing_keys

ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]


def device_keys(user: User, key: SigningKey | None = None) -> tuple[dict[str, Any], SigningKey]:
    """The device's identity keys, self-signed with its ed25519 key as a client does."""
    key = key or generate_signing_key(user.device_id)
    unsigned = {
        "user_id": user.user_id, "device_id": user.device_id, "algorithms": ALGORITHMS,
        "keys": {f"ed25519:{user.device_id}": key.verify_key_base64, f"curve25519:{user.device_id}": "Y3VydmU"},
    }
    return sign_json(unsigned, user.user_id, key), key


def otks(user: User, key: SigningKey, *ids: str) -> dict[str, Any]:
    return {
        f"signed_curve25519:{i}": sign_json({"key": f"otk-{i}"}, user.user_id, key) for i in ids
    }


async def upload(user: User, **body: Any) -> dict[str, Any]:
    return await user.post("/keys/upload", body)


async def test_uploaded_device_keys_are_served_by_query(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    keys, _ = device_keys(alice)
    got = await upload(alice, device_keys=keys)
    assert got["one_time_key_counts"].get("signed_curve25519", 0) == 0
    answer = await bob.post("/keys/query", {"device_keys": {alice.user_id: []}})
    assert answer["device_keys"][alice.user_id] == {alice.device_id: keys}
    assert answer["failures"] == {}
    one = await bob.post("/keys/query", {"device_keys": {alice.user_id: [alice.device_id, "NOPE"]}})
    assert list(one["device_keys"][alice.user_id]) == [alice.device_id]


async def test_device_keys_must_be_self_signed_and_for_the_requesters_device(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    keys, _ = device_keys(alice)
    forged = {**keys, "keys": {**keys["keys"], f"curve25519:{alice.device_id}": "b3RoZXI"}}
    assert_error(await alice.post("/keys/upload", {"device_keys": forged}, expect=400), "M_INVALID_SIGNATURE")
    assert_error(await bob.post("/keys/upload", {"device_keys": keys}, expect=400), "M_INVALID_PARAM")
    assert_error(await alice.post("/keys/upload", {"device_keys": "keys"}, expect=400), "M_BAD_JSON")
    answer = await bob.post("/keys/query", {"device_keys": {alice.user_id: []}})
    assert answer["device_keys"][alice.user_id] == {}


async def test_claim_hands_out_each_one_time_key_once_then_the_fallback(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    keys, key = device_keys(alice)
    fallback = {"signed_curve25519:fb": sign_json({"key": "fallback", "fallback": True}, alice.user_id, key)}
    counts = await upload(alice, device_keys=keys, one_time_keys=otks(alice, key, "a", "b"), fallback_keys=fallback)
    assert counts["one_time_key_counts"]["signed_curve25519"] == 2
    want = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    claims = await asyncio.gather(bob.post("/keys/claim", want), carol.post("/keys/claim", want))
    got = [next(iter(c["one_time_keys"][alice.user_id][alice.device_id])) for c in claims]
    assert sorted(got) == ["signed_curve25519:a", "signed_curve25519:b"]
    third = await bob.post("/keys/claim", want)
    assert third["one_time_keys"][alice.user_id][alice.device_id] == fallback
    sync = await alice.sync()
    assert sync["device_one_time_keys_count"].get("signed_curve25519", 0) == 0
    assert sync["device_unused_fallback_key_types"] == []


async def test_sync_reports_one_time_key_counts_and_unused_fallback_keys(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    keys, key = device_keys(alice)
    fallback = {"signed_curve25519:fb": sign_json({"key": "fallback", "fallback": True}, alice.user_id, key)}
    await upload(alice, device_keys=keys, one_time_keys=otks(alice, key, "1", "2", "3"), fallback_keys=fallback)
    again = await upload(alice, one_time_keys=otks(alice, key, "3"))  # a retried upload adds nothing
    assert again["one_time_key_counts"]["signed_curve25519"] == 3
    sync = await alice.sync()
    assert sync["device_one_time_keys_count"]["signed_curve25519"] == 3
    assert sync["device_unused_fallback_key_types"] == ["signed_curve25519"]


async def test_to_device_messages_arrive_once_and_go_when_acknowledged(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    since = (await bob.sync())["next_batch"]
    body = {"messages": {bob.user_id: {bob.device_id: {"secret": 1}}}}
    await alice.put("/sendToDevice/m.test/txn1", body)
    await alice.put("/sendToDevice/m.test/txn1", body)  # retried: not delivered twice
    first = await bob.sync(since)
    assert first["to_device"]["events"] == [{"type": "m.test", "sender": alice.user_id, "content": {"secret": 1}}]
    replay = await bob.sync(since)  # the same since again: not yet acknowledged, so still there
    assert len(replay["to_device"]["events"]) == 1
    after = await bob.sync(first["next_batch"], timeout="0")
    assert after["to_device"]["events"] == []
    assert (await bob.sync(since))["to_device"]["events"] == []  # deleted once acknowledged


async def test_to_device_star_reaches_every_device_and_wakes_a_long_poll(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    phone = await hs.login_user(bob.user_id)
    since = (await phone.sync())["next_batch"]
    poll = asyncio.create_task(phone.sync(since, timeout="10000"))
    await asyncio.sleep(0.1)
    await alice.put("/sendToDevice/m.ping/t1", {"messages": {bob.user_id: {"*": {"n": 2}}}})
    woken = await poll
    assert [e["content"] for e in woken["to_device"]["events"]] == [{"n": 2}]
    assert [e["content"] for e in (await bob.sync())["to_device"]["events"]] == [{"n": 2}]


async def test_send_to_device_refuses_a_malformed_body(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    for bad in ({"messages": "x"}, {"messages": {bob.user_id: {"D": "not-an-object"}}}):
        assert_error(await alice.put("/sendToDevice/m.t/x1", bad, expect=400), "M_BAD_JSON")
    assert_error(await alice.put("/sendToDevice/m.t/x1", {}, expect=400), "M_MISSING_PARAM")
    assert (await bob.sync())["to_device"]["events"] == []


async def test_device_lists_show_key_changes_of_users_sharing_a_room(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    since = (await alice.sync())["next_batch"]
    await upload(bob, device_keys=device_keys(bob)[0])
    await upload(carol, device_keys=device_keys(carol)[0])  # shares no room with alice
    sync = await alice.sync(since)
    assert sync["device_lists"]["changed"] == [bob.user_id]
    changes = await alice.get("/keys/changes", params={"from": since, "to": sync["next_batch"]})
    assert changes["changed"] == [bob.user_id]


async def test_device_lists_show_users_who_newly_share_a_room_and_who_left(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    since = (await alice.sync())["next_batch"]
    await bob.join(room)
    joined = await alice.sync(since)
    assert bob.user_id in joined["device_lists"]["changed"]
    await bob.leave(room)
    left = await alice.sync(joined["next_batch"])
    assert left["device_lists"]["left"] == [bob.user_id]


async def test_cross_signing_keys_are_served_and_signatures_stored(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    keys, _ = device_keys(alice)
    await upload(alice, device_keys=keys)
    master_key, ssk_key = generate_signing_key("master"), generate_signing_key("ssk")
    master = {"user_id": alice.user_id, "usage": ["master"],
              "keys": {f"ed25519:{master_key.verify_key_base64}": master_key.verify_key_base64}}
    ssk_unsigned = {"user_id": alice.user_id, "usage": ["self_signing"],
                    "keys": {f"ed25519:{ssk_key.verify_key_base64}": ssk_key.verify_key_base64}}
    master_signer = SigningKey(master_key.verify_key_base64, master_key.seed)
    ssk = sign_json(ssk_unsigned, alice.user_id, master_signer)
    await alice.post("/keys/device_signing/upload", {"master_key": master, "self_signing_key": ssk})
    answer = await bob.post("/keys/query", {"device_keys": {alice.user_id: []}})
    assert answer["master_keys"][alice.user_id] == master
    assert answer["self_signing_keys"][alice.user_id] == ssk
    assert alice.user_id not in answer.get("user_signing_keys", {})

    ssk_signer = SigningKey(ssk_key.verify_key_base64, ssk_key.seed)
    signed_device = sign_json(keys, alice.user_id, ssk_signer)
    got = await alice.post("/keys/signatures/upload", {alice.user_id: {alice.device_id: signed_device}})
    assert got["failures"] == {}
    served = (await bob.post("/keys/query", {"device_keys": {alice.user_id: []}}))["device_keys"]
    assert served[alice.user_id][alice.device_id]["signatures"][alice.user_id] == signed_device["signatures"][alice.user_id]

    # Replacing the master key needs the password (user-interactive auth).
    again = await alice.post("/keys/device_signing/upload", {"master_key": master}, expect=401)
    assert again["flows"] == [{"stages": ["m.login.password"]}]
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
            "password": alice.password, "session": again["session"]}
    await alice.post("/keys/device_signing/upload", {"master_key": master, "auth": auth})


async def test_a_bad_signature_upload_is_a_failure_and_changes_nothing(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    keys, _ = device_keys(alice)
    await upload(alice, device_keys=keys)
    forged = sign_json(keys, alice.user_id, generate_signing_key("nope"))
    got = await alice.post("/keys/signatures/upload", {alice.user_id: {alice.device_id: forged}})
    assert alice.device_id in got["failures"][alice.user_id]
    served = (await bob.post("/keys/query", {"device_keys": {alice.user_id: []}}))["device_keys"]
    assert served[alice.user_id][alice.device_id] == keys


async def test_keys_changes_needs_both_tokens(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    assert_error(await alice.get("/keys/changes", params={"from": "s1"}, expect=400), "M_MISSING_PARAM")
    assert_error(await alice.get("/keys/changes", params={"from": "x", "to": "y"}, expect=400), "M_INVALID_PARAM")


async def test_a_sync_token_from_before_the_e2ee_streams_still_works(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    await alice.put("/sendToDevice/m.test/old", {"messages": {bob.user_id: {bob.device_id: {"k": 1}}}})
    old = "s" + "_".join((await bob.sync())["next_batch"][1:].split("_")[:5])  # events..presence only
    got = await bob.sync(old, timeout="0")
    assert [e["content"] for e in got["to_device"]["events"]] == [{"k": 1}]


async def test_a_logged_out_device_loses_its_keys_and_room_mates_hear_of_it(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    phone = await hs.login_user(bob.user_id)
    await upload(phone, device_keys=device_keys(phone)[0])
    since = (await alice.sync())["next_batch"]
    await phone.post("/logout")
    served = (await alice.post("/keys/query", {"device_keys": {bob.user_id: []}}))["device_keys"]
    assert phone.device_id not in served[bob.user_id]
    assert (await alice.sync(since))["device_lists"]["changed"] == [bob.user_id]


async def test_query_and_claim_refuse_a_malformed_body(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    bad_bodies = [
        ("/keys/query", {"device_keys": {alice.user_id: "DEV"}}),
        ("/keys/query", {"device_keys": {alice.user_id: []}, "timeout": "soon"}),
        ("/keys/query", {"device_keys": ["@a:x"]}),
        ("/keys/claim", {"one_time_keys": {alice.user_id: {"DEV": 5}}}),
        ("/keys/claim", {"one_time_keys": {alice.user_id: "DEV"}}),
    ]
    for path, body in bad_bodies:
        assert_error(await alice.post(path, body, expect=400), "M_BAD_JSON")


async def test_a_device_signing_its_owners_master_key_is_stored_and_served(hs: Matrix) -> None:
    """Spec "Cross-signing": a device signs its user's master key (Element does this when it
    bootstraps cross-signing); the signature is checked with the device's ed25519 key."""
    alice, bob = await hs.users("alice", "bob")
    keys, device_key = device_keys(alice)
    await upload(alice, device_keys=keys)
    master_key = generate_signing_key("master")
    master = {"user_id": alice.user_id, "usage": ["master"],
              "keys": {f"ed25519:{master_key.verify_key_base64}": master_key.verify_key_base64}}
    await alice.post("/keys/device_signing/upload", {"master_key": master})
    signed = sign_json(master, alice.user_id, device_key)
    got = await alice.post("/keys/signatures/upload", {alice.user_id: {master_key.verify_key_base64: signed}})
    assert got["failures"] == {}
    served = await bob.post("/keys/query", {"device_keys": {alice.user_id: []}})
    assert served["master_keys"][alice.user_id]["signatures"][alice.user_id] == signed["signatures"][alice.user_id]

    forged = sign_json(master, alice.user_id, generate_signing_key(alice.device_id))
    got = await alice.post("/keys/signatures/upload", {alice.user_id: {master_key.verify_key_base64: forged}})
    assert master_key.verify_key_base64 in got["failures"][alice.user_id]
    again = await bob.post("/keys/query", {"device_keys": {alice.user_id: []}})
    assert again["master_keys"] == served["master_keys"]


async def test_keys_changes_lists_users_who_no_longer_share_a_room(hs: Matrix) -> None:
    """Spec GET /keys/changes: `left` are users who stopped sharing any room with us."""
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(invite=[bob.user_id])
    await bob.join(room)
    before = (await alice.sync())["next_batch"]
    await bob.leave(room)
    after = (await alice.sync(before))["next_batch"]
    got = await alice.get("/keys/changes", params={"from": before, "to": after})
    assert got == {"changed": [], "left": [bob.user_id]}
    nothing = await alice.get("/keys/changes", params={"from": after, "to": after})
    assert nothing == {"changed": [], "left": []}


async def test_keys_changes_lists_the_members_of_a_room_we_left(hs: Matrix) -> None:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    room = await bob.create_room(invite=[alice.user_id, carol.user_id])
    await alice.join(room)
    await carol.join(room)
    kept = await bob.create_room(invite=[alice.user_id])
    await alice.join(kept)
    before = (await alice.sync())["next_batch"]
    await alice.leave(room)
    after = (await alice.sync(before))["next_batch"]
    got = await alice.get("/keys/changes", params={"from": before, "to": after})
    assert got["left"] == [carol.user_id]  # bob still shares `kept`


async def test_sync_counts_follow_claims_and_uploads_between_syncs(hs: Matrix) -> None:
    """A client replenishes its one-time keys from these counts: each /sync must show what
    claims and uploads did since the previous one (the counts are kept between syncs)."""
    alice, bob = await hs.users("alice", "bob")
    keys, key = device_keys(alice)
    await upload(alice, device_keys=keys, one_time_keys=otks(alice, key, "a", "b"))
    since = (await alice.sync())["next_batch"]
    assert (await alice.sync(since, timeout="0"))["device_one_time_keys_count"]["signed_curve25519"] == 2
    await bob.post("/keys/claim", {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}})
    assert (await alice.sync(since, timeout="0"))["device_one_time_keys_count"]["signed_curve25519"] == 1
    fallback = {"signed_curve25519:fb": sign_json({"key": "fb", "fallback": True}, alice.user_id, key)}
    await upload(alice, one_time_keys=otks(alice, key, "c", "d"), fallback_keys=fallback)
    later = await alice.sync(since, timeout="0")
    assert later["device_one_time_keys_count"]["signed_curve25519"] == 3
    assert later["device_unused_fallback_key_types"] == ["signed_curve25519"]


@attrs.frozen
class LeftCase:
    """Alice watches bob's devices. Rooms A and B are carol's public rooms; `start` says
    who is in each, `during` happens between the tokens, `after` after the second one."""

    start: dict[str, tuple[str, ...]]
    during: tuple[tuple[str, str, str], ...]  # (user, "join" | "leave", room)
    left: list[str]
    after: tuple[tuple[str, str, str], ...] = ()


LEFT_CASES = {
    "bob leaves the only shared room": LeftCase(
        {"A": ("alice", "bob")}, (("bob", "leave", "A"),), ["bob"]),
    "bob leaves one room but still shares another": LeftCase(
        {"A": ("alice", "bob"), "B": ("alice", "bob")}, (("bob", "leave", "A"),), []),
    "alice leaves one room but still shares another": LeftCase(
        {"A": ("alice", "bob"), "B": ("alice", "bob")}, (("alice", "leave", "A"),), []),
    "alice leaves the only shared room": LeftCase(
        {"A": ("alice", "bob"), "B": ("alice",)}, (("alice", "leave", "A"),), ["bob"]),
    "bob leaves and joins another of alice's rooms": LeftCase(
        {"A": ("alice", "bob"), "B": ("alice",)}, (("bob", "leave", "A"), ("bob", "join", "B")), []),
    "alice leaves and joins another room of bob's": LeftCase(
        {"A": ("alice", "bob"), "B": ("bob",)}, (("alice", "leave", "A"), ("alice", "join", "B")), []),
    "bob leaves and rejoins the same room": LeftCase(
        {"A": ("alice", "bob")}, (("bob", "leave", "A"), ("bob", "join", "A")), []),
    "bob rejoins only after the range": LeftCase(
        {"A": ("alice", "bob")}, (("bob", "leave", "A"),), ["bob"], after=(("bob", "join", "A"),)),
    "bob still shared a room at the range's end, left it after": LeftCase(
        {"A": ("alice", "bob"), "B": ("alice", "bob")}, (("bob", "leave", "A"),), [],
        after=(("bob", "leave", "B"),)),
}


@pytest.mark.parametrize("case", LEFT_CASES.values(), ids=LEFT_CASES.keys())
async def test_device_lists_left_follows_membership_in_the_range(hs: Matrix, case: LeftCase) -> None:
    """Spec "Tracking the device list for a user": `left` (of /sync and of /keys/changes)
    are users who share no room with us any more as of the later token, however they got
    there; one still in another shared room, or back in one, is not left."""
    users = dict(zip(("alice", "bob", "carol"), await hs.users("alice", "bob", "carol"), strict=True))
    rooms = {name: await users["carol"].create_room(preset="public_chat") for name in ("A", "B")}
    for name, members in case.start.items():
        for who in members:
            await users[who].join(rooms[name])

    async def act(steps: tuple[tuple[str, str, str], ...]) -> None:
        for who, verb, room in steps:
            await (users[who].join(rooms[room]) if verb == "join" else users[who].leave(rooms[room]))

    alice = users["alice"]
    before = (await alice.sync())["next_batch"]
    await act(case.during)
    synced = await alice.sync(before)
    want = [users[u].user_id for u in case.left]
    assert synced["device_lists"]["left"] == want
    await act(case.after)
    got = await alice.get("/keys/changes", params={"from": before, "to": synced["next_batch"]})
    assert got["left"] == want


async def test_signing_another_users_master_key_is_seen_by_the_signer_only(hs: Matrix) -> None:
    """Spec "Cross-signing": alice's user-signing key signs bob's master key; the signature
    is stored and served in /keys/query to alice alone (the dotted lines of the spec's
    diagram), never to bob or to carol."""
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    mine, theirs = cross_signing_keys(alice.user_id), cross_signing_keys(bob.user_id)
    await alice.post("/keys/device_signing/upload", mine.upload_body())
    await bob.post("/keys/device_signing/upload", theirs.upload_body())
    signed = sign_json(theirs.master, alice.user_id, mine.usk)
    got = await alice.post("/keys/signatures/upload", {bob.user_id: {theirs.master_id: signed}})
    assert got["failures"] == {}

    seen = await alice.post("/keys/query", {"device_keys": {bob.user_id: []}})
    assert seen["master_keys"][bob.user_id]["signatures"][alice.user_id] == signed["signatures"][alice.user_id]
    for other in (bob, carol):
        plain = await other.post("/keys/query", {"device_keys": {bob.user_id: []}})
        assert plain["master_keys"][bob.user_id] == theirs.master


async def test_impossible_signatures_of_another_user_are_failures(hs: Matrix) -> None:
    """Spec /keys/signatures/upload: each bad signature is a failure (M_INVALID_SIGNATURE
    when invalid) and changes nothing; the good one in the same request is stored."""
    alice, bob = await hs.users("alice", "bob")
    mine, theirs = cross_signing_keys(alice.user_id), cross_signing_keys(bob.user_id)
    await alice.post("/keys/device_signing/upload", mine.upload_body())
    await bob.post("/keys/device_signing/upload", theirs.upload_body())
    bobs_device, _ = device_keys(bob)
    await upload(bob, device_keys=bobs_device)
    wrong_key = sign_json(theirs.master, alice.user_id, SigningKey(mine.master_id, b"\x01" * 32))
    tampered = sign_json({**theirs.master, "usage": ["master", "extra"]}, alice.user_id, mine.usk)
    got = await alice.post("/keys/signatures/upload", {bob.user_id: {
        bob.device_id: sign_json(bobs_device, alice.user_id, mine.usk),  # another user's device
        theirs.master_id: wrong_key,  # not alice's user-signing key
    }})
    assert {k: v["errcode"] for k, v in got["failures"][bob.user_id].items()} == {
        bob.device_id: "M_INVALID_SIGNATURE", theirs.master_id: "M_INVALID_SIGNATURE",
    }
    got = await alice.post("/keys/signatures/upload", {bob.user_id: {theirs.master_id: tampered}})
    assert got["failures"][bob.user_id][theirs.master_id]["errcode"] == "M_INVALID_SIGNATURE"
    seen = await alice.post("/keys/query", {"device_keys": {bob.user_id: []}})
    assert seen["master_keys"][bob.user_id] == theirs.master
    assert seen["device_keys"][bob.user_id][bob.device_id] == bobs_device
