"""send_join v2 with ``omit_members`` (spec v1.6, MSC3706: partial-state joins), served
by us as the resident server: membership events are left out of ``state`` (except the
heroes' when the room has no name or alias), ``members_omitted`` and ``servers_in_room``
say so, and the auth chain holds what the state and the join need but not the state
itself. Without the parameter the answer is the full state, as before."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.services.clock import now_ms
from tests.federation.peer import EvilPeer
from tests.federation.test_hostile_peer import V1, V2, VICTIM, peer, raw, victim  # noqa: F401  (fixtures)
from tests.helpers import Matrix, assert_error, q


async def _send_join(hs: Matrix, evil: EvilPeer, room: str, query: str) -> tuple[dict[str, Any], Any]:
    user = evil.user("mallory")
    path = f"{V1}/make_join/{q(room)}/{q(user)}?ver=10"
    made = await raw(hs, "GET", path, headers={"Authorization": evil.auth("GET", path, VICTIM)})
    assert made.status == 200, made.text
    template = made.json["event"]
    template["origin"] = evil.server_name
    template["origin_server_ts"] = now_ms()
    join = evil.sign_pdu(template)
    path = f"{V2}/send_join/{q(room)}/{q(evil.event_id(join))}{query}"
    return join, await raw(hs, "PUT", path, join, {"Authorization": evil.auth("PUT", path, VICTIM, join)})


def _ids(pdus: list[dict[str, Any]]) -> set[str]:
    return {EvilPeer.event_id(p) for p in pdus}


def _complete(answer: dict[str, Any], join: dict[str, Any]) -> None:
    """Every auth event the state, the chain and the join cite is in the answer."""
    have = _ids(answer["state"]) | _ids(answer["auth_chain"])
    for pdu in [*answer["state"], *answer["auth_chain"], join]:
        missing = set(pdu["auth_events"]) - have
        assert not missing, (pdu["type"], missing)


async def _room(hs: Matrix, *, named: bool) -> tuple[str, list[str]]:
    alice, bob, carol = await hs.users("alice", "bob", "carol")
    extra: dict[str, Any] = {"name": "Named"} if named else {}
    room = await alice.create_room(preset="public_chat", room_version="10", **extra)
    for u in (bob, carol):
        await u.join(room)
    return room, [alice.user_id, bob.user_id, carol.user_id]


async def test_omit_members_in_a_named_room_leaves_out_every_membership(victim: Matrix, peer: EvilPeer) -> None:  # noqa: F811
    room, _ = await _room(victim, named=True)
    join, r = await _send_join(victim, peer, room, "?omit_members=true")
    assert r.status == 200, r.text
    answer = r.json
    assert answer["members_omitted"] is True
    assert answer["servers_in_room"] == [VICTIM]
    assert not [p for p in answer["state"] if p["type"] == "m.room.member"]
    assert {p["type"] for p in answer["state"]} >= {"m.room.create", "m.room.power_levels", "m.room.name"}
    assert not _ids(answer["state"]) & _ids(answer["auth_chain"])  # nothing twice
    _complete(answer, join)
    # The join itself went through: mallory is a member for the victim's users.
    alice = await victim.login_user("alice")
    assert (await alice.state(room, "m.room.member", peer.user("mallory")))["membership"] == "join"


async def test_omit_members_in_an_unnamed_room_keeps_the_heroes(victim: Matrix, peer: EvilPeer) -> None:  # noqa: F811
    room, members = await _room(victim, named=False)
    join, r = await _send_join(victim, peer, room, "?omit_members=true")
    assert r.status == 200, r.text
    kept = sorted(p["state_key"] for p in r.json["state"] if p["type"] == "m.room.member")
    assert kept == sorted(members)  # three members: all are heroes
    assert r.json["members_omitted"] is True
    _complete(r.json, join)


async def test_without_omit_members_the_state_is_whole(victim: Matrix, peer: EvilPeer) -> None:  # noqa: F811
    room, members = await _room(victim, named=True)
    join, r = await _send_join(victim, peer, room, "?omit_members=false")
    assert r.status == 200, r.text
    assert r.json["members_omitted"] is False
    kept = sorted(p["state_key"] for p in r.json["state"] if p["type"] == "m.room.member")
    assert kept == sorted(members)
    _complete(r.json, join)


@pytest.mark.parametrize("value", ["maybe", "truee"])
async def test_a_bad_omit_members_is_a_matrix_error(victim: Matrix, peer: EvilPeer, value: str) -> None:  # noqa: F811
    room, _ = await _room(victim, named=True)
    _, r = await _send_join(victim, peer, room, f"?omit_members={value}")
    assert r.status == 400, r.text
    assert_error(r.json, "M_INVALID_PARAM")
    alice = await victim.login_user("alice")
    assert (await alice.get(f"/rooms/{q(room)}/state/m.room.member/{q(peer.user('mallory'))}", expect=404))
