"""The Synapse-compatible admin API: users, devices, whois, joined rooms, server version."""

from __future__ import annotations

from tests.admin.conftest import ADMIN
from tests.helpers import Matrix, User, assert_error, q


async def test_server_version_needs_no_token(hs: Matrix) -> None:
    got = await hs.call("GET", f"{ADMIN}/v1/server_version")
    assert got["server_version"].startswith("Tricolor")


async def test_non_admins_are_refused_everywhere(hs: Matrix, admin: User) -> None:
    bob = await hs.register("bob")
    for method, path in (
        ("GET", "/v2/users"), ("GET", f"/v2/users/{q(bob.user_id)}"), ("GET", "/v1/rooms"),
        ("GET", f"/v1/whois/{q(admin.user_id)}"), ("GET", f"/v2/users/{q(bob.user_id)}/devices"),
        ("GET", f"/v1/users/{q(bob.user_id)}/joined_rooms"),
    ):
        err = await hs.call(method, ADMIN + path, expect=403, token=bob.token)
        assert_error(err, "M_FORBIDDEN")
    err = await hs.call("GET", f"{ADMIN}/v2/users", expect=401)
    assert_error(err, "M_MISSING_TOKEN")


async def test_list_users_pages_and_filters(hs: Matrix, admin: User) -> None:
    for name in ("anna", "bert", "carl", "dora"):
        await hs.register(name)
    page = await admin.get(f"{ADMIN}/v2/users", params={"limit": 2})
    assert page["total"] == 5
    assert [u["name"] for u in page["users"]] == [hs.uid("anna"), hs.uid("bert")]
    assert page["next_token"] == "2"
    rest = await admin.get(f"{ADMIN}/v2/users", params={"from": page["next_token"], "limit": 10})
    assert [u["name"] for u in rest["users"]] == [hs.uid("carl"), hs.uid("dora"), hs.uid("root")]
    assert "next_token" not in rest
    named = await admin.get(f"{ADMIN}/v3/users", params={"name": "OR"})
    assert [u["name"] for u in named["users"]] == [hs.uid("dora")]
    admins = await admin.get(f"{ADMIN}/v2/users", params={"admins": "true"})
    assert [(u["name"], u["admin"]) for u in admins["users"]] == [(hs.uid("root"), True)]
    back = await admin.get(f"{ADMIN}/v2/users", params={"dir": "b", "limit": 1})
    assert back["users"][0]["name"] == hs.uid("root")
    err = await admin.get(f"{ADMIN}/v2/users", params={"limit": "many"}, expect=400)
    assert_error(err, "M_INVALID_PARAM")


async def test_create_modify_and_deactivate_a_user(hs: Matrix, admin: User) -> None:
    uid = hs.uid("eve")
    created = await admin.put(f"{ADMIN}/v2/users/{q(uid)}", {"password": "pw-eve-123", "displayname": "Eve"}, expect=201)
    assert created["name"] == uid and created["displayname"] == "Eve" and created["admin"] is False
    eve = await hs.login_user("eve", "pw-eve-123")
    assert (await eve.get("/account/whoami"))["user_id"] == uid

    changed = await admin.put(f"{ADMIN}/v2/users/{q(uid)}", {"admin": True, "displayname": "Eve A."})
    assert changed["admin"] is True and changed["displayname"] == "Eve A."
    # The flag takes effect at once: eve may now use the admin API.
    assert (await eve.get(f"{ADMIN}/v2/users"))["total"] == 2

    await admin.post(f"{ADMIN}/v1/reset_password/{q(uid)}", {"new_password": "pw-eve-456"})
    await hs.login("eve", "pw-eve-123", expect=403)
    await eve.get("/account/whoami", expect=401)  # logged out everywhere by default
    await hs.login("eve", "pw-eve-456")

    room = await admin.create_room()
    await admin.invite(room, uid)
    eve2 = await hs.login_user("eve", "pw-eve-456")
    await eve2.join(room)
    assert (await admin.get(f"{ADMIN}/v1/users/{q(uid)}/joined_rooms")) == {"joined_rooms": [room], "total": 1}

    assert (await admin.post(f"{ADMIN}/v1/deactivate/{q(uid)}", {"erase": True})) == {"id_server_unbind_result": "success"}
    await hs.login("eve", "pw-eve-456", expect=403)
    got = await admin.get(f"{ADMIN}/v2/users/{q(uid)}")
    assert got["deactivated"] is True and got["displayname"] is None
    assert (await admin.get(f"{ADMIN}/v1/users/{q(uid)}/joined_rooms"))["total"] == 0
    listed = await admin.get(f"{ADMIN}/v2/users")
    assert uid not in [u["name"] for u in listed["users"]]
    listed = await admin.get(f"{ADMIN}/v2/users", params={"deactivated": "true"})
    assert uid in [u["name"] for u in listed["users"]]

    # Reactivation needs a password.
    err = await admin.put(f"{ADMIN}/v2/users/{q(uid)}", {"deactivated": False}, expect=400)
    assert_error(err, "M_MISSING_PARAM")
    await admin.put(f"{ADMIN}/v2/users/{q(uid)}", {"deactivated": False, "password": "back-again-1"})
    await hs.login("eve", "back-again-1")


async def test_bad_input_changes_nothing(hs: Matrix, admin: User) -> None:
    uid = hs.uid("fred")
    err = await admin.put(f"{ADMIN}/v2/users/{q(uid)}", {"admin": "yes"}, expect=400)
    assert_error(err, "M_BAD_JSON")
    await admin.get(f"{ADMIN}/v2/users/{q(uid)}", expect=404)
    err = await admin.get(f"{ADMIN}/v2/users/{q('@x:elsewhere.test')}", expect=400)
    assert_error(err, "M_INVALID_PARAM")
    err = await admin.post(f"{ADMIN}/v1/reset_password/{q(uid)}", {"new_password": "x"}, expect=404)
    assert_error(err, "M_NOT_FOUND")
    err = await admin.post(f"{ADMIN}/v1/reset_password/{q(admin.user_id)}", {}, expect=400)
    assert_error(err, "M_MISSING_PARAM")


async def test_devices_and_whois(hs: Matrix, admin: User) -> None:
    gina = await hs.register("gina")
    second = await hs.login_user("gina")
    devices = await admin.get(f"{ADMIN}/v2/users/{q(gina.user_id)}/devices")
    assert devices["total"] == 2
    assert {d["device_id"] for d in devices["devices"]} == {gina.device_id, second.device_id}
    assert all(d["user_id"] == gina.user_id for d in devices["devices"])
    whois = await admin.get(f"{ADMIN}/v1/whois/{q(gina.user_id)}")
    assert whois["user_id"] == gina.user_id
    assert set(whois["devices"]) == {gina.device_id, second.device_id}
    # Users may ask about themselves.
    own = await gina.get(f"{ADMIN}/v1/whois/{q(gina.user_id)}")
    assert own["user_id"] == gina.user_id


async def test_shared_secret_registration(
    hs_config, start_hs,  # type: ignore[no-untyped-def]
) -> None:
    """Synapse's /_synapse/admin/v1/register: admin tooling creates (admin) users with
    the shared secret, even with registration closed."""
    import hashlib
    import hmac

    import attrs

    from config.schema import RegistrationConfig

    cfg = attrs.evolve(hs_config, registration=RegistrationConfig(enabled=False, shared_secret="s3cret"))
    hs = await start_hs(cfg)

    def mac(nonce: str, user: str, password: str, admin: bool, secret: str = "s3cret") -> str:
        h = hmac.new(secret.encode(), digestmod=hashlib.sha1)
        h.update(b"\x00".join([nonce.encode(), user.encode(), password.encode(), b"admin" if admin else b"notadmin"]))
        return h.hexdigest()

    nonce = (await hs.call("GET", f"{ADMIN}/v1/register"))["nonce"]
    body = {"nonce": nonce, "username": "boss", "password": "pw-boss-1", "admin": True,
            "mac": mac(nonce, "boss", "pw-boss-1", True, "wrong")}
    assert_error(await hs.call("POST", f"{ADMIN}/v1/register", body, expect=403), "M_FORBIDDEN")
    nonce = (await hs.call("GET", f"{ADMIN}/v1/register"))["nonce"]
    body |= {"nonce": nonce, "mac": mac(nonce, "boss", "pw-boss-1", True)}
    got = await hs.call("POST", f"{ADMIN}/v1/register", body)
    assert got["user_id"] == hs.uid("boss")
    # A nonce is good once.
    assert_error(await hs.call("POST", f"{ADMIN}/v1/register", body, expect=400), "M_UNKNOWN")
    listed = await hs.call("GET", f"{ADMIN}/v2/users", token=got["access_token"])
    assert [(u["name"], u["admin"]) for u in listed["users"]] == [(hs.uid("boss"), True)]
    # Registration through the client API stays closed.
    await hs.call("POST", "/register", {"username": "x", "password": "y", "auth": {"type": "m.login.dummy"}}, expect=403)


async def test_shared_secret_registration_off_without_a_secret(hs: Matrix) -> None:
    assert_error(await hs.call("GET", f"{ADMIN}/v1/register", expect=400), "M_UNKNOWN")


async def test_guest_accounts_are_listed_unless_guests_false(hs: Matrix, admin: User) -> None:
    guest = await hs.call("POST", "/register", {}, params={"kind": "guest"})
    everyone = await admin.get(f"{ADMIN}/v2/users")
    listed = {u["name"]: u["is_guest"] for u in everyone["users"]}
    assert listed[guest["user_id"]] is True and listed[admin.user_id] is False
    members = await admin.get(f"{ADMIN}/v2/users", params={"guests": "false"})
    assert guest["user_id"] not in [u["name"] for u in members["users"]]
    assert members["total"] == everyone["total"] - 1
    one = await admin.get(f"{ADMIN}/v2/users/{q(guest['user_id'])}")
    assert one["is_guest"] is True
