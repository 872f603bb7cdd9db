"""The Application Service API against a real application-service process
(tests/appservice/fake_as.py): registration files, as_token identity and masquerading,
exclusive namespaces, transactions (namespaces, retry, restart catch-up), lazy provisioning
queries, ping, per-network room lists and third-party lookups."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest

from config.appservice import load_registrations
from config.errors import ConfigError
from config.schema import AppServicesConfig, HomeserverConfig
from tests.appservice.conftest import AS_TOKEN, REGISTRATION, FakeAS, hs_url, wait_until
from tests.helpers import Matrix, User, q

BOT = "@_bridge_bot:hs.test"


def as_user(hs: Matrix, user_id: str = BOT) -> User:
    """The application service acting as `user_id` (spec "Identity assertion")."""
    user = User(hs, user_id, AS_TOKEN, "")
    return user


async def as_register(hs: Matrix, localpart: str, expect: int = 200) -> dict:
    return await hs.call("POST", "/register", {
        "type": "m.login.application_service", "username": localpart, "inhibit_login": True,
    }, token=AS_TOKEN, expect=expect)


# -- registration files ---------------------------------------------------------------------


def test_registration_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    good = REGISTRATION.format(port=9, as_token="a", hs_token="h")
    cases = {
        "bad_regex": (good.replace('"@shared_.*:hs\\\\.test"', '"@shared_[:hs"'),
                      "namespaces.users[1].regex: '@shared_[:hs' is not a valid regular expression"),
        "no_token": (good.replace("as_token: a\n", ""), "as_token: is required"),
        "bad_url": (good.replace("url: http://127.0.0.1:9", "url: ftp://x"), "url: 'ftp://x' is not an http"),
        "typo": (good + "rate_limitd: false\n", "rate_limitd: unknown key"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_registrations([str(path)], "hs.test")
        assert str(err.value).startswith(f"{path}: "), str(err.value)
        assert message in str(err.value)
        assert "\n" not in str(err.value)
    first, second = tmp_path / "one.yaml", tmp_path / "two.yaml"
    first.write_text(good)
    second.write_text(good.replace("id: bridge", "id: other").replace("hs_token: h", "hs_token: h2"))
    with pytest.raises(ConfigError, match="as_token: the same as_token is used by"):
        load_registrations([str(first), str(second)], "hs.test")
    (service,) = load_registrations([str(first)], "hs.test")
    assert service.sender == BOT and not service.rate_limited and service.protocols == ("chatnet",)


async def test_a_bad_registration_stops_the_server_with_one_line(
    tmp_path: Path, hs_config: HomeserverConfig,
) -> None:
    from homeserver.app import create_app

    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nurl: null\n")
    cfg = attrs.evolve(hs_config, app_services=AppServicesConfig(config_files=(str(path),)))
    with pytest.raises(ConfigError, match=r"broken.yaml: as_token: is required"):
        await create_app(cfg)


# -- identity, masquerading, exclusivity ---------------------------------------------------------


async def test_as_token_acts_as_sender_or_a_namespaced_user(as_hs: Matrix) -> None:
    hs = as_hs
    assert (await hs.call("GET", "/account/whoami", token=AS_TOKEN))["user_id"] == BOT
    await as_register(hs, "_bridge_alice")
    got = await hs.call("GET", "/account/whoami", token=AS_TOKEN, params={"user_id": "@_bridge_alice:hs.test"})
    assert got["user_id"] == "@_bridge_alice:hs.test"
    # outside the namespace, or not registered: refused
    alice = await hs.register("alice")
    err = await hs.call("GET", "/account/whoami", token=AS_TOKEN, params={"user_id": alice.user_id}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    err = await hs.call("GET", "/account/whoami", token=AS_TOKEN, params={"user_id": "@_bridge_ghost:hs.test"}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # a masqueraded user really acts: its message is sent as itself
    room = await alice.create_room(preset="public_chat")
    puppet = as_user(hs, "@_bridge_alice:hs.test")
    await hs.call("POST", f"/join/{q(room)}", {}, token=AS_TOKEN, params={"user_id": puppet.user_id})
    sent = await hs.call("PUT", f"/rooms/{q(room)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "hi"},
                         token=AS_TOKEN, params={"user_id": puppet.user_id})
    event = await alice.get(f"/rooms/{q(room)}/event/{q(sent['event_id'])}")
    assert event["sender"] == puppet.user_id


async def test_exclusive_namespaces(as_hs: Matrix) -> None:
    hs = as_hs
    err = await hs.call("POST", "/register", {
        "username": "_bridge_bob", "password": "x" * 12, "auth": {"type": "m.login.dummy"},
    }, expect=400)
    assert err["errcode"] == "M_EXCLUSIVE"
    err = await hs.call("GET", "/register/available", params={"username": "_bridge_bob"}, expect=400)
    assert err["errcode"] == "M_EXCLUSIVE"
    # a non-exclusive namespace stays open to everyone
    await hs.register("shared_carol")
    # the service may not register outside its namespaces
    assert (await as_register(hs, "dave", expect=400))["errcode"] == "M_EXCLUSIVE"
    assert (await as_register(hs, "_bridge_dave"))["user_id"] == "@_bridge_dave:hs.test"
    # aliases: exclusive for users, and the service only inside its own
    alice = await hs.register("alice")
    room = await alice.create_room()
    err = await alice.put(f"/directory/room/{q('#_bridge_lobby:hs.test')}", {"room_id": room}, expect=400)
    assert err["errcode"] == "M_EXCLUSIVE"
    await alice.put(f"/directory/room/{q('#lobby:hs.test')}", {"room_id": room})
    bot_room = await hs.call("POST", "/createRoom", {}, token=AS_TOKEN)
    err = await hs.call("PUT", f"/directory/room/{q('#other:hs.test')}", {"room_id": bot_room["room_id"]},
                        token=AS_TOKEN, expect=400)
    assert err["errcode"] == "M_EXCLUSIVE"
    await hs.call("PUT", f"/directory/room/{q('#_bridge_lobby:hs.test')}", {"room_id": bot_room["room_id"]},
                  token=AS_TOKEN)
    # without a valid as_token, m.login.application_service is an auth error
    err = await hs.call("POST", "/register", {"type": "m.login.application_service", "username": "_bridge_x"},
                        expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    # login as a namespaced user with the as_token
    got = await hs.call("POST", "/login", {
        "type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "_bridge_dave"},
    }, token=AS_TOKEN)
    assert got["user_id"] == "@_bridge_dave:hs.test"


# -- transactions ------------------------------------------------------------------------------


async def test_transactions_carry_namespaced_events_only(as_hs: Matrix, fake_as: FakeAS) -> None:
    hs = as_hs
    alice, bob = await hs.users("alice", "bob")
    private = await alice.create_room()
    await alice.invite(private, bob)
    await alice.send(private, "not for the bridge")
    bridged = await alice.create_room()
    await alice.invite(bridged, "@_bridge_bot:hs.test")  # the target is in the namespace
    await hs.call("POST", f"/join/{q(bridged)}", {}, token=AS_TOKEN)
    await alice.send(bridged, "hello bridge")

    async def delivered() -> bool:
        return any(e.get("content", {}).get("body") == "hello bridge" for e in await fake_as.events())

    await wait_until(delivered, "the message in the bridged room")
    events = await fake_as.events()
    assert {e["room_id"] for e in events} == {bridged}
    kinds = [(e["type"], e.get("state_key")) for e in events]
    assert ("m.room.member", BOT) in kinds  # the invite and the join
    assert all(e["room_id"] != private for e in events)
    state = await fake_as.state()
    assert all(len(t["events"]) <= 100 for t in state["txns"].values())


async def test_transactions_are_retried_with_the_same_txn_id_across_an_outage(
    as_hs: Matrix, fake_as: FakeAS,
) -> None:
    hs = as_hs
    alice = await hs.register("alice")
    room = await alice.create_room()
    await alice.invite(room, BOT)
    await hs.call("POST", f"/join/{q(room)}", {}, token=AS_TOKEN)

    async def has(body: str) -> bool:
        return any(e.get("content", {}).get("body") == body for e in await fake_as.events())

    await alice.send(room, "before")
    await wait_until(lambda: has("before"), "the first message")
    fake_as.stop()  # the service goes down
    for i in range(5):
        await alice.send(room, f"during {i}")
    # back up, but refusing the first two attempts it sees
    await fake_as.start(hs_url(hs), refuse=2)
    for i in range(5):
        await wait_until(lambda i=i: has(f"during {i}"), f"message {i} after the outage")
    state = await fake_as.state()
    bodies = [e["content"].get("body") for e in await fake_as.events() if e["type"] == "m.room.message"]
    assert bodies == ["during 0", "during 1", "during 2", "during 3", "during 4"]  # in order, once each
    refused = state["attempts"][:2]
    assert refused[0] in state["txns"]  # the refused txn id was sent again and accepted
    assert len(set(state["attempts"])) == len(state["txns"])


async def test_a_restarted_homeserver_catches_up(
    as_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]], fake_as: FakeAS,
) -> None:
    hs = await start_hs(as_config)
    alice = await hs.register("alice")
    room = await alice.create_room()
    await alice.invite(room, BOT)
    await hs.call("POST", f"/join/{q(room)}", {}, token=AS_TOKEN)
    for i in range(3):  # the service is down: these wait in the queue
        await alice.send(room, f"queued {i}")
    await hs.client.close()

    hs = await start_hs(as_config)
    await fake_as.start(hs_url(hs))
    alice = await hs.login_user("alice")
    await alice.send(room, "after restart")

    async def all_there() -> bool:
        bodies = [e["content"].get("body") for e in await fake_as.events() if e["type"] == "m.room.message"]
        return bodies == ["queued 0", "queued 1", "queued 2", "after restart"]

    await wait_until(all_there, "every message, once, in order after the restart")


# -- queries, ping, directories, third party -------------------------------------------------------


async def test_lazy_provisioning_of_users_and_aliases(as_hs: Matrix, fake_as: FakeAS) -> None:
    hs = as_hs
    alice = await hs.register("alice")
    profile = await alice.get(f"/profile/{q('@_bridge_lazy_one:hs.test')}")
    assert profile["displayname"] == "_bridge_lazy_one"
    await alice.get(f"/profile/{q('@_bridge_nobody:hs.test')}", expect=404)
    found = await alice.get(f"/directory/room/{q('#_bridge_lazy_room:hs.test')}")
    assert found["room_id"].startswith("!")
    await alice.get(f"/directory/room/{q('#_bridge_missing:hs.test')}", expect=404)
    assert {"@_bridge_lazy_one:hs.test", "#_bridge_lazy_room:hs.test"} <= set((await fake_as.state())["queries"])


async def test_ping(as_hs: Matrix, fake_as: FakeAS) -> None:
    hs = as_hs
    got = await hs.call("POST", "/_matrix/client/v1/appservice/bridge/ping", {"transaction_id": "p1"}, token=AS_TOKEN)
    assert isinstance(got["duration_ms"], int)
    assert (await fake_as.state())["pings"] == ["p1"]
    err = await hs.call("POST", "/_matrix/client/v1/appservice/other/ping", {}, token=AS_TOKEN, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    fake_as.stop()
    err = await hs.call("POST", "/_matrix/client/v1/appservice/bridge/ping", {}, token=AS_TOKEN, expect=502)
    assert err["errcode"] == "M_CONNECTION_FAILED"
    alice = await hs.register("alice")
    await alice.post("/_matrix/client/v1/appservice/bridge/ping", {}, expect=403)


async def test_network_room_directory_and_third_party(as_hs: Matrix) -> None:
    hs = as_hs
    alice = await hs.register("alice")
    room = (await hs.call("POST", "/createRoom", {"name": "Chatnet lobby"}, token=AS_TOKEN))["room_id"]
    err = await alice.put(f"/directory/list/appservice/chatnet/{q(room)}", {"visibility": "public"}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    await hs.call("PUT", f"/directory/list/appservice/chatnet/{q(room)}", {"visibility": "public"}, token=AS_TOKEN)
    listed = await alice.post("/publicRooms", {"third_party_instance_id": "chatnet"})
    assert [r["room_id"] for r in listed["chunk"]] == [room]
    assert (await alice.post("/publicRooms", {}))["chunk"] == []  # not in the server's own list
    assert room in [r["room_id"] for r in (await alice.post("/publicRooms", {"include_all_networks": True}))["chunk"]]
    await hs.call("PUT", f"/directory/list/appservice/chatnet/{q(room)}", {"visibility": "private"}, token=AS_TOKEN)
    assert (await alice.post("/publicRooms", {"third_party_instance_id": "chatnet"}))["chunk"] == []

    protocols = await alice.get("/thirdparty/protocols")
    assert protocols["chatnet"]["location_fields"] == ["channel"]
    assert (await alice.get("/thirdparty/protocol/chatnet"))["user_fields"] == ["nick"]
    await alice.get("/thirdparty/protocol/nope", expect=404)
    locations = await alice.get("/thirdparty/location/chatnet", params={"channel": "#cats"})
    assert locations == [{"alias": "#_chat_cats:hs.test", "protocol": "chatnet", "fields": {"channel": "#cats"}}]


async def test_ephemeral_events_reach_services_that_ask(as_hs: Matrix, fake_as: FakeAS) -> None:
    hs = as_hs
    alice = await hs.register("alice")
    room = await alice.create_room()
    await alice.invite(room, BOT)
    await hs.call("POST", f"/join/{q(room)}", {}, token=AS_TOKEN)
    await alice.put(f"/rooms/{q(room)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000})

    async def typing_seen() -> bool:
        state = await fake_as.state()
        return any(
            e["type"] == "m.typing" and e["room_id"] == room and alice.user_id in e["content"]["user_ids"]
            for txn in state["txns"].values() for e in txn.get("ephemeral", [])
        )

    await wait_until(typing_seen, "m.typing in a transaction's ephemeral list")


async def test_requesters_carry_the_rate_limit_exemption(
    as_hs: Matrix, as_config: HomeserverConfig, db_url: str,
) -> None:
    """`rate_limited: false` reaches every request of the service (issue 12 enforces limits)."""
    from homeserver.core.appservice import AppService, Namespace
    from homeserver.outbound.appservice import HttpAppServiceApi
    from homeserver.services.appservice import AppServiceRegistry
    from storage.engine import create_engine
    from storage.stores.appservice import AppServiceStore
    from storage.stores.users import UserStore

    await as_register(as_hs, "_bridge_eve")
    alice = await as_hs.register("alice")
    (bridge,) = load_registrations(as_config.app_services.config_files, "hs.test")
    limited = AppService(
        id="limited", url=None, as_token="lim", hs_token="limh", sender="@alice:hs.test",
        users=(Namespace("@shared_.*:hs\\.test"),),
    )
    engine = create_engine(db_url)
    api = HttpAppServiceApi()
    try:
        registry = AppServiceRegistry(
            services=[bridge, limited], users=UserStore(engine), api=api, store=AppServiceStore(engine),
            server_name="hs.test",
        )
        exempt = await registry.authenticate(AS_TOKEN, "@_bridge_eve:hs.test")
        assert exempt is not None and exempt.app_service == "bridge" and not exempt.is_rate_limited
        other = await registry.authenticate("lim", None)
        assert other is not None and other.user_id == alice.user_id and other.is_rate_limited
        assert await registry.authenticate("not-a-service-token", None) is None
    finally:
        await api.close()
        await engine.dispose()


def test_app_services_section_in_the_homeserver_config(tmp_path: Path) -> None:
    from config.loader import load_config

    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "homeserver.yaml"
    path.write_text(
        "server_name: hs.test\napp_services:\n  config_files: [bridges/irc.yaml]\n  retry_max_ms: 0\n"
    )
    with pytest.raises(ConfigError, match=r"app_services.retry_max_ms: must be greater than 0"):
        load_config(str(path), env={})
    path.write_text("server_name: hs.test\napp_services:\n  config_files: [bridges/irc.yaml]\n")
    cfg = load_config(str(path), env={})
    assert cfg.app_services.config_files == (str(tmp_path / "conf" / "bridges" / "irc.yaml"),)
