"""Event reports (client POST and the admin API), registration tokens CRUD, and media
administration (list a user's media, delete, quarantine)."""

from __future__ import annotations

from tests.admin.conftest import ADMIN
from tests.helpers import Matrix, User, assert_error, q

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


async def test_report_an_event_and_manage_reports(hs: Matrix, admin: User) -> None:
    alice, bob, eve = await hs.users("alice", "bob", "eve")
    room = await alice.create_room(name="Town square", preset="public_chat")
    await bob.join(room)
    rude = await bob.send(room, "rude words")
    await alice.post(f"/rooms/{q(room)}/report/{q(rude)}", {"reason": "offensive", "score": -100})
    await alice.post(f"/rooms/{q(room)}/report/{q(rude)}", {})
    # Not in the room, or no such event: the same 404.
    assert_error(await eve.post(f"/rooms/{q(room)}/report/{q(rude)}", {}, expect=404), "M_NOT_FOUND")
    assert_error(await alice.post(f"/rooms/{q(room)}/report/{q('$nope')}", {}, expect=404), "M_NOT_FOUND")
    assert_error(await alice.post(f"/rooms/{q(room)}/report/{q(rude)}", {"score": 5}, expect=400), "M_INVALID_PARAM")
    assert_error(await alice.post(f"/rooms/{q(room)}/report/{q(rude)}", {"reason": 1}, expect=400), "M_BAD_JSON")

    assert_error(await alice.get(f"{ADMIN}/v1/event_reports", expect=403), "M_FORBIDDEN")
    listed = await admin.get(f"{ADMIN}/v1/event_reports")
    assert listed["total"] == 2
    newest, oldest = listed["event_reports"]
    assert oldest["reason"] == "offensive" and oldest["score"] == -100 and newest["reason"] is None
    assert oldest["sender"] == bob.user_id and oldest["user_id"] == alice.user_id and oldest["name"] == "Town square"
    forwards = await admin.get(f"{ADMIN}/v1/event_reports", params={"dir": "f", "limit": 1})
    assert forwards["event_reports"][0]["id"] == oldest["id"] and forwards["next_token"] == 1
    assert (await admin.get(f"{ADMIN}/v1/event_reports", params={"user_id": "bob"}))["total"] == 0
    one = await admin.get(f"{ADMIN}/v1/event_reports/{oldest['id']}")
    assert one["event_json"]["content"]["body"] == "rude words"
    await admin.delete(f"{ADMIN}/v1/event_reports/{oldest['id']}")
    assert_error(await admin.get(f"{ADMIN}/v1/event_reports/{oldest['id']}", expect=404), "M_NOT_FOUND")
    assert (await admin.get(f"{ADMIN}/v1/event_reports"))["total"] == 1


async def test_registration_tokens_crud(hs: Matrix, admin: User) -> None:
    made = await admin.post(f"{ADMIN}/v1/registration_tokens/new", {})
    assert len(made["token"]) == 16 and made["uses_allowed"] is None and made["completed"] == 0
    named = await admin.post(f"{ADMIN}/v1/registration_tokens/new", {"token": "abcd", "uses_allowed": 1})
    assert named == {"token": "abcd", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": None}
    err = await admin.post(f"{ADMIN}/v1/registration_tokens/new", {"token": "abcd"}, expect=400)
    assert_error(err, "M_INVALID_PARAM")
    assert_error(await admin.post(f"{ADMIN}/v1/registration_tokens/new", {"token": "a b"}, expect=400), "M_INVALID_PARAM")
    assert_error(await admin.post(f"{ADMIN}/v1/registration_tokens/new", {"uses_allowed": -1}, expect=400), "M_INVALID_PARAM")
    assert_error(await admin.post(f"{ADMIN}/v1/registration_tokens/new", {"expiry_time": 1}, expect=400), "M_INVALID_PARAM")
    listed = await admin.get(f"{ADMIN}/v1/registration_tokens")
    assert {t["token"] for t in listed["registration_tokens"]} == {"abcd", made["token"]}
    assert await admin.get(f"{ADMIN}/v1/registration_tokens/abcd") == named
    changed = await admin.put(f"{ADMIN}/v1/registration_tokens/abcd", {"uses_allowed": 0})
    assert changed["uses_allowed"] == 0
    invalid = await admin.get(f"{ADMIN}/v1/registration_tokens", params={"valid": "false"})
    assert [t["token"] for t in invalid["registration_tokens"]] == ["abcd"]
    cleared = await admin.put(f"{ADMIN}/v1/registration_tokens/abcd", {"uses_allowed": None})
    assert cleared["uses_allowed"] is None
    kept = await admin.put(f"{ADMIN}/v1/registration_tokens/abcd", {})
    assert kept["uses_allowed"] is None
    await admin.delete(f"{ADMIN}/v1/registration_tokens/abcd")
    assert_error(await admin.get(f"{ADMIN}/v1/registration_tokens/abcd", expect=404), "M_NOT_FOUND")
    assert_error(await admin.delete(f"{ADMIN}/v1/registration_tokens/abcd", expect=404), "M_NOT_FOUND")
    user = await hs.register("plain")
    assert_error(await user.get(f"{ADMIN}/v1/registration_tokens", expect=403), "M_FORBIDDEN")


async def upload(hs: Matrix, user: User, data: bytes = PNG) -> str:
    got = await hs.raw_bytes(
        "POST", "/_matrix/media/v3/upload", data, token=user.token,
        params={"filename": "dot.png"}, headers={"Content-Type": "image/png"},
    )
    assert got.status == 200, got.body
    return got.json["content_uri"]


async def download(hs: Matrix, user: User, mxc: str) -> int:
    server, media_id = mxc[len("mxc://"):].split("/")
    got = await hs.raw_bytes("GET", f"/_matrix/client/v1/media/download/{server}/{media_id}", token=user.token)
    return got.status


async def test_media_admin_list_quarantine_delete(hs: Matrix, admin: User) -> None:
    alice = await hs.register("alice")
    first, second = await upload(hs, alice), await upload(hs, alice, PNG + b"\0")
    listed = await admin.get(f"{ADMIN}/v1/users/{q(alice.user_id)}/media")
    assert listed["total"] == 2
    assert {m["media_id"] for m in listed["media"]} == {first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]}
    assert all(m["media_type"] == "image/png" and m["quarantined_by"] is None for m in listed["media"])
    assert_error(await alice.get(f"{ADMIN}/v1/users/{q(alice.user_id)}/media", expect=403), "M_FORBIDDEN")

    server, media_id = first[len("mxc://"):].split("/")
    await admin.post(f"{ADMIN}/v1/media/quarantine/{server}/{media_id}", {})
    assert await download(hs, alice, first) == 404
    listed = await admin.get(f"{ADMIN}/v1/users/{q(alice.user_id)}/media")
    assert {m["media_id"]: m["quarantined_by"] for m in listed["media"]}[media_id] == admin.user_id
    await admin.post(f"{ADMIN}/v1/media/unquarantine/{server}/{media_id}", {})
    assert await download(hs, alice, first) == 200

    got = await admin.delete(f"{ADMIN}/v1/media/{server}/{media_id}")
    assert got == {"deleted_media": [media_id], "total": 1}
    assert await download(hs, alice, first) == 404
    assert await download(hs, alice, second) == 200
    assert_error(await admin.delete(f"{ADMIN}/v1/media/{server}/{media_id}", expect=404), "M_NOT_FOUND")
    assert_error(await admin.delete(f"{ADMIN}/v1/media/other.test/abc", expect=400), "M_INVALID_PARAM")
    assert (await admin.get(f"{ADMIN}/v1/users/{q(alice.user_id)}/media"))["total"] == 1
