"""Tricolor federating with Synapse: one Tricolor and one Synapse on loopback over TLS.

The module starts both servers once (about 10 s): Tricolor with ``generate-config`` +
``run`` (sqlite, server name ``127.0.0.1:<federation port>``) and Synapse with
``sytest-lite/synapse/start_peer.sh``, sharing one test CA. Tests talk to both client
APIs over HTTP with the sytest-lite helpers and register fresh users, so they do not
depend on each other. Waits are bounded (``FEDERATION_DEADLINE``), never timed.

Skipped when Synapse cannot be installed or started, unless TRICOLOR_REQUIRE_SYNAPSE=1.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.integration.nio_e2ee import encrypted_client, encrypted_conversation
from tests.interop.peers import (
    SYTEST_LITE,
    PeerUnavailable,
    SynapsePeer,
    TricolorProcess,
    free_ports,
    tail,
)

for _path in (SYTEST_LITE, SYTEST_LITE / "federation"):  # the black-box HTTP helpers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from fedtools import (  # noqa: E402
    server_of,
    state_event_ids,
    wait_membership,
    wait_same_state,
)
from sltools import (  # noqa: E402
    FEDERATION_DEADLINE,
    HS,
    User,
    bodies,
    ephemeral_events,
    eventually,
    find_event,
    invited,
    quote,
    timeline_events,
)

pytestmark = pytest.mark.interop


@dataclass
class Network:
    tricolor: TricolorProcess
    synapse: SynapsePeer
    ca_dir: Path

    def logs(self) -> str:
        return (
            f"--- Tricolor log ({self.tricolor.log}):\n{tail(self.tricolor.log, 30)}\n"
            f"--- Synapse log ({self.synapse.log}):\n{tail(self.synapse.log, 30)}"
        )


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    base = tmp_path_factory.mktemp("interop")
    ca_dir = base / "ca"
    tri_client, tri_fed, syn_client, syn_fed = free_ports(4)
    tricolor = TricolorProcess(base / "tricolor", ca_dir, tri_client, tri_fed)
    synapse = SynapsePeer(base / "synapse", ca_dir, syn_client, syn_fed)
    tricolor.start()  # creates the CA; a failure here is a Tricolor bug, never a skip
    try:
        try:
            synapse.start()
        except PeerUnavailable as exc:
            message = f"Synapse peer unavailable: {exc}"
            if os.environ.get("TRICOLOR_REQUIRE_SYNAPSE") == "1":
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        yield Network(tricolor, synapse, ca_dir)
    finally:
        synapse.stop()
        tricolor.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def tri(network: Network, session: aiohttp.ClientSession) -> HS:
    return HS(session, network.tricolor.client_url)


@pytest.fixture
def syn(network: Network, session: aiohttp.ClientSession) -> HS:
    return HS(session, network.synapse.client_url)


def _message(room: str, body: str):
    def check(s: dict) -> dict | None:
        for ev in timeline_events(s, room):
            if ev.get("type") == "m.room.message" and ev.get("content", {}).get("body") == body:
                return ev
        return None

    return check


async def _exchange_messages(a: User, b: User, room: str, tag: str) -> None:
    """``a`` and ``b`` each send a message; each sees the other's in /sync, and both
    servers list both messages in /messages."""
    a_since, b_since = (await a.sync())["next_batch"], (await b.sync())["next_batch"]
    from_a = await a.send_message(room, f"{tag}: from {server_of(a)}")
    _, ev = await b.sync_until(
        b_since, _message(room, f"{tag}: from {server_of(a)}"), deadline=FEDERATION_DEADLINE
    )
    assert (ev["event_id"], ev["sender"]) == (from_a, a.user_id)
    from_b = await b.send_message(room, f"{tag}: from {server_of(b)}")
    _, ev = await a.sync_until(
        a_since, _message(room, f"{tag}: from {server_of(b)}"), deadline=FEDERATION_DEADLINE
    )
    assert (ev["event_id"], ev["sender"]) == (from_b, b.user_id)
    for viewer in (a, b):
        chunk = (await viewer.messages(room, limit=50)).expect(200)["chunk"]
        assert {f"{tag}: from {server_of(a)}", f"{tag}: from {server_of(b)}"} <= set(
            bodies(chunk)
        ), f"{viewer.hs.base_url} /messages: {bodies(chunk)}"


async def _wait_profile(viewer: User, user_id: str, displayname: str) -> None:
    async def probe() -> bool:
        r = await viewer.profile(user_id)
        return r.status == 200 and r.json.get("displayname") == displayname

    await eventually(probe, what=f"{viewer.hs.base_url} shows {user_id} as {displayname!r}")
    r = await viewer.profile(user_id, "displayname")
    assert r.expect(200) == {"displayname": displayname}


# ---- (a) a Synapse user joins a Tricolor room ----------------------------------------------


async def test_synapse_user_joins_tricolor_room(network: Network, tri: HS, syn: HS) -> None:
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    (await alice.set_displayname("Alice on Tricolor")).expect(200)
    (await bob.set_displayname("Bob on Synapse")).expect(200)
    room = await alice.create_room(preset="public_chat", name="interop a")
    assert ":" not in room, room  # Tricolor's default is version 12 too

    r = await bob.join(room, via=[network.tricolor.server_name])
    assert r.expect(200)["room_id"] == room, network.logs()
    await wait_membership(alice, room, bob.user_id, "join")
    await wait_membership(bob, room, alice.user_id, "join")
    name = (await bob.get_state(room, "m.room.name")).expect(200)
    assert name["name"] == "interop a"

    await _exchange_messages(alice, bob, room, "a")

    # Remote profiles, both ways (federation profile queries).
    await _wait_profile(alice, bob.user_id, "Bob on Synapse")
    await _wait_profile(bob, alice.user_id, "Alice on Tricolor")
    member = (await alice.get_state(room, "m.room.member", bob.user_id)).expect(200)
    assert member.get("displayname") == "Bob on Synapse"


# ---- (b) a Tricolor user joins a Synapse room ----------------------------------------------


async def test_tricolor_user_joins_synapse_room(network: Network, tri: HS, syn: HS) -> None:
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    room = await bob.create_room(preset="public_chat", name="interop b")
    # Synapse's default room version (12, no default_room_version in its config): the
    # room id is the create event's hash and names no server.
    assert ":" not in room, room

    r = await alice.join(room, via=[network.synapse.server_name])
    assert r.expect(200)["room_id"] == room, network.logs()
    await wait_membership(bob, room, alice.user_id, "join")
    await wait_membership(alice, room, bob.user_id, "join")
    name = (await alice.get_state(room, "m.room.name")).expect(200)
    assert name["name"] == "interop b"
    version = (await alice.get_state(room, "m.room.create")).expect(200).get("room_version")
    assert version == "12"

    await _exchange_messages(alice, bob, room, "b")


async def test_tricolor_user_joins_synapse_room_by_alias(
    network: Network, tri: HS, syn: HS
) -> None:
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    localpart = bob.localpart.replace("sl", "interop", 1)
    room = await bob.create_room(preset="public_chat", room_alias_name=localpart)
    alias = f"#{localpart}:{network.synapse.server_name}"

    j = (await alice.get(f"directory/room/{quote(alias)}")).expect(200)
    assert j["room_id"] == room
    assert network.synapse.server_name in j["servers"]
    assert (await alice.join(alias)).expect(200)["room_id"] == room
    await wait_membership(bob, room, alice.user_id, "join")


async def test_synapse_user_looks_up_tricolor_alias(network: Network, tri: HS, syn: HS) -> None:
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    localpart = alice.localpart.replace("sl", "interop", 1)
    room = await alice.create_room(preset="public_chat", room_alias_name=localpart)
    alias = f"#{localpart}:{network.tricolor.server_name}"

    j = (await bob.get(f"directory/room/{quote(alias)}")).expect(200)
    assert j["room_id"] == room
    assert network.tricolor.server_name in j["servers"]
    assert (await bob.join(alias)).expect(200)["room_id"] == room
    await wait_membership(alice, room, bob.user_id, "join")


async def test_history_before_join_is_backfilled(network: Network, tri: HS, syn: HS) -> None:
    """Each side joins the other's room after messages were sent and pages back to them."""
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    for owner, joiner, origin in (
        (alice, bob, network.tricolor.server_name),
        (bob, alice, network.synapse.server_name),
    ):
        room = await owner.create_room(preset="public_chat")
        before = [f"early {i} from {origin}" for i in range(4)]
        for body in before:
            await owner.send_message(room, body)
        (await joiner.join(room, via=[origin])).expect(200)

        async def history(
            joiner: User = joiner, room: str = room, before: list[str] = before
        ) -> list[str] | None:
            seen: list[str] = []
            token = None
            for _ in range(10):
                params = {"limit": 10, **({"from": token} if token else {})}
                j = (await joiner.messages(room, **params)).expect(200)
                seen += bodies(j["chunk"])
                if not j["chunk"] or "end" not in j:
                    break
                token = j["end"]
            return seen if set(before) <= set(seen) else None

        seen = await eventually(history, what=f"{joiner.user_id} pages back to the early messages")
        assert [b for b in reversed(seen) if b in before] == before


# ---- (c) invites across, typing and receipts ------------------------------------------------


async def test_tricolor_invites_synapse_user(network: Network, tri: HS, syn: HS) -> None:
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    room = await alice.create_room(preset="private_chat", name="interop invite")
    since = (await bob.sync())["next_batch"]
    (await alice.invite(room, bob.user_id)).expect(200)

    def got_invite(s: dict) -> dict | None:
        inv = invited(s, room)
        events = (inv or {}).get("invite_state", {}).get("events", [])
        return find_event(events, type="m.room.member", state_key=bob.user_id)

    _, member = await bob.sync_until(since, got_invite, deadline=FEDERATION_DEADLINE)
    assert member["content"]["membership"] == "invite"
    assert member["sender"] == alice.user_id

    assert (await bob.join(room, via=[network.tricolor.server_name])).expect(200)["room_id"] == room
    await wait_membership(alice, room, bob.user_id, "join")

    # Typing: Tricolor -> Synapse.
    since = (await bob.sync())["next_batch"]
    (await alice.set_typing(room, True)).expect(200)

    def alice_typing(s: dict) -> bool:
        evs = ephemeral_events(s, room, "m.typing")
        return bool(evs) and alice.user_id in evs[-1]["content"]["user_ids"]

    await bob.sync_until(since, alice_typing, deadline=FEDERATION_DEADLINE)

    # Read receipt: Synapse -> Tricolor.
    event_id = await alice.send_message(room, "read this, Synapse")
    await eventually(
        lambda: _has_event(bob, room, event_id), what="Synapse has the message to acknowledge"
    )
    since = (await alice.sync())["next_batch"]
    (await bob.send_receipt(room, event_id)).expect(200)

    def bob_read(s: dict) -> dict | None:
        for ev in ephemeral_events(s, room, "m.receipt"):
            entry = ev["content"].get(event_id, {}).get("m.read", {}).get(bob.user_id)
            if entry is not None:
                return entry
        return None

    await alice.sync_until(since, bob_read, deadline=FEDERATION_DEADLINE)


async def test_synapse_invites_tricolor_user(network: Network, tri: HS, syn: HS) -> None:
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    room = await bob.create_room(preset="private_chat", name="interop invite back")
    since = (await alice.sync())["next_batch"]
    (await bob.invite(room, alice.user_id)).expect(200)

    def got_invite(s: dict) -> dict | None:
        inv = invited(s, room)
        events = (inv or {}).get("invite_state", {}).get("events", [])
        return find_event(events, type="m.room.member", state_key=alice.user_id)

    _, member = await alice.sync_until(since, got_invite, deadline=FEDERATION_DEADLINE)
    assert member["content"]["membership"] == "invite"
    assert (await alice.join(room, via=[network.synapse.server_name])).expect(200)[
        "room_id"
    ] == room
    await wait_membership(bob, room, alice.user_id, "join")

    # Typing: Synapse -> Tricolor; receipt: Tricolor -> Synapse.
    since = (await alice.sync())["next_batch"]
    (await bob.set_typing(room, True)).expect(200)

    def bob_typing(s: dict) -> bool:
        evs = ephemeral_events(s, room, "m.typing")
        return bool(evs) and bob.user_id in evs[-1]["content"]["user_ids"]

    await alice.sync_until(since, bob_typing, deadline=FEDERATION_DEADLINE)
    event_id = await bob.send_message(room, "read this, Tricolor")
    await eventually(
        lambda: _has_event(alice, room, event_id), what="Tricolor has the message to acknowledge"
    )
    since = (await bob.sync())["next_batch"]
    (await alice.send_receipt(room, event_id)).expect(200)

    def alice_read(s: dict) -> bool:
        return any(
            alice.user_id in ev["content"].get(event_id, {}).get("m.read", {})
            for ev in ephemeral_events(s, room, "m.receipt")
        )

    await bob.sync_until(since, alice_read, deadline=FEDERATION_DEADLINE)


async def test_synapse_user_rejects_and_leaves(network: Network, tri: HS, syn: HS) -> None:
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    room = await alice.create_room(preset="private_chat")
    since = (await bob.sync())["next_batch"]
    (await alice.invite(room, bob.user_id)).expect(200)
    await bob.sync_until(since, lambda s: invited(s, room), deadline=FEDERATION_DEADLINE)
    (await bob.leave(room)).expect(200)  # reject: make_leave/send_leave through Tricolor
    await wait_membership(alice, room, bob.user_id, "leave")

    public = await alice.create_room(preset="public_chat")
    (await bob.join(public, via=[network.tricolor.server_name])).expect(200)
    await wait_membership(alice, public, bob.user_id, "join")
    (await bob.leave(public)).expect(200)
    await wait_membership(alice, public, bob.user_id, "leave")


async def _has_event(user: User, room: str, event_id: str) -> bool:
    return (await user.get(f"rooms/{quote(room)}/event/{quote(event_id)}")).status == 200


# ---- (d) identical room state on both servers ----------------------------------------------


async def test_both_servers_end_with_identical_state(network: Network, tri: HS, syn: HS) -> None:
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    for owner, joiner, origin in (
        (alice, bob, network.tricolor.server_name),
        (bob, alice, network.synapse.server_name),
    ):
        room = await owner.create_room(preset="public_chat", name="state check")
        (await joiner.join(room, via=[origin])).expect(200)
        await wait_membership(owner, room, joiner.user_id, "join")
        # Power for the joiner, then state changes from both sides, one after another.
        pl = (await owner.get_state(room, "m.room.power_levels")).expect(200)
        pl.setdefault("users", {})[joiner.user_id] = 50
        pl_id = (await owner.put_state(room, "m.room.power_levels", pl)).expect(200)["event_id"]
        await eventually(lambda j=joiner, r=room, e=pl_id: _has_event(j, r, e), what="PL arrives")
        await _wait_state_is(joiner, room, ("m.room.power_levels", ""), pl_id)
        topic = (await joiner.put_state(room, "m.room.topic", {"topic": "from the joiner"})).expect(
            200
        )["event_id"]
        await _wait_state_is(owner, room, ("m.room.topic", ""), topic)
        name = (await owner.put_state(room, "m.room.name", {"name": "renamed"})).expect(200)[
            "event_id"
        ]
        await _wait_state_is(joiner, room, ("m.room.name", ""), name)
        await joiner.send_message(room, "done")

        state = await wait_same_state(owner, joiner, room)
        assert state[("m.room.topic", "")] == topic
        assert state[("m.room.name", "")] == name
        assert state[("m.room.member", joiner.user_id)]
        assert ("m.room.create", "") in state


async def _wait_state_is(user: User, room: str, key: tuple[str, str], event_id: str) -> None:
    async def probe() -> bool:
        return (await state_event_ids(user, room)).get(key) == event_id

    await eventually(probe, what=f"{user.hs.base_url} has {key} = {event_id}")


async def test_state_converges_after_a_fork(network: Network, tri: HS, syn: HS) -> None:
    """Synapse changes the topic while the Tricolor user sends a message (a fork): once
    both have both events, both must report the same state, with the new topic."""
    alice = await tri.register(prefix="ta")
    bob = await syn.register(prefix="sb")
    room = await bob.create_room(preset="public_chat")
    (await alice.join(room, via=[network.synapse.server_name])).expect(200)
    await wait_membership(bob, room, alice.user_id, "join")
    await wait_membership(alice, room, alice.user_id, "join")

    put_topic, fork = await asyncio.gather(
        bob.put_state(room, "m.room.topic", {"topic": "concurrent"}),
        alice.send_message(room, "sent while the topic changes"),
    )
    topic = put_topic.expect(200)["event_id"]
    await eventually(lambda: _has_event(alice, room, topic), what="Tricolor has the topic")
    await eventually(lambda: _has_event(bob, room, fork), what="Synapse has the message")
    state = await wait_same_state(alice, bob, room, deadline=10)
    assert state.get(("m.room.topic", "")) == topic


async def test_encrypted_nio_session_between_tricolor_and_synapse(
    network: Network, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Olm/Megolm through both servers: keys queried and claimed across, room keys sent as
    m.direct_to_device both ways."""
    alice = await encrypted_client(network.tricolor.client_url, tmp_path_factory.mktemp("alice"), "alice")
    bob = await encrypted_client(network.synapse.client_url, tmp_path_factory.mktemp("bob"), "bob")
    try:
        bob_read, alice_read = await encrypted_conversation(alice, bob)
    finally:
        await alice.close()
        await bob.close()
    assert bob_read == "the eagle has landed", network.logs()
    assert alice_read == "the eagle is fed", network.logs()
