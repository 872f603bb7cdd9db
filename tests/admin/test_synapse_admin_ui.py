"""What the synapse-admin web UI (github.com/Awesome-Technologies/synapse-admin and the
etke.cc fork) asks of a homeserver when an operator signs in and opens the users and
rooms lists, in the shape and order it sends them, from another origin (the UI is
served from its own address, so every call is a cross-origin browser request).

The UI is not published on npm or PyPI, so it cannot run here in a headless browser;
docs/synapse-admin.md says how to point a deployment of it at Tricolor."""

from __future__ import annotations

from tests.admin.conftest import ADMIN, promote
from tests.helpers import PASSWORD, Matrix, q

ORIGIN = {"Origin": "https://admin.example.org"}


async def preflight(hs: Matrix, method: str, path: str) -> None:
    """The browser's CORS preflight before a request with an Authorization header."""
    r = await hs.raw("OPTIONS", path, headers={
        **ORIGIN, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    })
    assert r.status in (200, 204), r.text
    allowed = r.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert method in r.headers["Access-Control-Allow-Methods"]


async def call(hs: Matrix, method: str, path: str, body: object = None, token: str | None = None) -> dict:
    await preflight(hs, method, path)
    kw = {} if body is None else {"body": body}
    r = await hs.raw(method, path, token=token, headers=ORIGIN, **kw)  # type: ignore[arg-type]
    assert r.status == 200, f"{method} {path}: {r.status} {r.text}"
    assert r.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN["Origin"])
    return r.json


async def test_sign_in_and_list_users_and_rooms_as_synapse_admin_does(hs: Matrix) -> None:
    root = await promote(hs, await hs.register("root"))
    ann = await hs.register("ann")
    room = await ann.create_room(name="Lunch", preset="public_chat")

    # The login page: discovery, the server version it shows, the login flows it offers.
    well_known = await call(hs, "GET", "/.well-known/matrix/client")
    assert "m.homeserver" in well_known
    assert (await call(hs, "GET", f"{ADMIN}/v1/server_version"))["server_version"]
    await call(hs, "GET", "/_matrix/client/versions")
    flows = await call(hs, "GET", "/_matrix/client/r0/login")
    assert {"type": "m.login.password"} in flows["flows"]

    # Signing in: r0 path, the legacy top-level `user` field, a device name of its own.
    login = await call(hs, "POST", "/_matrix/client/r0/login", {
        "type": "m.login.password", "user": "root", "password": PASSWORD,
        "initial_device_display_name": "Synapse Admin",
    })
    token = login["access_token"]
    assert login["user_id"] == root.user_id and login["home_server"] == hs.server_name

    # The users list, as its data provider pages it.
    users = await call(hs, "GET", f"{ADMIN}/v2/users?from=0&limit=10&user_id=&name=&guests=true"
                                  "&deactivated=false&order_by=name&dir=f", token=token)
    names = [u["name"] for u in users["users"]]
    assert root.user_id in names and ann.user_id in names and users["total"] >= 2
    for u in users["users"]:
        assert {"name", "displayname", "admin", "deactivated", "is_guest", "avatar_url"} <= set(u)

    # One user's page: details, devices, joined rooms, media.
    detail = await call(hs, "GET", f"{ADMIN}/v2/users/{q(ann.user_id)}", token=token)
    assert detail["name"] == ann.user_id and detail["admin"] is False
    assert (await call(hs, "GET", f"{ADMIN}/v2/users/{q(ann.user_id)}/devices", token=token))["total"] == 1
    joined = await call(hs, "GET", f"{ADMIN}/v1/users/{q(ann.user_id)}/joined_rooms", token=token)
    assert joined["joined_rooms"] == [room]
    await call(hs, "GET", f"{ADMIN}/v1/users/{q(ann.user_id)}/media?from=0&limit=10", token=token)

    # The rooms list and one room's pages.
    rooms = await call(hs, "GET", f"{ADMIN}/v1/rooms?from=0&limit=10&order_by=name&dir=f", token=token)
    listed = {r["room_id"]: r for r in rooms["rooms"]}
    assert listed[room]["name"] == "Lunch" and listed[room]["joined_members"] == 1
    assert rooms["total_rooms"] >= 1
    assert (await call(hs, "GET", f"{ADMIN}/v1/rooms/{q(room)}", token=token))["name"] == "Lunch"
    members = await call(hs, "GET", f"{ADMIN}/v1/rooms/{q(room)}/members", token=token)
    assert members["members"] == [ann.user_id]
    state = await call(hs, "GET", f"{ADMIN}/v1/rooms/{q(room)}/state", token=token)
    assert any(e["type"] == "m.room.name" for e in state["state"])
    await call(hs, "GET", f"{ADMIN}/v1/event_reports?from=0&limit=10&dir=b", token=token)

    # Signing out ends the UI's session.
    await call(hs, "POST", "/_matrix/client/r0/logout", {}, token=token)
    r = await hs.raw("GET", f"{ADMIN}/v2/users", token=token, headers=ORIGIN)
    assert r.status == 401 and r.json["errcode"] == "M_UNKNOWN_TOKEN"


async def test_a_user_who_is_not_an_admin_is_refused(hs: Matrix) -> None:
    """The UI signs in anyone, then shows the error of the first admin call."""
    ann = await hs.register("ann")
    r = await hs.raw("GET", f"{ADMIN}/v2/users?from=0&limit=10", token=ann.token, headers=ORIGIN)
    assert r.status == 403 and r.json["errcode"] == "M_FORBIDDEN"
    assert r.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN["Origin"])
