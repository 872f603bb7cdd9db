"""Two real Tricolor processes federating over TLS, started with `testnet up` (the
operators' path), on SQLite and on MariaDB."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from homeserver.core.signing import generate_signing_key, sign_json
from tests.helpers import cross_signing_keys
from tests.integration.matrix_http import MatrixUser, eventually, q, timeline_bodies
from tests.integration.nio_e2ee import encrypted_client, encrypted_conversation
from tests.integration.test_testnet import _free_block, run_testnet


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def net(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if request.param == "mysql" and not _mysql_reachable():
        if os.environ.get("TRICOLOR_REQUIRE_MYSQL") == "1":
            pytest.fail("MariaDB is not reachable", pytrace=False)
        pytest.skip("MariaDB is not reachable")
    directory = tmp_path_factory.mktemp(f"net-{request.param}") / "net"
    up = run_testnet(
        "up", "--servers", "2", "--dir", str(directory), "--database", request.param,
        "--base-port", str(_free_block()), "--fast-passwords",
    )
    info = json.loads(up.stdout)
    info["dir"] = str(directory)
    try:
        yield info
    finally:
        run_testnet("down", "--dir", str(directory), check=False)


def _mysql_reachable() -> bool:
    url = make_url(os.environ.get("TRICOLOR_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test"))
    try:
        socket.create_connection((url.host or "127.0.0.1", url.port or 3306), timeout=2).close()
    except OSError:
        return False
    return True


def client_url(net: dict[str, Any], name: str) -> str:
    return next(s["client_url"] for s in net["servers"] if s["name"] == name)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def pair(net: dict[str, Any], session: aiohttp.ClientSession) -> tuple[MatrixUser, MatrixUser]:
    alice = await MatrixUser(session, client_url(net, "hs1.test")).register("alice")
    bob = await MatrixUser(session, client_url(net, "hs2.test")).register("bob")
    return alice, bob


async def shared_room(alice: MatrixUser, bob: MatrixUser, **create: Any) -> str:
    room = await alice.create_room(preset="private_chat", invite=[bob.user_id], **create)
    await bob.sync_until(lambda d: room in d["rooms"]["invite"])
    await bob.call("POST", f"/join/{q(room)}", {})
    await alice.sync_until(lambda d: any(
        e["type"] == "m.room.member" and e["state_key"] == bob.user_id and e["content"]["membership"] == "join"
        for e in d["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
    ))
    return room


async def test_invite_join_and_messages_both_ways(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    await alice.sync()
    await bob.sync()
    room = await alice.create_room(name="across", preset="private_chat")
    await alice.call("POST", f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    invited = await bob.sync_until(lambda d: room in d["rooms"]["invite"])
    stripped = invited["rooms"]["invite"][room]["invite_state"]["events"]
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "across" for e in stripped)
    assert any(e["type"] == "m.room.member" and e["sender"] == alice.user_id for e in stripped)

    await bob.call("POST", f"/join/{q(room)}", {})
    await alice.send(room, "hello from hs1")
    await bob.sync_until(lambda d: "hello from hs1" in timeline_bodies(d, room))
    await bob.send(room, "hello from hs2")
    await alice.sync_until(lambda d: "hello from hs2" in timeline_bodies(d, room))
    assert room in (await bob.call("GET", "/joined_rooms"))["joined_rooms"]


async def test_history_is_backfilled_for_a_late_joiner(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    room = await alice.create_room(preset="public_chat")
    for i in range(15):
        await alice.send(room, f"before {i}")
    await bob.call("POST", f"/join/{q(room)}", {}, params={"server_name": "hs1.test"})
    bodies = [e["content"].get("body") for e in await bob.messages(room, limit=100) if e["type"] == "m.room.message"]
    assert bodies == [f"before {i}" for i in range(15)]
    assert (await bob.state_ids(room)) == (await alice.state_ids(room))
    # The backfilled history is searchable on bob's server too (it was never sent live).
    found = await bob.call("POST", "/search", {"search_categories": {"room_events": {
        "search_term": "before", "order_by": "recent", "filter": {"limit": 20},
    }}})
    results = found["search_categories"]["room_events"]["results"]
    assert [r["result"]["content"]["body"] for r in results] == [f"before {i}" for i in reversed(range(15))]


async def test_typing_receipts_and_presence_across(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    room = await shared_room(alice, bob)
    await bob.call("PUT", f"/rooms/{q(room)}/typing/{q(bob.user_id)}", {"typing": True, "timeout": 20000})
    await alice.sync_until(lambda d: any(
        e["type"] == "m.typing" and bob.user_id in e["content"]["user_ids"]
        for e in d["rooms"]["join"].get(room, {}).get("ephemeral", {}).get("events", [])
    ))
    event_id = await alice.send(room, "read me")
    await bob.sync_until(lambda d: "read me" in timeline_bodies(d, room))
    await bob.call("POST", f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {})
    await alice.sync_until(lambda d: any(
        e["type"] == "m.receipt" and bob.user_id in e["content"].get(event_id, {}).get("m.read", {})
        for e in d["rooms"]["join"].get(room, {}).get("ephemeral", {}).get("events", [])
    ))
    await bob.call("PUT", f"/presence/{q(bob.user_id)}/status", {"presence": "unavailable", "status_msg": "lunch"})
    await alice.sync_until(lambda d: any(
        e["sender"] == bob.user_id and e["content"].get("status_msg") == "lunch"
        for e in d["presence"]["events"]
    ))


async def test_remote_profile_lookup(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    await bob.call("PUT", f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob on hs2"})
    assert (await alice.call("GET", f"/profile/{q(bob.user_id)}"))["displayname"] == "Bob on hs2"
    short = bob.user_id[1:].replace(":", "@", 1)  # bob@hs2.test
    assert (await alice.call("GET", f"/profile/{q(short)}"))["displayname"] == "Bob on hs2"
    await alice.call("GET", f"/profile/{q('@nobody:hs2.test')}", expect=404)
    await shared_room(alice, bob)  # the directory shows only users who share a room
    found = await alice.call("POST", "/user_directory/search", {"search_term": short})
    assert {"user_id": bob.user_id, "display_name": "Bob on hs2"} in found["results"]


async def test_a_remote_invite_carries_the_invitees_profile(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    await bob.call("PUT", f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob of hs2"})
    room = await alice.create_room(preset="private_chat")
    await alice.call("POST", f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    member = await alice.call("GET", f"/rooms/{q(room)}/state/m.room.member/{q(bob.user_id)}")
    assert member == {"membership": "invite", "displayname": "Bob of hs2"}


async def test_knock_across_servers(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    room = await alice.create_room(preset="private_chat", name="Knock across")
    await alice.call("PUT", f"/rooms/{q(room)}/state/m.room.join_rules/", {"join_rule": "knock"})
    await bob.call("POST", f"/knock/{q(room)}", {"reason": "hello"}, params={"via": "hs1.test"})
    got = await bob.sync_until(lambda d: room in d["rooms"].get("knock", {}))
    stripped = got["rooms"]["knock"][room]["knock_state"]["events"]
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "Knock across" for e in stripped)
    member = await alice.call("GET", f"/rooms/{q(room)}/state/m.room.member/{q(bob.user_id)}")
    assert member["membership"] == "knock" and member["reason"] == "hello"
    await alice.call("POST", f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    await bob.sync_until(lambda d: room in d["rooms"]["invite"])
    await bob.call("POST", f"/join/{q(room)}", {})
    assert room in (await bob.call("GET", "/joined_rooms"))["joined_rooms"]


async def test_restricted_join_across_servers(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    space = await alice.create_room(preset="public_chat")
    room = await alice.create_room(preset="private_chat")
    await alice.call("PUT", f"/rooms/{q(room)}/state/m.room.join_rules/", {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}],
    })
    await bob.call("POST", f"/join/{q(room)}", {}, params={"server_name": "hs1.test"}, expect=403)
    await bob.call("POST", f"/join/{q(space)}", {}, params={"server_name": "hs1.test"})
    await bob.call("POST", f"/join/{q(room)}", {}, params={"server_name": "hs1.test"})
    member = await alice.call("GET", f"/rooms/{q(room)}/state/m.room.member/{q(bob.user_id)}")
    assert member["membership"] == "join"
    assert member["join_authorised_via_users_server"] == alice.user_id


async def test_public_rooms_of_another_server(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    room = await alice.create_room(preset="public_chat", visibility="public", name="Listed on hs1")
    listed = await bob.call("GET", "/publicRooms", params={"server": "hs1.test"})
    assert room in [r["room_id"] for r in listed["chunk"]]
    found = await bob.call("POST", "/publicRooms", {"filter": {"generic_search_term": "listed on hs1"}},
                           params={"server": "hs1.test"})
    assert [r["room_id"] for r in found["chunk"]] == [room]
    assert [r["name"] for r in found["chunk"]] == ["Listed on hs1"]


async def test_leave_is_seen_across(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    room = await shared_room(alice, bob)
    await bob.call("POST", f"/rooms/{q(room)}/leave", {})

    async def bob_left() -> bool:
        members = await alice.call("GET", f"/rooms/{q(room)}/members")
        return any(e["state_key"] == bob.user_id and e["content"]["membership"] == "leave" for e in members["chunk"])

    await eventually(bob_left)
    assert room not in (await bob.call("GET", "/joined_rooms"))["joined_rooms"]


async def test_room_alias_resolves_across(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    local = f"across{bob.user_id[4:10]}"
    room = await alice.create_room(preset="public_chat", room_alias_name=local)
    found = await bob.call("GET", f"/directory/room/{q(f'#{local}:hs1.test')}")
    assert found["room_id"] == room and "hs1.test" in found["servers"]
    assert (await bob.call("POST", f"/join/{q(f'#{local}:hs1.test')}", {}))["room_id"] == room


async def test_simultaneous_sends_converge(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    alice, bob = await pair(net, session)
    room = await alice.create_room(preset="public_chat")
    await alice.call("PUT", f"/rooms/{q(room)}/state/m.room.power_levels", {
        **(await alice.call("GET", f"/rooms/{q(room)}/state/m.room.power_levels")),
        # A v12 room: alice, the creator, has infinite power and may not be listed.
        "users": {bob.user_id: 100},
    })
    await bob.call("POST", f"/join/{q(room)}", {}, params={"server_name": "hs1.test"})

    async def burst(user: MatrixUser, tag: str) -> None:
        for i in range(12):
            await user.send(room, f"{tag} {i}")
            if i % 4 == 0:
                await user.call("PUT", f"/rooms/{q(room)}/state/m.room.topic", {"topic": f"{tag} {i}"})

    await asyncio.gather(burst(alice, "a"), burst(bob, "b"))

    async def converged() -> bool:
        a, b = await alice.messages(room, 200), await bob.messages(room, 200)
        same_msgs = {e["event_id"] for e in a} == {e["event_id"] for e in b}
        return same_msgs and len([e for e in a if e["type"] == "m.room.message"]) == 24 and (
            await alice.state_ids(room) == await bob.state_ids(room)
        )

    await eventually(converged, within=45)


async def test_receiver_restarted_mid_burst_gets_every_message(
    net: dict[str, Any], session: aiohttp.ClientSession,
) -> None:
    alice, bob = await pair(net, session)
    room = await shared_room(alice, bob)
    sent = []
    for i in range(10):
        sent.append(f"burst {i}")
        await alice.send(room, f"burst {i}")
        if i == 3:
            run_testnet("stop", "hs2.test", "--dir", net["dir"])
    run_testnet("start", "hs2.test", "--dir", net["dir"])

    async def all_arrived() -> bool:
        got = [e["content"].get("body") for e in await bob.messages(room, 100) if e["type"] == "m.room.message"]
        return got == sent

    await eventually(all_arrived, within=60)


async def test_sender_crash_loses_nothing_it_acknowledged(
    net: dict[str, Any], session: aiohttp.ClientSession,
) -> None:
    """hs2 is down; alice's messages are acknowledged by hs1, which then crashes
    (SIGKILL). After both come back, hs2 has every message: the outbox is durable."""
    alice, bob = await pair(net, session)
    room = await shared_room(alice, bob)
    run_testnet("stop", "hs2.test", "--dir", net["dir"])
    sent = [f"queued {i}" for i in range(6)]
    for text in sent:
        await alice.send(room, text)
    status = json.loads(run_testnet("status", "--dir", net["dir"]).stdout)
    hs1_pid = next(s["pid"] for s in status["servers"] if s["name"] == "hs1.test")
    os.kill(hs1_pid, signal.SIGKILL)
    await eventually(lambda: asyncio.to_thread(_dead, hs1_pid), within=10)  # its ports are free once it is
    run_testnet("start", "hs1.test", "--dir", net["dir"])
    run_testnet("start", "hs2.test", "--dir", net["dir"])

    async def all_arrived() -> bool:
        got = [e["content"].get("body") for e in await bob.messages(room, 100) if e["type"] == "m.room.message"]
        return got == sent

    await eventually(all_arrived, within=60)


def _dead(pid: int) -> bool:
    """Whether ``pid`` has exited (gone, or a zombie awaiting its parent): its sockets are closed."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat.rpartition(b")")[2].split()[0] in (b"Z", b"X")


async def test_encrypted_nio_session_across_two_servers(
    net: dict[str, Any], tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Keys queried and claimed over federation, room keys sent as m.direct_to_device."""
    alice = await encrypted_client(client_url(net, "hs1.test"), tmp_path_factory.mktemp("alice"), "alice")
    bob = await encrypted_client(client_url(net, "hs2.test"), tmp_path_factory.mktemp("bob"), "bob")
    try:
        bob_read, alice_read = await encrypted_conversation(alice, bob)
    finally:
        await alice.close()
        await bob.close()
    assert bob_read == "the eagle has landed"
    assert alice_read == "the eagle is fed"


async def test_device_keys_and_to_device_messages_cross_servers(
    net: dict[str, Any], session: aiohttp.ClientSession,
) -> None:
    """Bob's new keys on hs2 reach Alice on hs1 (m.device_list_update, then /user/keys/query),
    and Alice's to-device message reaches Bob's device (m.direct_to_device)."""
    alice, bob = await pair(net, session)
    await shared_room(alice, bob)
    await alice.sync()
    device = (await bob.call("GET", "/account/whoami"))["device_id"]
    key = generate_signing_key(device)
    keys = sign_json({
        "user_id": bob.user_id, "device_id": device, "algorithms": ["m.megolm.v1.aes-sha2"],
        "keys": {f"ed25519:{device}": key.verify_key_base64},
    }, bob.user_id, key)
    await bob.call("POST", "/keys/upload", {"device_keys": keys})
    await alice.sync_until(lambda d: bob.user_id in d["device_lists"]["changed"])
    served = await alice.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}})
    assert served["device_keys"][bob.user_id] == {device: keys}, served

    await bob.sync()
    await alice.call("PUT", "/sendToDevice/m.test/t1", {"messages": {bob.user_id: {device: {"hi": "bob"}}}})
    got = await bob.sync_until(lambda d: d["to_device"]["events"])
    assert got["to_device"]["events"] == [{"type": "m.test", "sender": alice.user_id, "content": {"hi": "bob"}}]


async def test_a_device_list_change_reaches_a_peer_that_was_down(
    net: dict[str, Any], session: aiohttp.ClientSession,
) -> None:
    """m.device_list_update is kept in hs1's outbox like a PDU: Alice uploads keys while
    hs2 is down and hs1 restarts before hs2 is back; Bob still learns of the change."""
    alice, bob = await pair(net, session)
    await shared_room(alice, bob)
    await bob.sync()
    run_testnet("stop", "hs2.test", "--dir", net["dir"])
    device = (await alice.call("GET", "/account/whoami"))["device_id"]
    key = generate_signing_key(device)
    keys = sign_json({
        "user_id": alice.user_id, "device_id": device, "algorithms": ["m.megolm.v1.aes-sha2"],
        "keys": {f"ed25519:{device}": key.verify_key_base64},
    }, alice.user_id, key)
    await alice.call("POST", "/keys/upload", {"device_keys": keys})
    run_testnet("stop", "hs1.test", "--dir", net["dir"])
    run_testnet("start", "hs1.test", "--dir", net["dir"])
    run_testnet("start", "hs2.test", "--dir", net["dir"])
    await bob.sync_until(lambda d: alice.user_id in d["device_lists"]["changed"], within=60)


async def test_cross_signing_keys_uploaded_on_one_server_are_seen_on_the_other(
    net: dict[str, Any], session: aiohttp.ClientSession,
) -> None:
    """m.signing_key_update: Bob's client on hs2 is told to re-query Alice's keys when she
    uploads cross-signing keys on hs1, and the re-query finds her master key."""
    alice, bob = await pair(net, session)
    await shared_room(alice, bob)
    await bob.sync()
    master_key = generate_signing_key("master")
    master = {"user_id": alice.user_id, "usage": ["master"],
              "keys": {f"ed25519:{master_key.verify_key_base64}": master_key.verify_key_base64}}
    await alice.call("POST", "/keys/device_signing/upload", {"master_key": master})
    await bob.sync_until(lambda d: alice.user_id in d["device_lists"]["changed"])
    served = await bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert served["master_keys"][alice.user_id] == master, served


async def test_dissolving_a_group_removes_and_notifies_a_remote_member(
    net: dict[str, Any], session: aiohttp.ClientSession,
) -> None:
    """Issue 12: the owner on hs1 dissolves a group with a member on hs2; hs2's member is
    kicked over federation, sees the final notice, and the room closes."""
    alice, bob = await pair(net, session)
    room = await shared_room(alice, bob)
    url = f"{alice.base}/_tricolor/client/v1/rooms/{q(room)}/dissolve"
    headers = {"Authorization": f"Bearer {alice.token}"}
    async with session.post(url, json={"message": "This group is closed"}, headers=headers) as r:
        assert r.status == 200, await r.text()

    def removed(d: dict[str, Any]) -> bool:
        left = d["rooms"]["leave"].get(room)
        return left is not None
    synced = await bob.sync_until(removed)
    events = synced["rooms"]["leave"][room]["timeline"]["events"]
    mine = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert mine and mine[-1]["content"]["membership"] == "leave"
    assert mine[-1]["sender"] == alice.user_id and mine[-1]["content"]["reason"] == "This group is closed"
    notices = [e["content"]["body"] for e in await bob.messages(room) if e["type"] == "m.room.message"]
    assert notices[-1:] == ["This group is closed"]

    async def complete() -> bool:
        async with session.get(url, headers=headers) as r:
            return (await r.json())["results"][0]["status"] == "complete"
    await eventually(complete)
    # Nobody is left on hs1 to let bob back in: the group is gone.
    await bob.call("POST", f"/join/{q(room)}", {}, expect=404)


async def test_a_remote_users_master_key_signed_with_our_user_signing_key(
    net: dict[str, Any], session: aiohttp.ClientSession,
) -> None:
    """Spec "Cross-signing": Alice (hs1) verifies Bob (hs2) and signs his master key with
    her user-signing key. hs1 checks it against the key hs2 serves, keeps it, and shows it
    to Alice alone; signing one of Bob's devices is a failure (M_INVALID_SIGNATURE)."""
    alice, bob = await pair(net, session)
    carol = await MatrixUser(session, client_url(net, "hs1.test")).register("carol")
    mine, theirs = cross_signing_keys(alice.user_id), cross_signing_keys(bob.user_id)
    await alice.call("POST", "/keys/device_signing/upload", mine.upload_body())
    await bob.call("POST", "/keys/device_signing/upload", theirs.upload_body())
    device = (await bob.call("GET", "/account/whoami"))["device_id"]
    device_key = generate_signing_key(device)
    bobs_device = sign_json({
        "user_id": bob.user_id, "device_id": device, "algorithms": ["m.megolm.v1.aes-sha2"],
        "keys": {f"ed25519:{device}": device_key.verify_key_base64},
    }, bob.user_id, device_key)
    await bob.call("POST", "/keys/upload", {"device_keys": bobs_device})

    signed = sign_json(theirs.master, alice.user_id, mine.usk)
    got = await alice.call("POST", "/keys/signatures/upload", {bob.user_id: {
        theirs.master_id: signed, device: sign_json(bobs_device, alice.user_id, mine.usk),
    }})
    assert list(got["failures"]) == [bob.user_id], got
    assert {k: v["errcode"] for k, v in got["failures"][bob.user_id].items()} == {device: "M_INVALID_SIGNATURE"}

    seen = await alice.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}})
    assert seen["master_keys"][bob.user_id]["signatures"][alice.user_id] == signed["signatures"][alice.user_id]
    assert seen["device_keys"][bob.user_id][device] == bobs_device
    plain = await carol.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}})
    assert plain["master_keys"][bob.user_id] == theirs.master
    # A key Bob's server does not serve is refused.
    forged = cross_signing_keys(bob.user_id)
    got = await alice.call("POST", "/keys/signatures/upload", {bob.user_id: {
        forged.master_id: sign_json(forged.master, alice.user_id, mine.usk),
    }})
    assert forged.master_id in got["failures"][bob.user_id]


def _log_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


async def test_request_ids_reach_the_peer_s_log(net: dict[str, Any], session: aiohttp.ClientSession) -> None:
    """A join made for bob on hs2 asks hs1 (make_join, send_join) under bob's request id:
    the id hs2 answered bob with is in hs1's access log; a transaction hs1 sends later
    carries its own `txn-` id, logged by hs2."""
    alice, bob = await pair(net, session)
    room = await alice.create_room(preset="public_chat")
    async with session.post(
        f"{client_url(net, 'hs2.test')}/_matrix/client/v3/join/{q(room)}", json={},
        params={"server_name": "hs1.test"}, headers={"Authorization": f"Bearer {bob.token}"},
    ) as r:
        assert r.status == 200, await r.text()
        rid = r.headers["X-Request-Id"]
    hs1_log = Path(next(s["log"] for s in net["servers"] if s["name"] == "hs1.test"))
    hs2_log = Path(next(s["log"] for s in net["servers"] if s["name"] == "hs2.test"))
    lines = [ln for ln in _log_lines(hs1_log) if f"peer_request_id={rid}" in ln]
    assert any("/_matrix/federation/v1/make_join/" in ln for ln in lines), lines
    assert any("/_matrix/federation/v2/send_join/" in ln for ln in lines), lines
    # hs2's own lines for the request carry the same id.
    assert any(f"[{rid}]" in ln and "/join/" in ln for ln in _log_lines(hs2_log))

    await alice.send(room, "traced")
    await bob.sync_until(lambda d: "traced" in timeline_bodies(d, room))

    async def txn_logged() -> bool:
        return any("PUT /_matrix/federation/v1/send/" in ln and "peer_request_id=txn-" in ln
                   for ln in _log_lines(hs2_log))

    await eventually(txn_logged)
