"""The federation /publicRooms we serve (GET and POST), asked by a peer over X-Matrix."""

from __future__ import annotations

from tests.federation.peer import EvilPeer
from tests.federation.test_invite_rejection import _W, peer, victim
from tests.helpers import Matrix, q

__all__ = ["peer", "victim"]  # fixtures used by the tests below

V1 = "/_matrix/federation/v1"


async def test_a_peer_reads_and_searches_our_directory(victim: Matrix, peer: EvilPeer) -> None:
    alice = await victim.register("alice")
    public = await alice.create_room(preset="public_chat", name="Gardening club", topic="tomatoes")
    await alice.create_room(preset="public_chat", name="Unlisted")
    await alice.put(f"/directory/list/room/{q(public)}", {"visibility": "public"})
    w = _W(victim, peer, peer.user("mallory"))
    got = await w.fed("GET", f"{V1}/publicRooms", None)
    assert got.status == 200, got.text
    assert [r["room_id"] for r in got.json["chunk"]] == [public]
    assert got.json["chunk"][0]["name"] == "Gardening club"
    found = await w.fed("POST", f"{V1}/publicRooms", {"filter": {"generic_search_term": "tomato"}, "limit": 5})
    assert [r["room_id"] for r in found.json["chunk"]] == [public]
    none = await w.fed("POST", f"{V1}/publicRooms", {"filter": {"generic_search_term": "chess"}})
    assert none.json["chunk"] == []
    # No bridged networks here: a third-party instance has no rooms.
    other = await w.fed("POST", f"{V1}/publicRooms", {"third_party_instance_id": "irc"})
    assert other.json["chunk"] == []
    everything = await w.fed("POST", f"{V1}/publicRooms", {"include_all_networks": True})
    assert [r["room_id"] for r in everything.json["chunk"]] == [public]
    bad = await w.fed("POST", f"{V1}/publicRooms", {"limit": "ten"})
    assert bad.status == 400
    # Without X-Matrix: refused.
    unsigned = await victim.raw("GET", f"{V1}/publicRooms")
    assert unsigned.status == 401
