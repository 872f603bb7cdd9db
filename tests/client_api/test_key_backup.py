"""Server-side key backup: versions, keys, the replacement rules, etag and count."""

from __future__ import annotations

from typing import Any

from tests.helpers import Matrix, assert_error, q

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"


def key(first: int = 0, forwarded: int = 0, verified: bool = False, data: str = "x") -> dict[str, Any]:
    return {"first_message_index": first, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ciphertext": data}}


async def test_backup_versions_are_created_read_updated_and_deleted(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    assert_error(await alice.get("/room_keys/version", expect=404), "M_NOT_FOUND")
    v1 = (await alice.post("/room_keys/version", {"algorithm": ALGORITHM, "auth_data": {"a": 1}}))["version"]
    v2 = (await alice.post("/room_keys/version", {"algorithm": ALGORITHM, "auth_data": {"a": 2}}))["version"]
    current = await alice.get("/room_keys/version")
    assert current["version"] == v2 and current["auth_data"] == {"a": 2} and current["count"] == 0
    assert (await alice.get(f"/room_keys/version/{v1}"))["auth_data"] == {"a": 1}
    await alice.put(f"/room_keys/version/{v2}", {"algorithm": ALGORITHM, "auth_data": {"a": 3}})
    assert (await alice.get("/room_keys/version"))["auth_data"] == {"a": 3}
    changed_algo = {"algorithm": "other", "auth_data": {}}
    assert_error(await alice.put(f"/room_keys/version/{v2}", changed_algo, expect=400), "M_INVALID_PARAM")
    await alice.delete(f"/room_keys/version/{v2}")
    assert (await alice.get("/room_keys/version"))["version"] == v1
    assert_error(await alice.get(f"/room_keys/version/{v2}", expect=404), "M_NOT_FOUND")
    assert_error(await alice.post("/room_keys/version", {"algorithm": 1, "auth_data": {}}, expect=400), "M_BAD_JSON")


async def test_keys_are_stored_with_the_better_copy_kept(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    v = (await alice.post("/room_keys/version", {"algorithm": ALGORITHM, "auth_data": {}}))["version"]
    path = f"/room_keys/keys/{q('!room:x')}/sess1"
    first = await alice.put(path, key(first=5, data="a"), params={"version": v})
    assert first["count"] == 1
    worse = await alice.put(path, key(first=7, data="b"), params={"version": v})
    assert worse["etag"] == first["etag"]  # not better: nothing changed
    better = await alice.put(path, key(first=2, data="c"), params={"version": v})
    assert better["etag"] != first["etag"] and better["count"] == 1
    await alice.put(path, key(first=9, verified=True, data="d"), params={"version": v})  # verified wins
    assert (await alice.get(path, params={"version": v}))["session_data"] == {"ciphertext": "d"}

    await alice.put("/room_keys/keys", {"rooms": {"!other:x": {"sessions": {"s2": key()}}}}, params={"version": v})
    everything = await alice.get("/room_keys/keys", params={"version": v})
    assert set(everything["rooms"]) == {"!room:x", "!other:x"}
    assert (await alice.get(f"/room_keys/keys/{q('!none:x')}", params={"version": v})) == {"sessions": {}}
    assert (await alice.get("/room_keys/version"))["count"] == 2
    # bob's backups are his own
    assert_error(await bob.get("/room_keys/keys", params={"version": v}, expect=404), "M_NOT_FOUND")

    gone = await alice.delete(path, params={"version": v})
    assert gone["count"] == 1
    assert_error(await alice.get(path, params={"version": v}, expect=404), "M_NOT_FOUND")


async def test_uploads_go_to_the_current_version_only(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    old = (await alice.post("/room_keys/version", {"algorithm": ALGORITHM, "auth_data": {}}))["version"]
    new = (await alice.post("/room_keys/version", {"algorithm": ALGORITHM, "auth_data": {}}))["version"]
    err = await alice.put("/room_keys/keys/!r:x/s", key(), params={"version": old}, expect=403)
    assert_error(err, "M_WRONG_ROOM_KEYS_VERSION")
    assert err["current_version"] == new
    bad = await alice.put("/room_keys/keys/!r:x/s", {"first_message_index": "0"}, params={"version": new}, expect=400)
    assert_error(bad, "M_BAD_JSON")
    assert (await alice.get("/room_keys/version"))["count"] == 0
