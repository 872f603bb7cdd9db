"""Hostile and mistyped inputs: a Matrix error, never a 500, and nothing changes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Matrix, User, assert_error, q


async def test_create_room_with_wrong_types_creates_no_room(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    for body in (
        {"is_direct": "yes"},
        {"invite_3pid": "not-a-list"},
        {"invite_3pid": [{"medium": "email"}]},
        {"preset": ["private_chat"]},  # unhashable: a 500 before schemas
        {"preset": {"a": 1}},
        {"invite": "@bob:hs.test"},
        {"initial_state": [{"type": "m.room.topic", "content": "not an object"}]},
        {"name": 5},
    ):
        err = await alice.post("/createRoom", body, expect=400)
        assert err["errcode"] in ("M_BAD_JSON", "M_MISSING_PARAM"), (body, err)
    err = await alice.post("/createRoom", {"preset": "no_such_preset"}, expect=400)
    assert_error(err, "M_INVALID_PARAM")
    assert await alice.joined_rooms() == []


async def test_register_with_a_string_for_a_boolean_registers_nobody(hs: Matrix) -> None:
    body = {
        "username": "carol", "password": "pw-carol-1", "auth": {"type": "m.login.dummy"},
        "inhibit_login": "yes",
    }
    assert_error(await hs.call("POST", "/register", body, expect=400), "M_BAD_JSON")
    assert await hs.call("GET", "/register/available", params={"username": "carol"}) == {"available": True}


async def test_login_with_a_string_for_a_boolean_is_refused(hs: Matrix) -> None:
    await hs.register("alice")
    body = {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "correct horse battery staple", "refresh_token": "yes",
    }
    assert_error(await hs.call("POST", "/login", body, expect=400), "M_BAD_JSON")


async def test_path_with_an_invalid_utf8_escape_is_refused(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    r = await hs.raw("PUT", f"/rooms/{q(room)}/state/m.room.topic/%FF%FE", {"topic": "x"}, token=alice.token)
    assert r.status == 400, r.text
    assert_error(r.json, "M_INVALID_PARAM")
    r = await hs.raw("GET", f"/rooms/{q(room)}/messages?from=%C3%28", token=alice.token)
    assert r.status == 400, r.text
    assert_error(r.json, "M_INVALID_PARAM")
    # A well-formed escape of a non-ASCII key still works.
    await alice.put_state(room, "m.room.topic", {"topic": "y"}, key="é")
    assert (await alice.state(room, "m.room.topic", "é")) == {"topic": "y"}


async def test_token_in_header_and_query_is_refused(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    r = await hs.raw("POST", "/createRoom", {}, token=alice.token, params={"access_token": alice.token})
    assert r.status == 401, r.text
    assert_error(r.json, "M_MISSING_TOKEN")
    assert await alice.joined_rooms() == []
    # Either alone is accepted (the query string is deprecated but still allowed).
    assert (await hs.call("GET", "/account/whoami", params={"access_token": alice.token}))["user_id"] == alice.user_id


async def test_over_long_header_gets_a_matrix_error(hs: Matrix) -> None:
    r = await hs.raw("GET", "/_matrix/client/versions", headers={"X-Padding": "a" * 20_000})
    assert r.status == 431, r.text
    assert_error(r.json, "M_TOO_LARGE")
    r = await hs.raw("GET", "/_matrix/client/versions?x=" + "a" * 20_000)
    assert r.status == 431, r.text
    assert_error(r.json, "M_TOO_LARGE")


@pytest.mark.parametrize(("path", "params"), [
    ("/rooms/{room}/messages", {"limit": "ten"}),
    ("/rooms/{room}/messages", {"dir": "sideways"}),
    ("/rooms/{room}/members", {"membership": "lurking"}),
    ("/sync", {"timeout": "soon"}),
    ("/sync", {"full_state": "yes"}),
    ("/publicRooms", {"limit": "many"}),
])
async def test_mistyped_query_parameters_are_m_invalid_param(
    hs: Matrix, path: str, params: dict[str, str],
) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    err = await alice.get(path.format(room=q(room)), params=params, expect=400)
    assert_error(err, "M_INVALID_PARAM")


async def _room_with_message(alice: User) -> tuple[str, str]:
    room = await alice.create_room()
    return room, await alice.send(room, "hello")


# (method, path, body): every body has one field of the wrong JSON type.
WRONG_TYPES: list[tuple[str, str, Any]] = [
    ("POST", "/rooms/{room}/invite", {"user_id": 5}),
    ("POST", "/rooms/{room}/kick", {"user_id": "@bob:hs.test", "reason": 5}),
    ("POST", "/join/{room}", {"reason": ["no"]}),
    ("POST", "/rooms/{room}/leave", {"reason": {"no": 1}}),
    ("PUT", "/rooms/{room}/redact/{event}/r1", {"reason": 5}),
    ("PUT", "/rooms/{room}/typing/{user}", {"typing": "yes"}),
    ("PUT", "/rooms/{room}/typing/{user}", {"typing": True, "timeout": "long"}),
    ("POST", "/rooms/{room}/receipt/m.read/{event}", {"thread_id": 5}),
    ("POST", "/rooms/{room}/read_markers", {"m.fully_read": 5}),
    ("PUT", "/presence/{user}/status", {"presence": 5}),
    ("PUT", "/profile/{user}/displayname", {"displayname": 5}),
    ("PUT", "/profile/{user}/avatar_url", {"avatar_url": ["mxc://a/b"]}),
    ("POST", "/user_directory/search", {"search_term": 5}),
    ("POST", "/user_directory/search", {"search_term": "a", "limit": "ten"}),
    ("PUT", "/directory/room/%23alias:hs.test", {"room_id": 5}),
    ("PUT", "/directory/list/room/{room}", {"visibility": 5}),
    ("POST", "/publicRooms", {"filter": "x"}),
    ("POST", "/publicRooms", {"since": 5}),
    ("PUT", "/devices/{device}", {"display_name": 5}),
    ("POST", "/account/password", {"new_password": "n", "logout_devices": "no"}),
    ("POST", "/refresh", {"refresh_token": 5}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRONG_TYPES)
async def test_wrong_json_types_are_m_bad_json_and_change_nothing(
    hs: Matrix, method: str, path: str, body: Any,
) -> None:
    (alice,) = await hs.users("alice")
    room, event = await _room_with_message(alice)
    before = await alice.sync()
    url = path.format(room=q(room), event=q(event), user=q(alice.user_id), device=q(alice.device_id))
    r = await hs.raw(method, url, body, token=alice.token)
    assert r.status == 400, (method, path, r.status, r.text)
    assert_error(r.json, "M_BAD_JSON")
    after = await alice.sync(since=before["next_batch"])
    assert after["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", []) == []
    assert (await alice.get(f"/profile/{q(alice.user_id)}")).get("displayname") == "alice"


async def test_unknown_fields_are_ignored(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room(name="Lunch", org_example_extension={"anything": 1})
    assert (await alice.state(room, "m.room.name"))["name"] == "Lunch"


async def test_wrong_types_in_a_query_on_the_r0_alias_too(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    r = await hs.raw("GET", "/_matrix/client/r0/sync", token=alice.token, params={"timeout": "x"})
    assert r.status == 400
    assert_error(r.json, "M_INVALID_PARAM")


# -- found by the schemathesis run (tests/fuzz) -------------------------------------------


async def test_an_out_of_range_integer_in_a_query_is_m_invalid_param(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    for ts in ("5653204425779522672126853120", str(2**53), str(-(2**53))):
        err = await alice.get(
            f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event", params={"ts": ts, "dir": "b"}, expect=400,
        )
        assert_error(err, "M_INVALID_PARAM")
    err = await alice.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": str(10**30)}, expect=400)
    assert_error(err, "M_INVALID_PARAM")


async def test_unreachable_servers_are_not_found_not_a_server_error(hs: Matrix) -> None:
    """Issue 18: profile, alias and join through a server that does not resolve answer the
    spec's 404, never a 5xx."""
    (alice,) = await hs.users("alice")
    assert_error(await alice.get("/profile/@bob:unreachable.invalid", expect=404), "M_NOT_FOUND")
    assert_error(await alice.get("/profile/@bob:unreachable.invalid/displayname", expect=404), "M_NOT_FOUND")
    assert_error(await alice.get(f"/directory/room/{q('#room:unreachable.invalid')}", expect=404), "M_NOT_FOUND")
    assert_error(await alice.post(f"/join/{q('#room:unreachable.invalid')}", expect=404), "M_NOT_FOUND")
    err = await alice.get("/publicRooms", params={"server": "unreachable.invalid"}, expect=404)
    assert_error(err, "M_NOT_FOUND")
    assert await alice.joined_rooms() == []


async def test_joined_members_leave_out_unset_names_and_avatars(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()  # alice has a display name (her localpart), no avatar
    joined = (await alice.get(f"/rooms/{q(room)}/joined_members"))["joined"]
    # The spec's fields are optional strings: never null.
    assert joined == {alice.user_id: {"display_name": "alice"}}
