"""End-to-end encryption plumbing: /keys/upload, /keys/query, /keys/claim, /keys/changes,
/sendToDevice and what /sync carries for them (spec: "End-to-End Encryption",
"Send-to-Device messaging"). The server only stores and routes; keys are signed here as a
client would sign them."""

import base64

import canonicaljson
import nacl.signing
from sltools import quote

ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _sign(obj: dict, user_id: str, key: nacl.signing.SigningKey, key_id: str) -> dict:
    signable = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    sig = _b64(key.sign(canonicaljson.encode_canonical_json(signable)).signature)
    return {**obj, "signatures": {user_id: {key_id: sig}}}


def _device_keys(user) -> tuple[dict, nacl.signing.SigningKey]:
    key = nacl.signing.SigningKey.generate()
    key_id = f"ed25519:{user.device_id}"
    keys = {
        "user_id": user.user_id, "device_id": user.device_id, "algorithms": ALGORITHMS,
        "keys": {key_id: _b64(bytes(key.verify_key)), f"curve25519:{user.device_id}": _b64(b"c" * 32)},
    }
    return _sign(keys, user.user_id, key, key_id), key


def _otks(user, key, *names: str) -> dict:
    return {
        f"signed_curve25519:{n}": _sign({"key": _b64(n.encode() * 8)}, user.user_id, key,
                                        f"ed25519:{user.device_id}")
        for n in names
    }


async def test_uploaded_device_keys_are_returned_by_query(user, make_user):
    """SyTest: Can upload device keys; Can query device keys using POST."""
    bob = await make_user()
    keys, _ = _device_keys(user)
    r = await user.post("keys/upload", {"device_keys": keys})
    assert isinstance(r.expect(200)["one_time_key_counts"], dict)
    got = (await bob.post("keys/query", {"device_keys": {user.user_id: []}})).expect(200)
    served = got["device_keys"][user.user_id][user.device_id]
    assert served["keys"] == keys["keys"] and served["algorithms"] == ALGORITHMS
    assert served["signatures"][user.user_id] == keys["signatures"][user.user_id]


async def test_device_keys_for_another_device_are_refused(user, make_user):
    bob = await make_user()
    keys, _ = _device_keys(user)
    r = await bob.post("keys/upload", {"device_keys": keys})
    assert r.status == 400, r.text
    got = (await bob.post("keys/query", {"device_keys": {user.user_id: []}})).expect(200)
    assert got["device_keys"].get(user.user_id, {}) == {}


async def test_one_time_keys_are_counted_and_each_claimed_once(user, make_user):
    """SyTest: Can upload one-time keys; Can claim one time key using POST."""
    bob = await make_user()
    keys, key = _device_keys(user)
    r = await user.post("keys/upload", {"device_keys": keys, "one_time_keys": _otks(user, key, "A", "B")})
    assert r.expect(200)["one_time_key_counts"]["signed_curve25519"] == 2
    want = {"one_time_keys": {user.user_id: {user.device_id: "signed_curve25519"}}}
    first = (await bob.post("keys/claim", want)).expect(200)["one_time_keys"][user.user_id][user.device_id]
    second = (await bob.post("keys/claim", want)).expect(200)["one_time_keys"][user.user_id][user.device_id]
    assert set(first) | set(second) == {"signed_curve25519:A", "signed_curve25519:B"}
    assert first != second
    sync = await user.sync()
    assert sync.get("device_one_time_keys_count", {}).get("signed_curve25519", 0) == 0


async def test_to_device_message_is_delivered_then_acknowledged(user, make_user):
    """SyTest: Can send a message directly to a device using PUT /sendToDevice;
    Can recv a device message using /sync; Can recv device messages until they are acknowledged."""
    bob = await make_user()
    since = (await bob.sync())["next_batch"]
    txn = user.txn_id()
    body = {"messages": {bob.user_id: {bob.device_id: {"hello": "bob"}}}}
    assert (await user.put(f"sendToDevice/m.test/{quote(txn)}", body)).expect(200) == {}
    s, events = await bob.sync_until(since, lambda s: s.get("to_device", {}).get("events"))
    assert events == [{"type": "m.test", "sender": user.user_id, "content": {"hello": "bob"}}]
    later = await bob.sync(s["next_batch"])
    assert later.get("to_device", {}).get("events", []) == []


async def test_to_device_message_to_all_devices(user, make_user):
    """SyTest: Can send a to-device message to all devices with '*'."""
    bob = await make_user()
    since = (await bob.sync())["next_batch"]
    body = {"messages": {bob.user_id: {"*": {"n": 1}}}}
    (await user.put(f"sendToDevice/m.test/{quote(user.txn_id())}", body)).expect(200)
    _, events = await bob.sync_until(since, lambda s: s.get("to_device", {}).get("events"))
    assert [e["content"] for e in events] == [{"n": 1}]


async def test_key_changes_of_a_room_member_show_in_sync_and_keys_changes(user, make_user):
    """SyTest: Local device key changes appear in v2 /sync; Local device key changes appear in /keys/changes."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    since = (await user.sync())["next_batch"]
    keys, _ = _device_keys(bob)
    (await bob.post("keys/upload", {"device_keys": keys})).expect(200)
    s, _ = await user.sync_until(
        since, lambda s: bob.user_id in s.get("device_lists", {}).get("changed", []))
    changes = (await user.get("keys/changes", params={"from": since, "to": s["next_batch"]})).expect(200)
    assert bob.user_id in changes["changed"]
