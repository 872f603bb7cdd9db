"""What every endpoint shares: error shapes, size limits, CORS and discovery."""

from __future__ import annotations

import json

import pytest

from tests.helpers import CS, Matrix, assert_error, q

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": ("GET", "POST", "PUT", "DELETE", "OPTIONS"),
    "Access-Control-Allow-Headers": ("X-Requested-With", "Content-Type", "Authorization"),
}


def assert_cors(headers: object) -> None:
    assert headers["Access-Control-Allow-Origin"] == "*"  # type: ignore[index]
    for name in ("Access-Control-Allow-Methods", "Access-Control-Allow-Headers"):
        listed = {v.strip().lower() for v in headers[name].split(",")}  # type: ignore[index]
        assert {v.lower() for v in CORS[name]} <= listed, (name, listed)


@pytest.mark.parametrize("path", [
    f"{CS}/no/such/endpoint", "/_matrix/client/v1/auth_metadata", "/_matrix/nothing",
    f"{CS}/room_keys/version/unknown/deeper",
])
async def test_unknown_path_is_404_unrecognized(hs: Matrix, path: str) -> None:
    r = await hs.raw("GET", path)
    assert r.status == 404
    assert_error(r.json, "M_UNRECOGNIZED")
    assert r.headers["Content-Type"].startswith("application/json")


async def test_wrong_method_is_405_unrecognized(hs: Matrix) -> None:
    for method, path in (("PUT", "/login"), ("DELETE", "/createRoom"), ("POST", "/account/whoami")):
        r = await hs.raw(method, path, {})
        assert r.status == 405, (method, path, r.status)
        assert_error(r.json, "M_UNRECOGNIZED")


async def test_body_that_is_not_json_is_m_not_json(hs: Matrix) -> None:
    alice = await hs.register("alice")
    for data in ("this is not json", "{'single': 'quotes'}", "{\"a\": ", ""):
        r = await hs.raw("POST", "/createRoom", token=alice.token, data=data,
                         headers={"Content-Type": "application/json"})
        assert r.status == 400, (data, r.text)
        assert_error(r.json, "M_NOT_JSON")
    assert await alice.joined_rooms() == []
    r = await hs.raw("POST", "/login", data=b"\xff\xfe not utf-8")
    assert r.status == 400
    assert_error(r.json, "M_NOT_JSON")


async def test_json_of_the_wrong_shape_is_m_bad_json(hs: Matrix) -> None:
    alice = await hs.register("alice")
    for body in ([1, 2], "a string", 42, None):
        r = await hs.raw("POST", "/createRoom", body, token=alice.token)
        assert r.status == 400, (body, r.text)
        assert_error(r.json, "M_BAD_JSON")
    room = await alice.create_room()
    r = await hs.raw("PUT", f"/rooms/{q(room)}/send/m.room.message/t1", ["not", "an", "object"], token=alice.token)
    assert r.status == 400
    assert_error(r.json, "M_BAD_JSON")
    err = await hs.call(
        "POST", "/login", {"type": "m.login.password", "user": "alice", "password": 5}, expect=400,
    )
    assert_error(err, "M_BAD_JSON")


async def test_missing_parameters(hs: Matrix) -> None:
    alice = await hs.register("alice")
    room = await alice.create_room()
    err = await alice.post(f"/rooms/{q(room)}/invite", {}, expect=400)
    assert_error(err, "M_MISSING_PARAM")
    err = await hs.call("POST", "/login", {"type": "m.login.password", "user": "alice"}, expect=400)
    assert_error(err, "M_MISSING_PARAM")
    err = await hs.call("GET", "/register/available", expect=400)
    assert_error(err, "M_MISSING_PARAM")


async def test_oversized_request_body_is_413(hs: Matrix) -> None:
    alice = await hs.register("alice")
    room = await alice.create_room()
    huge = {"msgtype": "m.text", "body": "x" * (2 * 1024 * 1024)}
    r = await hs.raw("PUT", f"/rooms/{q(room)}/send/m.room.message/big", huge, token=alice.token)
    assert r.status == 413
    assert_error(r.json, "M_TOO_LARGE")
    assert_cors(r.headers)
    assert (await alice.messages(room, limit=3))["chunk"][0]["type"] != "m.room.message"


async def test_oversized_event_is_413_and_not_stored(hs: Matrix) -> None:
    alice = await hs.register("alice")
    room = await alice.create_room()
    big = {"msgtype": "m.text", "body": "x" * 70_000}  # over 64 KiB as an event, far below the body limit
    err = await alice.send(room, big, expect=413)
    assert_error(err, "M_TOO_LARGE")
    err = await alice.put_state(room, "org.example.big", {"blob": "y" * 70_000}, expect=413)
    assert_error(err, "M_TOO_LARGE")
    chunk = (await alice.messages(room, limit=3))["chunk"]
    assert "m.room.message" not in [e["type"] for e in chunk]
    assert_error(await alice.state(room, "org.example.big", expect=404), "M_NOT_FOUND")
    await alice.send(room, {"msgtype": "m.text", "body": "x" * 60_000})  # just under fits


async def test_cors_headers_on_success_and_errors(hs: Matrix) -> None:
    alice = await hs.register("alice")
    for method, path, token in (
        ("GET", "/_matrix/client/versions", None),
        ("GET", "/account/whoami", alice.token),
        ("GET", "/account/whoami", None),
        ("GET", "/no/such/thing", None),
        ("PUT", "/login", None),
    ):
        r = await hs.raw(method, path, token=token)
        assert_cors(r.headers)


@pytest.mark.parametrize("path", [
    f"{CS}/sync", f"{CS}/createRoom", f"{CS}/rooms/{q('!r:hs.test')}/send/m.room.message/1",
    f"{CS}/no/such/endpoint", "/_matrix/media/v3/upload", "/anything/at/all",
])
async def test_options_preflight_on_any_path_needs_no_auth(hs: Matrix, path: str) -> None:
    r = await hs.raw("OPTIONS", path, headers={
        "Origin": "https://app.element.io", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert r.status in (200, 204)
    assert_cors(r.headers)


async def test_versions_and_well_known(hs: Matrix) -> None:
    versions = await hs.call("GET", "/_matrix/client/versions")
    assert "v1.5" in versions["versions"] or any(
        v.startswith("v1.") and int(v.split(".")[1]) >= 5 for v in versions["versions"]
    )
    assert isinstance(versions.get("unstable_features", {}), dict)
    well_known = await hs.call("GET", "/.well-known/matrix/client")
    assert well_known["m.homeserver"]["base_url"].startswith("http")


async def test_r0_prefix_is_an_alias_of_v3(hs: Matrix) -> None:
    alice = await hs.register("alice")
    me = await hs.call("GET", "/_matrix/client/r0/account/whoami", token=alice.token)
    assert me["user_id"] == alice.user_id
    room = (await hs.call("POST", "/_matrix/client/r0/createRoom", {}, token=alice.token))["room_id"]
    assert await alice.joined_rooms() == [room]


async def test_trailing_slash_is_accepted(hs: Matrix) -> None:
    alice = await hs.register("alice")
    assert (await alice.get("/account/whoami/"))["user_id"] == alice.user_id
    assert await alice.get("/joined_rooms/") == {"joined_rooms": []}


async def test_json_responses_are_json(hs: Matrix) -> None:
    alice = await hs.register("alice")
    room = await alice.create_room()
    for path in ("/account/whoami", "/joined_rooms", f"/rooms/{q(room)}/state", "/sync"):
        r = await hs.raw("GET", path, token=alice.token)
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/json")
        json.loads(r.text)
