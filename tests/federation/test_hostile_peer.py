"""A hostile peer against a real Tricolor: every bad request is refused and changes nothing.

The victim ("victim.test") is the whole app (``create_app``) on a test client; the
attacker ("evil.test", see ``peer.py``) is a TLS server the victim fetches keys from.
Each test starts from the same world: alice created a public room and mallory
(@mallory:evil.test) joined it through make_join + send_join. Each attack asserts
both the refusal (HTTP status and errcode, or the per-PDU error of /send) and that
nothing changed: the room state and alice's /messages are the same, and dropped
events are unknown to the victim. Every test ends by checking that the peer is not
blocked: a valid message from mallory still goes through.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from config.schema import DatabaseConfig, FederationConfig, HomeserverConfig
from homeserver.core.signing import generate_signing_key
from homeserver.services.clock import now_ms
from tests.client_api.test_keys import device_keys
from tests.federation.peer import EVIL, EVIL2, ROOM_VERSION, EvilPeer, EvilRoom
from tests.helpers import Matrix, Resp, User, assert_error, q

VICTIM = "victim.test"
V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"
_NO_BODY: Any = object()


# ---- the world: a victim, a peer, a room both are in -----------------------------------


@dataclass
class World:
    victim: Matrix
    peer: EvilPeer
    alice: User
    room: str
    evil_room: EvilRoom
    txn_ids: count = field(default_factory=lambda: count(1))

    @property
    def mallory(self) -> str:
        return self.peer.user("mallory")

    def next_txn(self) -> str:
        return f"evil-{now_ms()}-{next(self.txn_ids)}"

    async def fed(
        self, method: str, path: str, body: Any = _NO_BODY, *, origin: str | None = None,
        destination: str | None = VICTIM, key: Any = None, authorization: str | None = None,
        signed_body: Any = _NO_BODY,
    ) -> Resp:
        """A federation request from the peer; ``path`` is the exact target that is signed.

        ``signed_body`` signs other content than what is sent; ``authorization`` replaces
        the header outright ("" sends none)."""
        if authorization is None:
            content = body if signed_body is _NO_BODY else signed_body
            authorization = self.peer.auth(
                method, path, destination, None if content is _NO_BODY else content,
                origin=origin, key=key,
            )
        headers = {"Authorization": authorization} if authorization else {}
        return await raw(self.victim, method, path, body, headers)

    async def send_txn(
        self, pdus: list[Any], *, txn: str | None = None, edus: list[Any] | None = None,
        body_origin: str = EVIL, **kw: Any,
    ) -> Resp:
        body: dict[str, Any] = {"origin": body_origin, "origin_server_ts": now_ms(), "pdus": pdus}
        if edus is not None:
            body["edus"] = edus
        return await self.fed("PUT", f"{V1}/send/{txn or self.next_txn()}", body, **kw)

    def message(self, text: str, **kw: Any) -> dict[str, Any]:
        return self.peer.build_pdu(self.evil_room, "m.room.message", {"msgtype": "m.text", "body": text}, **kw)

    async def snapshot(self) -> tuple[dict[tuple[str, str], str], list[str]]:
        """What alice sees: current state ids and the event ids of the room's timeline."""
        messages = await self.alice.messages(self.room, limit=200)
        return await self.alice.state_ids(self.room), [e["event_id"] for e in messages["chunk"]]

    async def timeline(self) -> list[dict[str, Any]]:
        return (await self.alice.messages(self.room, limit=200))["chunk"]

    async def assert_unknown(self, event_id: str) -> None:
        """The victim has no such event (asked as the peer, which may see the room)."""
        r = await self.fed("GET", f"{V1}/event/{q(event_id)}")
        assert r.status == 404, (event_id, r.status, r.text)

    async def mallory_says(self, text: str) -> str:
        """A valid message from mallory: accepted, seen by alice; returns its id."""
        pdu = self.message(text)
        event_id = self.peer.event_id(pdu)
        r = await self.send_txn([pdu])
        assert r.status == 200, r.text
        assert r.json == {"pdus": {event_id: {}}}, r.json
        self.evil_room.advance(pdu, event_id)
        seen = [e for e in await self.timeline() if e["event_id"] == event_id]
        assert len(seen) == 1 and seen[0]["content"]["body"] == text, seen
        assert seen[0]["sender"] == self.mallory
        return event_id


async def raw(
    victim: Matrix, method: str, path: str, body: Any = _NO_BODY, headers: dict[str, str] | None = None,
) -> Resp:
    """One request with ``path`` sent byte for byte (yarl would decode %21, %3A, %40 and %24
    otherwise, and the X-Matrix signature covers the target exactly as sent)."""
    hdrs = dict(headers or {})
    data = None
    if body is not _NO_BODY:
        data = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    async with victim.client.request(method, URL(path, encoded=True), data=data, headers=hdrs) as r:
        text = await r.text()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Resp(r.status, r.headers, text, parsed)


def assert_pdu_refused(r: Resp, event_id: str) -> None:
    """/send answered 200, and the PDU got an error (or was dropped without a word)."""
    assert r.status == 200, r.text
    result = r.json["pdus"].get(event_id)
    assert result is None or isinstance(result.get("error"), str), r.json


def assert_pdu_error(r: Resp, event_id: str) -> None:
    """/send answered 200 with an error for exactly this PDU."""
    assert r.status == 200, r.text
    error = r.json["pdus"].get(event_id, {}).get("error")
    assert isinstance(error, str), r.json
    assert not error.startswith("internal error"), error  # refused by a check, not by a crash


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[EvilPeer]:
    evil = await EvilPeer(tmp_path).start()
    yield evil
    await evil.close()


@pytest.fixture
async def victim(
    tmp_path: Path, peer: EvilPeer, aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> Matrix:
    from homeserver.app import create_app

    cfg = HomeserverConfig(
        server_name=VICTIM,
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'victim.db'}", pool_size=5),
        signing_key_path=str(tmp_path / "keys" / "signing.key"),
        token_secret_path=str(tmp_path / "keys" / "token.secret"),
        media_store_path=str(tmp_path / "media"),
        bcrypt_rounds=4,
        federation=FederationConfig(static_map=peer.static_map(), ca_file=peer.ca_cert),
        ip_range_whitelist=peer.ip_range_whitelist,
    )
    return Matrix(await aiohttp_client(await create_app(cfg)), VICTIM)


async def join_room(victim: Matrix, peer: EvilPeer, room: str, user: str) -> tuple[dict[str, Any], Resp]:
    """make_join + send_join as ``user``'s server; returns the signed join and the answer."""
    path = f"{V1}/make_join/{q(room)}/{q(user)}?ver=10&ver=11"
    made = await raw(victim, "GET", path, headers={"Authorization": peer.auth("GET", path, VICTIM)})
    assert made.status == 200, made.text
    assert made.json["room_version"] == "10"
    template = made.json["event"]
    assert (template["type"], template["state_key"], template["content"]["membership"]) == (
        "m.room.member", user, "join",
    )
    template["origin"] = peer.server_name
    template["origin_server_ts"] = now_ms()
    join = peer.sign_pdu(template)
    path = f"{V2}/send_join/{q(room)}/{q(peer.event_id(join))}"
    sent = await raw(victim, "PUT", path, join, {"Authorization": peer.auth("PUT", path, VICTIM, join)})
    return join, sent


@pytest.fixture
async def world(victim: Matrix, peer: EvilPeer) -> World:
    alice = await victim.register("alice")
    # The scripted peer speaks room version 10 (tests/federation/peer.py ROOM_VERSION).
    room = await alice.create_room(preset="public_chat", name="Victim's room", room_version=ROOM_VERSION)
    mallory = peer.user("mallory")
    join, sent = await join_room(victim, peer, room, mallory)
    assert sent.status == 200, sent.text
    join_id = peer.event_id(join)
    state = {(e["type"], e["state_key"]): peer.event_id(e) for e in sent.json["state"]}
    assert ("m.room.create", "") in state and ("m.room.power_levels", "") in state
    state[("m.room.member", mallory)] = join_id
    # alice sees mallory joined, through the client API.
    assert (await alice.state(room, "m.room.member", mallory))["membership"] == "join"
    assert (await alice.state_ids(room))[("m.room.member", mallory)] == join_id
    assert room in await alice.joined_rooms()
    return World(victim, peer, alice, room, EvilRoom(room, state, [join_id], join["depth"]))


# ---- 1. transaction authentication -------------------------------------------------------


async def attack_transaction_auth(w: World) -> None:
    before = await w.snapshot()
    pdu = w.message("sneaked in without valid X-Matrix")
    event_id = w.peer.event_id(pdu)
    txn = w.next_txn()
    body = {"origin": EVIL, "origin_server_ts": now_ms(), "pdus": [pdu]}
    path = f"{V1}/send/{txn}"

    # No Authorization header at all.
    r = await w.fed("PUT", path, body, authorization="")
    assert r.status == 401, r.text
    assert_error(r.json, "M_UNAUTHORIZED")

    # A Bearer token is not X-Matrix.
    r = await w.fed("PUT", path, body, authorization="Bearer not-a-server")
    assert r.status == 401, r.text
    assert_error(r.json, "M_UNAUTHORIZED")

    # Signed with a key that is not evil.test's (same key id, other key).
    r = await w.fed("PUT", path, body, key=generate_signing_key(w.peer.key.version))
    assert r.status == 401, r.text
    assert_error(r.json, "M_UNAUTHORIZED")

    # A valid signature over other content than the body sent.
    r = await w.fed("PUT", path, body, signed_body={**body, "pdus": []})
    assert r.status == 401, r.text
    assert_error(r.json, "M_UNAUTHORIZED")

    # A corrupted signature.
    good = w.peer.auth("PUT", path, VICTIM, body)
    bad = good.replace('sig="', 'sig="AAAA', 1)
    r = await w.fed("PUT", path, body, authorization=bad)
    assert r.status == 401, r.text
    assert_error(r.json, "M_UNAUTHORIZED")

    # No sig parameter.
    r = await w.fed("PUT", path, body, authorization=good.split(",sig=")[0])
    assert r.status == 401, r.text
    assert_error(r.json, "M_UNAUTHORIZED")

    # Claiming to be the victim itself, or evil2.test, while holding only evil.test's key.
    for claimed in (VICTIM, EVIL2):
        r = await w.fed("PUT", path, body, origin=claimed, key=w.peer.key)
        assert r.status == 401, (claimed, r.text)
        assert_error(r.json, "M_UNAUTHORIZED")

    # Correctly signed, but for another destination: 401, as the spec's
    # request authentication section says.
    r = await w.fed("PUT", path, body, destination="elsewhere.test")
    assert r.status == 401, r.text
    assert_error(r.json, "M_UNAUTHORIZED")

    # Correctly signed by evil.test, but the body says it comes from evil2.test.
    r = await w.fed("PUT", path, {**body, "origin": EVIL2})
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")

    assert await w.snapshot() == before
    await w.assert_unknown(event_id)

    # None of the refusals was remembered as the answer to this txn id.
    r = await w.fed("PUT", path, body)
    assert r.status == 200, r.text
    assert r.json == {"pdus": {event_id: {}}}
    w.evil_room.advance(pdu, event_id)
    assert [e["event_id"] for e in await w.timeline()].count(event_id) == 1


async def test_transaction_auth(world: World) -> None:
    await attack_transaction_auth(world)
    await world.mallory_says("still here")


# ---- 2. PDU signatures --------------------------------------------------------------------


async def attack_bad_pdu_signatures(w: World) -> None:
    before = await w.snapshot()
    # Tampered after signing: origin_server_ts is covered by the signature.
    tampered = w.message("tampered")
    tampered["origin_server_ts"] += 1
    # A signature that is not base64 / not evil.test's key / signed by evil2.test only.
    garbled = w.message("garbled")
    garbled["signatures"][EVIL] = {w.peer.key.key_id: "not base64!"}
    foreign = w.message("foreign key")
    foreign["signatures"] = w.peer.sign_pdu(w.peer.copy(foreign), signer=EVIL2)["signatures"]
    unsigned = w.message("no signatures")
    unsigned["signatures"] = {}
    pdus = [tampered, garbled, foreign, unsigned]
    ids = [w.peer.event_id(p) for p in pdus]
    r = await w.send_txn(pdus)
    for event_id in ids:
        assert_pdu_error(r, event_id)
    assert await w.snapshot() == before
    for event_id in ids:
        await w.assert_unknown(event_id)
    bodies = [e["content"].get("body") for e in await w.timeline()]
    assert not {"tampered", "garbled", "foreign key", "no signatures"} & set(bodies)


async def test_bad_pdu_signature(world: World) -> None:
    await attack_bad_pdu_signatures(world)
    await world.mallory_says("still here")


# ---- 3. forged sender ----------------------------------------------------------------------


async def attack_forged_sender(w: World) -> None:
    before = await w.snapshot()
    alice = w.alice.user_id
    # alice's "message", signed by evil.test only (auth events alice would use).
    forged = w.peer.build_pdu(
        w.evil_room, "m.room.message", {"msgtype": "m.text", "body": "I am alice, honest"},
        sender=alice, auth_events=[w.evil_room.state[k] for k in (
            ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", alice))],
    )
    # evil2.test's user, signed by evil.test.
    cousin = w.message("I am from evil2", sender=w.peer.user("carol", EVIL2))
    ids = [w.peer.event_id(forged), w.peer.event_id(cousin)]
    r = await w.send_txn([forged, cousin])
    for event_id in ids:
        assert_pdu_error(r, event_id)
    assert await w.snapshot() == before
    for event_id in ids:
        await w.assert_unknown(event_id)


async def test_forged_sender(world: World) -> None:
    await attack_forged_sender(world)
    await world.mallory_says("still here")


# ---- 4. size and format --------------------------------------------------------------------


def malformed_pdus(w: World) -> list[dict[str, Any]]:
    """Correctly hashed and signed PDUs that break the format rules
    (https://spec.matrix.org/v1.19/rooms/v10/#event-format)."""
    base = w.message("template")

    def variant(**changes: Any) -> dict[str, Any]:
        pdu = w.peer.copy(base)
        for k, v in changes.items():
            if v is _NO_BODY:
                pdu.pop(k, None)
            else:
                pdu[k] = v
        return w.peer.sign_pdu(pdu)

    return [
        variant(content={"msgtype": "m.text", "body": "x" * 70_000}),  # > 65536 bytes
        variant(type=_NO_BODY),  # missing type
        variant(depth="7"),  # depth not an integer
        variant(depth=True),  # a bool is not an integer either
        variant(content="just a string"),  # content not an object
        variant(content=["a", "list"]),
        variant(type="m.room.message" + "x" * 256),  # type longer than 255 bytes
        variant(prev_events=[f"$fake{i}" for i in range(21)]),  # > 20 prev_events
        variant(room_id=w.room, sender="not-a-user-id"),
    ]


async def attack_malformed(w: World) -> None:
    before = await w.snapshot()
    pdus = malformed_pdus(w)
    ids = [w.peer.event_id(p) for p in pdus]
    # Not even objects, or in no room we know: ignored.
    # (Floats and integers beyond 2**53 cannot even be X-Matrix-signed: not canonical JSON.)
    junk: list[Any] = [
        "a string", 42, None, [], {"room_id": 5},
        {**w.message("elsewhere"), "room_id": "!nope:evil.test"},
    ]
    r = await w.send_txn([*pdus, *junk])
    assert r.status == 200, r.text
    for event_id in ids:
        assert_pdu_refused(r, event_id)
    assert all("error" in v for v in r.json["pdus"].values()), r.json
    assert await w.snapshot() == before
    for event_id in ids:
        await w.assert_unknown(event_id)

    # More than 50 PDUs (all valid on their own) or more than 100 EDUs: 400, nothing kept.
    many = [w.message(f"flood {i}") for i in range(51)]
    r = await w.send_txn(many)
    assert r.status == 400, r.text
    r = await w.send_txn([], edus=[{"edu_type": "m.typing", "content": {}}] * 101)
    assert r.status == 400, r.text
    assert await w.snapshot() == before
    await w.assert_unknown(w.peer.event_id(many[0]))

    # A transaction body that is not an object / not JSON.
    for bad in ([], "pdus", {"pdus": "no"}, {"pdus": [], "edus": {}}):
        r = await w.fed("PUT", f"{V1}/send/{w.next_txn()}", bad)
        assert r.status == 400, (bad, r.text)
    assert await w.snapshot() == before


async def test_oversized_and_malformed_pdus(world: World) -> None:
    await attack_malformed(world)
    await world.mallory_says("still here")


# ---- 5. replayed transactions -----------------------------------------------------------


async def attack_replay(w: World) -> None:
    pdu = w.message("said once")
    event_id = w.peer.event_id(pdu)
    txn = w.next_txn()
    first = await w.send_txn([pdu], txn=txn)
    assert first.status == 200 and first.json == {"pdus": {event_id: {}}}, first.text
    w.evil_room.advance(pdu, event_id)
    # The same txn again, then the same txn id with other content: the stored answer.
    again = await w.send_txn([pdu], txn=txn)
    assert (again.status, again.json) == (200, first.json)
    other = w.message("smuggled under an old txn id")
    other_id = w.peer.event_id(other)
    swapped = await w.send_txn([other], txn=txn)
    assert (swapped.status, swapped.json) == (200, first.json)
    await w.assert_unknown(other_id)
    # The same PDU in a new transaction: already known, no error, not stored twice.
    fresh = await w.send_txn([pdu])
    assert fresh.status == 200 and fresh.json["pdus"].get(event_id) == {}, fresh.text
    timeline = await w.timeline()
    assert [e["event_id"] for e in timeline].count(event_id) == 1
    assert [e["content"].get("body") for e in timeline].count("said once") == 1
    assert other_id not in {e["event_id"] for e in timeline}


async def test_replayed_transaction(world: World) -> None:
    await attack_replay(world)
    await world.mallory_says("still here")


# ---- 6. content hash mismatch: kept, redacted ----------------------------------------------


async def attack_bad_content_hash(w: World) -> None:
    pdu = w.message("what mallory signed")
    event_id = w.peer.event_id(pdu)
    # The signature covers the redacted form (no message content), so it still verifies.
    pdu["content"] = {"msgtype": "m.text", "body": "swapped in transit", "evil": True}
    assert w.peer.event_id(pdu) == event_id
    r = await w.send_txn([pdu])
    assert r.status == 200, r.text
    assert r.json == {"pdus": {event_id: {}}}, r.json  # not a rejection (PDU receipt check 3)
    w.evil_room.advance(pdu, event_id)
    seen = [e for e in await w.timeline() if e["event_id"] == event_id]
    assert len(seen) == 1, seen
    assert seen[0]["content"] == {}, seen[0]
    assert seen[0]["sender"] == w.mallory
    fetched = await w.alice.get(f"/rooms/{q(w.room)}/event/{q(event_id)}")
    assert fetched["content"] == {}, fetched
    # Over federation it is served in its redacted form too, never the swapped content.
    r = await w.fed("GET", f"{V1}/event/{q(event_id)}")
    assert r.status == 200, r.text
    assert r.json["pdus"][0]["content"] == {}, r.json


async def test_content_hash_mismatch_stored_redacted(world: World) -> None:
    await attack_bad_content_hash(world)
    await world.mallory_says("still here")


# ---- 7. events mallory may not send ---------------------------------------------------------


async def attack_unauthorised_events(w: World) -> None:
    before = await w.snapshot()
    pl_before = await w.alice.state(w.room, "m.room.power_levels")
    alice = w.alice.user_id
    power_grab = w.peer.build_pdu(
        w.evil_room, "m.room.power_levels",
        {**pl_before, "users": {**pl_before.get("users", {}), w.mallory: 100}}, state_key="",
    )
    rename = w.peer.build_pdu(w.evil_room, "m.room.name", {"name": "pwned"}, state_key="")
    kick = w.peer.build_pdu(
        w.evil_room, "m.room.member", {"membership": "leave"}, state_key=alice,
    )
    # A user of evil.test who never joined, talking in the room.
    eve = w.peer.user("eve")
    outsider = w.message("let me in", sender=eve)
    pdus = [power_grab, rename, kick, outsider]
    ids = [w.peer.event_id(p) for p in pdus]
    r = await w.send_txn(pdus)
    for event_id in ids:
        assert_pdu_error(r, event_id)
    assert await w.snapshot() == before
    assert await w.alice.state(w.room, "m.room.power_levels") == pl_before
    assert (await w.alice.state(w.room, "m.room.name"))["name"] == "Victim's room"
    assert (await w.alice.state(w.room, "m.room.member", alice))["membership"] == "join"
    assert ("m.room.member", eve) not in await w.alice.state_ids(w.room)
    # Sent again: still refused (the rejection is remembered), and never served back.
    again = await w.send_txn([power_grab])
    assert_pdu_error(again, ids[0])
    await w.assert_unknown(ids[0])
    assert await w.snapshot() == before


async def test_unauthorised_events_rejected(world: World) -> None:
    await attack_unauthorised_events(world)
    await world.mallory_says("still here")


# ---- 8. invites ------------------------------------------------------------------------------


def invite_pdu(
    w: World, target: str, room_id: str, *, sender: str | None = None, signer: str | None = None,
    membership: str = "invite",
) -> dict[str, Any]:
    """An invite into a room that lives on the peer (its ids need only be well formed)."""
    return w.peer.sign_pdu({
        "room_id": room_id, "sender": sender or w.mallory, "type": "m.room.member",
        "state_key": target, "content": {"membership": membership}, "origin": EVIL,
        "origin_server_ts": now_ms(), "depth": 5, "prev_events": ["$lair_prev"],
        "auth_events": ["$lair_create", "$lair_pl", "$lair_join"],
    }, signer=signer)


async def put_invite(
    w: World, pdu: dict[str, Any], *, room_version: str | None = "10", event_id: str | None = None,
    **kw: Any,
) -> Resp:
    body: dict[str, Any] = {"event": pdu, "invite_room_state": []}
    if room_version is not None:
        body["room_version"] = room_version
    path = f"{V2}/invite/{q(pdu['room_id'])}/{q(event_id or w.peer.event_id(pdu))}"
    return await w.fed("PUT", path, body, **kw)


async def invited_rooms(user: User) -> set[str]:
    return set((await user.sync(timeout=0))["rooms"].get("invite", {}))


async def attack_invites(w: World, bob: User) -> None:
    before = await w.snapshot()
    invites_before = await invited_rooms(bob)
    lair = f"!lair{now_ms()}:{EVIL}"

    # A room version we do not know: 400.
    r = await put_invite(w, invite_pdu(w, bob.user_id, f"{lair}v0"), room_version="999")
    assert r.status == 400, r.text
    assert_error(r.json, "M_INCOMPATIBLE_ROOM_VERSION")
    # None at all means v1, whose events carry their own event_id; this one has none.
    r = await put_invite(w, invite_pdu(w, bob.user_id, f"{lair}v1"), room_version=None)
    assert r.status == 403, r.text

    # A local user who does not exist: 404.
    r = await put_invite(w, invite_pdu(w, f"@nobody:{VICTIM}", f"{lair}nobody"))
    assert r.status == 404, r.text
    assert_error(r.json, "M_NOT_FOUND")

    # The sender is not from the origin: evil2.test's user, properly signed by evil2.test,
    # but sent by evil.test; then the same user signed by evil.test only.
    carol = w.peer.user("carol", EVIL2)
    r = await put_invite(w, invite_pdu(w, bob.user_id, f"{lair}c1", sender=carol, signer=EVIL2))
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")
    r = await put_invite(w, invite_pdu(w, bob.user_id, f"{lair}c2", sender=carol))
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")

    # Not an invite, or not the event the URL names.
    r = await put_invite(w, invite_pdu(w, bob.user_id, f"{lair}j", membership="join"))
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")
    pdu = invite_pdu(w, bob.user_id, f"{lair}id")
    r = await put_invite(w, pdu, event_id="$someotherevent")
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")
    # Tampered after signing.
    pdu = invite_pdu(w, bob.user_id, f"{lair}sig")
    pdu["depth"] += 1
    r = await put_invite(w, pdu)
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")

    assert await invited_rooms(bob) == invites_before
    assert await w.snapshot() == before

    # The control: a proper invite is countersigned and reaches bob, even with junk for
    # invite_room_state (which must not break bob's /sync).
    pdu = invite_pdu(w, bob.user_id, f"{lair}ok")
    body = {"event": pdu, "room_version": "10", "invite_room_state": ["junk", 5, {"type": []}]}
    r = await w.fed("PUT", f"{V2}/invite/{q(pdu['room_id'])}/{q(w.peer.event_id(pdu))}", body)
    assert r.status == 200, r.text
    assert VICTIM in r.json["event"]["signatures"] and EVIL in r.json["event"]["signatures"]
    assert await invited_rooms(bob) == invites_before | {pdu["room_id"]}


async def test_bad_invites(world: World) -> None:
    bob = await world.victim.register("bob")
    await attack_invites(world, bob)
    await world.mallory_says("still here")


# ---- 9. make_join / send_join abuse ---------------------------------------------------------


async def attack_joins(w: World) -> None:
    before = await w.snapshot()
    alice = w.alice.user_id
    carol = w.peer.user("carol", EVIL2)

    # make_join for a user of another server: 403.
    for user in (carol, alice):
        path = f"{V1}/make_join/{q(w.room)}/{q(user)}?ver=10"
        r = await w.fed("GET", path)
        assert r.status == 403, (user, r.text)
        assert_error(r.json, "M_FORBIDDEN")

    async def send_join(pdu: dict[str, Any], event_id: str | None = None) -> Resp:
        path = f"{V2}/send_join/{q(w.room)}/{q(event_id or w.peer.event_id(pdu))}"
        return await w.fed("PUT", path, pdu)

    eve = w.peer.user("eve")
    refused = [
        # not a membership event at all
        w.message("a message through send_join"),
        # mallory's leave, mallory's invite of eve, a ban of alice
        w.peer.build_pdu(w.evil_room, "m.room.member", {"membership": "leave"}, state_key=w.mallory),
        w.peer.build_pdu(w.evil_room, "m.room.member", {"membership": "invite"}, state_key=eve),
        w.peer.build_pdu(w.evil_room, "m.room.member", {"membership": "ban"}, state_key=alice),
        # a join of somebody else (state_key != sender)
        w.peer.build_pdu(w.evil_room, "m.room.member", {"membership": "join"}, state_key=eve),
        # a join of evil2.test's user, signed by evil2.test, sent by evil.test
        w.peer.build_pdu(
            w.evil_room, "m.room.member", {"membership": "join"}, sender=carol, state_key=carol,
            signer=EVIL2,
        ),
        # a join of a victim user, signed by evil.test
        w.peer.build_pdu(
            w.evil_room, "m.room.member", {"membership": "join"}, sender=f"@bob:{VICTIM}",
            state_key=f"@bob:{VICTIM}",
        ),
    ]
    for pdu in refused:
        r = await send_join(pdu)
        assert r.status in (400, 403), (pdu["type"], pdu.get("state_key"), r.text)
        assert_error(r.json, "M_FORBIDDEN" if r.status == 403 else "M_BAD_JSON")

    # A real join for eve, tampered after signing; then under another event id.
    join = w.peer.build_pdu(w.evil_room, "m.room.member", {"membership": "join"}, sender=eve, state_key=eve)
    tampered = {**join, "origin_server_ts": join["origin_server_ts"] + 1}
    r = await send_join(tampered)
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")
    r = await send_join(join, event_id="$not_this_one")
    assert r.status == 400, r.text
    assert_error(r.json, "M_BAD_JSON")

    assert await w.snapshot() == before
    for pdu in [*refused, tampered, join]:
        await w.assert_unknown(w.peer.event_id(pdu))
    state = await w.alice.state_ids(w.room)
    assert ("m.room.member", eve) not in state and ("m.room.member", carol) not in state
    assert (await w.alice.state(w.room, "m.room.member", w.mallory))["membership"] == "join"
    assert (await w.alice.state(w.room, "m.room.member", alice))["membership"] == "join"


async def test_join_abuse(world: World) -> None:
    await attack_joins(world)
    await world.mallory_says("still here")


# ---- 10. after all of it, the peer still talks ------------------------------------------


async def test_peer_not_blocked_after_everything(world: World) -> None:
    bob = await world.victim.register("bob")
    await attack_transaction_auth(world)
    await attack_bad_pdu_signatures(world)
    await attack_forged_sender(world)
    await attack_malformed(world)
    await attack_replay(world)
    await attack_bad_content_hash(world)
    await attack_unauthorised_events(world)
    await attack_invites(world, bob)
    await attack_joins(world)
    first = await world.mallory_says("after all that, hello")
    second = await world.mallory_says("and again")
    ids = [e["event_id"] for e in await world.timeline()]
    assert ids.index(second) < ids.index(first)  # /messages dir=b: newest first
    # The peer can still join another of its users, too.
    eve = world.peer.user("eve")
    _join, sent = await join_room(world.victim, world.peer, world.room, eve)
    assert sent.status == 200, sent.text
    assert (await world.alice.state(world.room, "m.room.member", eve))["membership"] == "join"


# ---- beyond the list: lies told when the victim asks back, ACLs, txn ids of others --------


def forged_power_levels(w: World, pl: dict[str, Any], **users: int) -> dict[str, Any]:
    """mallory's own power levels event granting what she likes: well signed, never authorised."""
    return w.peer.build_pdu(
        w.evil_room, "m.room.power_levels", {**pl, "users": {**pl.get("users", {}), **users}},
        state_key="",
    )


async def test_auth_chain_poisoning(world: World) -> None:
    """A PL change whose auth_events name a forged PL event the victim must fetch
    (/event_auth answers with it): refused, the room's power levels unchanged."""
    w = world
    before = await w.snapshot()
    pl = await w.alice.state(w.room, "m.room.power_levels")
    fake_pl = forged_power_levels(w, pl, **{w.mallory: 100})
    fake_id = w.peer.event_id(fake_pl)
    grab = w.peer.build_pdu(
        w.evil_room, "m.room.power_levels", {**pl, "users": {**pl["users"], w.mallory: 100, w.peer.user("eve"): 100}},
        state_key="", auth_events=[w.evil_room.state[("m.room.create", "")], fake_id,
                                   w.evil_room.state[("m.room.member", w.mallory)]],
    )
    grab_id = w.peer.event_id(grab)
    w.peer.answers[f"{V1}/event_auth/"] = {"auth_chain": [fake_pl]}
    r = await w.send_txn([grab])
    assert_pdu_error(r, grab_id)
    assert await w.snapshot() == before
    assert await w.alice.state(w.room, "m.room.power_levels") == pl
    await w.mallory_says("still here")


async def test_forged_state_on_a_fork(world: World) -> None:
    """mallory builds on an event the victim never saw; asked for the state before it,
    the peer answers with a forged power levels event. Whatever the victim accepts,
    the room's state must not change: the forged PL loses state resolution, and a PL
    change built on top of it is rejected or soft-failed (never current state)."""
    w = world
    pl = await w.alice.state(w.room, "m.room.power_levels")
    state_before = await w.alice.state_ids(w.room)
    fake_pl = forged_power_levels(w, pl, **{w.mallory: 100})
    fake_id = w.peer.event_id(fake_pl)
    ghost = w.message("never sent to the victim")
    ghost_id = w.peer.event_id(ghost)
    # The fork: state after the ghost (per the peer) has mallory at 100.
    fork = EvilRoom(w.room, {**w.evil_room.state, ("m.room.power_levels", ""): fake_id}, [ghost_id], ghost["depth"])
    state_pdus = await fetch_state_pdus(w)
    state_pdus = [p for p in state_pdus if p["type"] != "m.room.power_levels"] + [fake_pl]
    w.peer.answers[f"{V1}/get_missing_events/"] = {"events": []}
    w.peer.answers[f"{V1}/event_auth/"] = {"auth_chain": [fake_pl]}
    w.peer.answers[f"{V1}/state/"] = {"pdus": state_pdus, "auth_chain": []}
    w.peer.answers[f"{V1}/state_ids/"] = {
        "pdu_ids": [w.peer.event_id(p) for p in state_pdus], "auth_chain_ids": [],
    }
    w.peer.answers[f"{V1}/event/"] = {"origin": EVIL, "origin_server_ts": now_ms(), "pdus": [ghost]}

    probe = w.peer.build_pdu(fork, "m.room.message", {"msgtype": "m.text", "body": "on the fork"})
    probe_id = w.peer.event_id(probe)
    r = await w.send_txn([probe])
    assert r.status == 200, r.text
    accepted = r.json["pdus"].get(probe_id) == {}
    if accepted:
        fork.advance(probe, probe_id)
    grab = w.peer.build_pdu(
        fork, "m.room.power_levels",
        {**pl, "users": {**pl["users"], w.mallory: 100, w.peer.user("eve"): 100}}, state_key="",
    )
    grab_id = w.peer.event_id(grab)
    r = await w.send_txn([grab])
    assert r.status == 200, r.text
    # Rejected (an error) or soft-failed (no error, but never shown nor current state).
    assert await w.alice.state(w.room, "m.room.power_levels") == pl
    assert await w.alice.state_ids(w.room) == state_before
    assert grab_id not in {e["event_id"] for e in await w.timeline()}
    assert fake_id not in {e["event_id"] for e in await w.timeline()}
    # alice keeps her power: her own PL change still goes through.
    await w.alice.put_state(w.room, "m.room.power_levels", {**pl, "users": {**pl["users"], "@carl:victim.test": 10}})
    w.peer.answers.clear()


async def fetch_state_pdus(w: World) -> list[dict[str, Any]]:
    """The room's current state as PDUs, asked of the victim the way a peer does."""
    r = await w.fed("GET", f"{V1}/state/{q(w.room)}?event_id={q(w.evil_room.prev_events[0])}")
    assert r.status == 200, r.text
    by_key = {(p["type"], p["state_key"]): p for p in r.json["pdus"]}
    join = (await w.fed("GET", f"{V1}/event/{q(w.evil_room.prev_events[0])}")).json["pdus"][0]
    by_key[("m.room.member", w.mallory)] = join
    return list(by_key.values())


async def test_txn_ids_are_per_origin(world: World) -> None:
    """evil2.test reusing evil.test's txn id gets its own answer, not evil.test's."""
    w = world
    txn = w.next_txn()
    pdu = w.message("from evil.test")
    first = await w.send_txn([pdu], txn=txn)
    assert first.json == {"pdus": {w.peer.event_id(pdu): {}}}, first.text
    w.evil_room.advance(pdu, w.peer.event_id(pdu))
    carol = w.peer.user("carol", EVIL2)
    other = w.message("carol is not in the room", sender=carol, signer=EVIL2)
    r = await w.send_txn([other], txn=txn, origin=EVIL2, body_origin=EVIL2)
    assert r.status == 200, r.text
    assert list(r.json["pdus"]) == [w.peer.event_id(other)], r.json
    assert_pdu_error(r, w.peer.event_id(other))
    await w.mallory_says("still here")


async def test_server_acl_denies_the_peer(world: World) -> None:
    w = world
    await w.alice.put_state(w.room, "m.room.server_acl", {
        "allow": ["*"], "deny": [EVIL], "allow_ip_literals": False,
    })
    before = await w.snapshot()
    pdu = w.message("through the ACL")
    r = await w.send_txn([pdu])
    assert_pdu_refused(r, w.peer.event_id(pdu))
    assert await w.snapshot() == before
    path = f"{V1}/make_join/{q(w.room)}/{q(w.peer.user('eve'))}?ver=10"
    r = await w.fed("GET", path)
    assert r.status == 403, r.text
    assert_error(r.json, "M_FORBIDDEN")


async def test_event_citing_a_forged_auth_event_is_rejected(world: World) -> None:
    w = world
    before = await w.snapshot()
    pl = await w.alice.state(w.room, "m.room.power_levels")
    fake_pl = forged_power_levels(w, pl, **{w.mallory: 100})
    fake_id = w.peer.event_id(fake_pl)
    w.peer.answers[f"{V1}/event_auth/"] = {"auth_chain": [fake_pl]}
    msg = w.message("my authority comes from a forged PL event", auth_events=[
        w.evil_room.state[("m.room.create", "")], fake_id, w.evil_room.state[("m.room.member", w.mallory)],
    ])
    msg_id = w.peer.event_id(msg)
    r = await w.send_txn([msg])
    assert_pdu_error(r, msg_id)
    assert await w.snapshot() == before
    w.peer.answers.clear()
    await w.mallory_says("still here")


async def test_message_into_a_room_the_peer_is_not_in(world: World) -> None:
    """alice's invite-only room: a message from mallory citing a forged join of hers
    (served through /event_auth) is rejected, and nothing appears."""
    w = world
    secret = await w.alice.create_room(preset="private_chat", name="Secret", room_version=ROOM_VERSION)
    state = await w.alice.state_ids(secret)
    head = (await w.alice.messages(secret, limit=1))["chunk"][0]
    room = EvilRoom(secret, dict(state), [head["event_id"]], 100)
    fake_join = w.peer.build_pdu(room, "m.room.member", {"membership": "join"}, state_key=w.mallory)
    room.state[("m.room.member", w.mallory)] = w.peer.event_id(fake_join)
    w.peer.answers[f"{V1}/event_auth/"] = {"auth_chain": [fake_join]}
    before = (await w.alice.state_ids(secret), [e["event_id"] for e in (await w.alice.messages(secret))["chunk"]])
    msg = w.peer.build_pdu(room, "m.room.message", {"msgtype": "m.text", "body": "let me in"})
    r = await w.send_txn([msg])
    assert_pdu_error(r, w.peer.event_id(msg))
    after = (await w.alice.state_ids(secret), [e["event_id"] for e in (await w.alice.messages(secret))["chunk"]])
    assert after == before
    assert ("m.room.member", w.mallory) not in after[0]
    w.peer.answers.clear()
    await w.mallory_says("still here")


async def test_hostile_edus(world: World) -> None:
    """EDUs speaking for victim users are ignored; junk EDUs break neither the
    transaction nor alice's /sync."""
    w = world
    alice, last = w.alice.user_id, w.evil_room.prev_events[0]
    since = (await w.alice.sync())["next_batch"]
    edus: list[Any] = [
        {"edu_type": "m.typing", "content": {"room_id": w.room, "user_id": alice, "typing": True}},
        {"edu_type": "m.receipt", "content": {w.room: {"m.read": {alice: {"event_ids": [last], "data": {"ts": 1}}}}}},
        {"edu_type": "m.presence", "content": {"push": [{"user_id": alice, "presence": "offline"}]}},
        # junk
        {"edu_type": "m.presence", "content": {"push": [{"user_id": w.mallory, "presence": {"evil": 1}}]}},
        {"edu_type": "m.presence", "content": {"push": "x"}},
        {"edu_type": "m.receipt", "content": {"!x:y": "z", w.room: {"m.read": []}}},
        {"edu_type": "m.receipt", "content": {w.room: {"m.read": {w.mallory: {"event_ids": [last], "data": {"ts": "now", "thread_id": {}}}}}}},
        {"edu_type": "m.typing", "content": {"room_id": w.room, "user_id": "garbage", "typing": True}},
        {"edu_type": 5, "content": []}, "edu", None,
    ]
    r = await w.send_txn([], edus=edus)
    assert (r.status, r.json) == (200, {"pdus": {}}), r.text
    sync = await w.alice.sync(since=since, timeout=0)
    ephemeral = sync["rooms"]["join"].get(w.room, {}).get("ephemeral", {}).get("events", [])
    for ev in ephemeral:
        if ev["type"] == "m.typing":
            assert alice not in ev["content"]["user_ids"], ev
        if ev["type"] == "m.receipt":
            assert all(alice not in r.get("m.read", {}) for r in ev["content"].values()), ev
    presence = await w.alice.get(f"/presence/{q(alice)}/status")
    assert presence["presence"] == "online", presence
    await w.mallory_says("still here")


# ---- redactions across servers --------------------------------------------------------------


async def test_remote_redaction_of_a_local_event_needs_power(world: World) -> None:
    """Spec 'Handling redactions': a redaction from another server's user with no redact
    power is accepted into the room but never applied to a local user's event; one of
    mallory's own events she may redact."""
    w = world
    target = await w.alice.send(w.room, "alice's words")
    pdu = w.peer.build_pdu(w.evil_room, "m.room.redaction", {}, redacts=target)
    r = await w.send_txn([pdu])
    assert r.status == 200 and r.json == {"pdus": {w.peer.event_id(pdu): {}}}, r.text
    w.evil_room.advance(pdu, w.peer.event_id(pdu))
    event = await w.alice.get(f"/rooms/{q(w.room)}/event/{q(target)}")
    assert event["content"]["body"] == "alice's words" and "redacted_because" not in event["unsigned"]
    synced = [e for e in (await w.alice.messages(w.room, limit=50))["chunk"] if e["event_id"] == target]
    assert synced[0]["content"]["body"] == "alice's words"

    own = await w.mallory_says("regrettable")
    pdu = w.peer.build_pdu(w.evil_room, "m.room.redaction", {}, redacts=own)
    r = await w.send_txn([pdu])
    assert r.json == {"pdus": {w.peer.event_id(pdu): {}}}, r.text
    w.evil_room.advance(pdu, w.peer.event_id(pdu))
    redacted = await w.alice.get(f"/rooms/{q(w.room)}/event/{q(own)}")
    assert redacted["content"] == {} and redacted["unsigned"]["redacted_because"]["sender"] == w.mallory


async def test_an_event_arriving_after_its_child_is_history_not_a_new_head(world: World) -> None:
    """Out of order: mallory's second message arrives while the first is unknown and the
    peer will not hand out missing events, so the victim asks for the state before it.
    When the first message turns up later it is stored and shown, but it does not become
    a head of the room: alice's next event builds on the second message only."""
    w = world
    state_pdus = await fetch_state_pdus(w)  # messages change no state: valid before both
    first = w.message("first, delivered late")
    first_id = w.peer.event_id(first)
    w.evil_room.advance(first, first_id)
    second = w.message("second, delivered first")
    second_id = w.peer.event_id(second)
    w.peer.answers[f"{V1}/get_missing_events/"] = {"events": []}
    w.peer.answers[f"{V1}/state/"] = {"pdus": state_pdus, "auth_chain": []}
    r = await w.send_txn([second])
    assert r.json == {"pdus": {second_id: {}}}, r.text
    w.evil_room.advance(second, second_id)
    r = await w.send_txn([first])
    assert r.json == {"pdus": {first_id: {}}}, r.text

    bodies = [e["content"].get("body") for e in await w.timeline() if e["type"] == "m.room.message"]
    assert "first, delivered late" in bodies and "second, delivered first" in bodies
    reply = await w.alice.send(w.room, "after both")
    got = await w.fed("GET", f"{V1}/event/{q(reply)}")
    assert got.json["pdus"][0]["prev_events"] == [second_id]


async def test_only_the_federation_api_asks_for_x_matrix(victim: Matrix) -> None:
    """Each API is its own sub-app: the key server, /version, the client API and /health
    answer strangers; every other federation path (known or not) wants a signature."""
    for path in ("/_matrix/key/v2/server", f"{V1}/version", "/_matrix/client/versions", "/health"):
        r = await victim.raw("GET", path)
        assert r.status == 200, (path, r.text)
    for path in (f"{V1}/query/profile?user_id=%40a%3Avictim.test", f"{V1}/no/such/endpoint"):
        r = await victim.raw("GET", path)
        assert r.status == 401, (path, r.text)
        assert_error(r.json, "M_UNAUTHORIZED")
    r = await victim.raw("GET", "/_matrix/key/v2/nothing")
    assert r.status == 404
    assert_error(r.json, "M_UNRECOGNIZED")
    huge = {"pdus": [], "edus": [{"edu_type": "m.x", "content": {"blob": "x" * (2 * 1024 * 1024)}}]}
    r = await victim.raw("PUT", f"{V1}/send/big", huge)
    assert r.status == 413
    assert_error(r.json, "M_TOO_LARGE")


# ---- mistyped parameters: declared schemas, Matrix errors, never a 500 ------------------


def _mistyped(w: World) -> list[tuple[str, str, Any, int, str]]:
    room, alice = q(w.room), q(w.alice.user_id)
    some_event = q(w.evil_room.prev_events[0])
    return [
        ("GET", f"{V1}/backfill/{room}?v={some_event}&limit=ten", _NO_BODY, 400, "M_INVALID_PARAM"),
        ("GET", f"{V1}/backfill/{room}?limit=5", _NO_BODY, 400, "M_MISSING_PARAM"),
        ("GET", f"{V1}/backfill/{room}?v={some_event}", _NO_BODY, 400, "M_MISSING_PARAM"),
        ("POST", f"{V1}/get_missing_events/{room}", {"earliest_events": "x", "latest_events": []}, 400, "M_BAD_JSON"),
        ("POST", f"{V1}/get_missing_events/{room}", {"earliest_events": [], "latest_events": [1]}, 400, "M_BAD_JSON"),
        ("POST", f"{V1}/get_missing_events/{room}",
         {"earliest_events": [], "latest_events": [], "limit": "10"}, 400, "M_BAD_JSON"),
        ("POST", f"{V1}/get_missing_events/{room}", {"latest_events": []}, 400, "M_MISSING_PARAM"),
        ("POST", f"{V1}/get_missing_events/{room}", [], 400, "M_BAD_JSON"),
        ("GET", f"{V1}/state_ids/{room}", _NO_BODY, 400, "M_MISSING_PARAM"),
        ("GET", f"{V1}/state/{room}", _NO_BODY, 400, "M_MISSING_PARAM"),
        ("GET", f"{V1}/user/devices/not-a-user", _NO_BODY, 400, "M_INVALID_PARAM"),
        ("POST", f"{V1}/user/keys/query", {"device_keys": {w.alice.user_id: "all"}}, 400, "M_BAD_JSON"),
        ("POST", f"{V1}/user/keys/query", {"device_keys": []}, 400, "M_BAD_JSON"),
        ("POST", f"{V1}/user/keys/claim", {"one_time_keys": {w.alice.user_id: {"D": 1}}}, 400, "M_BAD_JSON"),
        ("GET", f"{V1}/query/profile", _NO_BODY, 400, "M_MISSING_PARAM"),
        ("GET", f"{V1}/query/directory", _NO_BODY, 400, "M_MISSING_PARAM"),
        ("GET", f"{V1}/media/download/abc?timeout_ms=soon", _NO_BODY, 400, "M_INVALID_PARAM"),
        ("PUT", f"{V2}/invite/{room}/%24x", {"event": "not an event"}, 400, "M_BAD_JSON"),
        ("PUT", f"{V2}/send_join/{room}/%24x", [1, 2], 400, "M_BAD_JSON"),
        ("GET", f"{V1}/make_join/{room}/{q(w.mallory)}?ver=", _NO_BODY, 400, "M_INCOMPATIBLE_ROOM_VERSION"),
        ("GET", f"{V1}/make_join/{room}/{alice}", _NO_BODY, 403, "M_FORBIDDEN"),
    ]


async def test_mistyped_parameters_are_matrix_errors(world: World) -> None:
    """Federation inputs go through one schema per endpoint, as the client API's do: a
    peer's wrong type is a 400 with the Matrix errcode, never a 500, and changes nothing."""
    w = world
    before = await w.snapshot()
    for method, path, body, status, errcode in _mistyped(w):
        r = await w.fed(method, path, body)
        assert (r.status, (r.json or {}).get("errcode")) == (status, errcode), (method, path, r.text)
    assert await w.snapshot() == before
    await w.mallory_says("still here")


async def test_user_devices_lists_only_devices_with_keys(world: World) -> None:
    """Found by fuzzing: a device without uploaded keys was listed with `"keys": {}`, which
    the spec's schema (keys required: user_id, device_id, algorithms, keys, signatures)
    does not allow; such a device cannot take part in encryption, so it is left out."""
    w = world
    alice = w.alice
    keyed = await w.victim.login_user("alice")
    keys, _ = device_keys(keyed)
    await keyed.post("/keys/upload", {"device_keys": keys})
    r = await w.fed("GET", f"{V1}/user/devices/{q(alice.user_id)}")
    assert r.status == 200, r.text
    assert [d["device_id"] for d in r.json["devices"]] == [keyed.device_id]
    assert r.json["devices"][0]["keys"]["device_id"] == keyed.device_id
