"""Rejecting an invite must work when nobody can carry the rejection: the inviting server
answers nothing useful (or is gone), or the room's own members all left. The invite
then leaves /sync, and the room can be invited to again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import pytest

from config.schema import FederationConfig, HomeserverConfig
from tests.federation.peer import EvilPeer
from tests.federation.test_hostile_peer import invite_pdu, invited_rooms, put_invite, raw
from tests.helpers import Matrix, Resp, q


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[EvilPeer]:
    evil = await EvilPeer(tmp_path).start()
    yield evil
    await evil.close()


@pytest.fixture
async def victim(
    hs_config: HomeserverConfig, peer: EvilPeer, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> Matrix:
    """A server on SQLite or MariaDB, federating with the peer (as ``hs.test``)."""
    cfg = attrs.evolve(
        hs_config, federation=FederationConfig(static_map=peer.static_map(), ca_file=peer.ca_cert),
        ip_range_whitelist=peer.ip_range_whitelist,
    )
    return await start_hs(cfg)


@attrs.define
class _W:
    """What ``invite_pdu``/``put_invite`` need of the hostile-peer world."""

    victim: Matrix
    peer: EvilPeer
    mallory: str

    async def fed(self, method: str, path: str, body: object, **kw: object) -> Resp:
        auth = self.peer.auth(method, path, self.victim.server_name, body)
        return await raw(self.victim, method, path, body, {"Authorization": auth})


async def test_rejecting_a_remote_invite_when_its_server_cannot_help(victim: Matrix, peer: EvilPeer) -> None:
    bob = await victim.register("bob")
    w = _W(victim, peer, peer.user("mallory"))
    pdu = invite_pdu(w, bob.user_id, f"!gone:{peer.server_name}")  # type: ignore[arg-type]
    r = await put_invite(w, pdu)  # type: ignore[arg-type]
    assert r.status == 200, r.text
    assert await invited_rooms(bob) == {pdu["room_id"]}
    # The peer answers make_leave with 404 (it does not serve it): the rejection is made here.
    assert await bob.leave(pdu["room_id"]) == {}
    assert any("/make_leave/" in path for _, _, path in peer.requests)
    assert await invited_rooms(bob) == set()
    # Nothing is left to reject.
    assert (await bob.leave(pdu["room_id"], expect=403))["errcode"] == "M_FORBIDDEN"


async def test_rejecting_a_remote_invite_when_its_server_is_down(victim: Matrix, peer: EvilPeer) -> None:
    bob = await victim.register("bob")
    w = _W(victim, peer, peer.user("mallory"))
    pdu = invite_pdu(w, bob.user_id, f"!down:{peer.server_name}")  # type: ignore[arg-type]
    assert (await put_invite(w, pdu)).status == 200  # type: ignore[arg-type]
    await peer.close()
    assert await bob.leave(pdu["room_id"]) == {}
    assert await invited_rooms(bob) == set()


async def test_rejecting_an_invite_to_a_local_room_everyone_left(victim: Matrix) -> None:
    alice, bob = await victim.users("alice", "bob")
    room = await alice.create_room()
    await alice.invite(room, bob)
    await alice.leave(room)
    assert await invited_rooms(bob) == {room}
    assert await bob.leave(room) == {}
    assert await invited_rooms(bob) == set()
    member = (await bob.sync(filter={"room": {"include_leave": True}}))["rooms"]["leave"][room]
    assert any(
        e["type"] == "m.room.member" and e["content"]["membership"] == "leave"
        for e in member["timeline"]["events"]
    ), member
    assert (await bob.post(f"/rooms/{q(room)}/forget")) == {}


async def test_rejecting_a_remote_invite_when_its_server_hangs(victim: Matrix, peer: EvilPeer) -> None:
    """The inviting server accepts the connection and never answers make_leave: after a
    bounded wait the rejection is made here (as Synapse does), not left hanging."""
    import asyncio

    from aiohttp import web

    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await release.wait()  # never, during the test
        return web.json_response({})

    bob = await victim.register("bob")
    w = _W(victim, peer, peer.user("mallory"))
    pdu = invite_pdu(w, bob.user_id, f"!hangs:{peer.server_name}")  # type: ignore[arg-type]
    assert (await put_invite(w, pdu)).status == 200  # type: ignore[arg-type]
    peer.handlers["/_matrix/federation/v1/make_leave/"] = hang
    try:
        async with asyncio.timeout(30):  # the server's own bound is 10 s per server asked
            assert await bob.leave(pdu["room_id"]) == {}
    finally:
        release.set()
    assert await invited_rooms(bob) == set()
