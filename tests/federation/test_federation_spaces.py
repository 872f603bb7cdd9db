"""Spaces across two Tricolor servers (in process, federating over TLS): hs1's users see
the rooms of a space that only hs2 is in, fetched with GET /_matrix/federation/v1/hierarchy,
and hs2 answers that endpoint as the spec says (``children``, ``inaccessible_children``).
hs2 runs on each test database, hs1 on SQLite (see test_media_federation.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from federation.outbound.xmatrix import sign_request
from homeserver.core.signing import parse_signing_key
from tests.federation.test_media_federation import pair  # noqa: F401  (the fixture)
from tests.helpers import Matrix, Resp, User, q

V1 = "/_matrix/client/v1"


async def as_hs1(tmp_path: Path, hs2: Matrix, path: str) -> Resp:
    """GET ``path`` on hs2 as hs1 would: signed with hs1's key (X-Matrix)."""
    key = parse_signing_key((tmp_path / "hs1.test" / "signing.key").read_text())
    auth = sign_request(key, "hs1.test", "hs2.test", "GET", path, None)
    return await hs2.raw("GET", path, headers={"Authorization": auth})


async def add_child(owner: User, space: str, child: str, via: str, **content: Any) -> None:
    await owner.put_state(space, "m.space.child", {"via": [via], **content}, key=child)


async def test_a_space_with_rooms_only_another_server_knows(pair: dict[str, Matrix], tmp_path: Path) -> None:  # noqa: F811
    hs1, hs2 = pair["hs1.test"], pair["hs2.test"]
    alice, bob = await hs1.users("alice", "bob")
    carol = await hs2.register("carol")

    # On hs2 only: a public room, a public sub-space holding a public and a private room.
    lounge = await carol.create_room(name="Lounge", preset="public_chat")
    sub = await carol.create_room(name="Sub", preset="public_chat", creation_content={"type": "m.space"})
    deep = await carol.create_room(name="Deep", preset="public_chat")
    hidden = await carol.create_room(name="Hidden", preset="private_chat")
    await add_child(carol, sub, deep, "hs2.test", suggested=True)
    await add_child(carol, sub, hidden, "hs2.test")

    # On hs1: alice's space names them, via hs2.
    space = await alice.create_room(name="Space", preset="public_chat", creation_content={"type": "m.space"})
    await add_child(alice, space, lounge, "hs2.test", order="1")
    await add_child(alice, space, sub, "hs2.test", order="2", suggested=True)
    await bob.join(space)

    got = await bob.get(f"{V1}/rooms/{q(space)}/hierarchy")
    assert [r["room_id"] for r in got["rooms"]] == [space, lounge, sub, deep]
    by_id = {r["room_id"]: r for r in got["rooms"]}
    assert by_id[lounge]["name"] == "Lounge" and by_id[lounge]["num_joined_members"] == 1
    assert by_id[sub]["room_type"] == "m.space"
    assert [c["state_key"] for c in by_id[sub]["children_state"]] == [deep, hidden]

    suggested = await bob.get(f"{V1}/rooms/{q(space)}/hierarchy", params={"suggested_only": "true"})
    assert [r["room_id"] for r in suggested["rooms"]] == [space, sub, deep]

    page = await bob.get(f"{V1}/rooms/{q(space)}/hierarchy", params={"limit": 3})
    rest = await bob.get(f"{V1}/rooms/{q(space)}/hierarchy", params={"limit": 3, "from": page["next_batch"]})
    assert [r["room_id"] for r in page["rooms"] + rest["rooms"]] == [space, lounge, sub, deep]
    assert "next_batch" not in rest


async def test_the_federation_hierarchy_endpoint(pair: dict[str, Matrix], tmp_path: Path) -> None:  # noqa: F811
    hs1, hs2 = pair["hs1.test"], pair["hs2.test"]
    await hs1.register("alice")
    carol = await hs2.register("carol")
    sub = await carol.create_room(name="Sub", preset="public_chat", creation_content={"type": "m.space"})
    deep = await carol.create_room(name="Deep", preset="public_chat")
    hidden = await carol.create_room(name="Hidden", preset="private_chat")
    await add_child(carol, sub, deep, "hs2.test", suggested=True)
    await add_child(carol, sub, hidden, "hs2.test")
    await add_child(carol, sub, "!unknown:elsewhere.test", "elsewhere.test")

    r = await as_hs1(tmp_path, hs2, f"/_matrix/federation/v1/hierarchy/{sub}")
    assert r.status == 200, r.text
    assert r.json["room"]["room_id"] == sub and r.json["room"]["room_type"] == "m.space"
    assert [c["state_key"] for c in r.json["room"]["children_state"]] == [deep, hidden, "!unknown:elsewhere.test"]
    assert [c["room_id"] for c in r.json["children"]] == [deep]
    assert r.json["inaccessible_children"] == [hidden]  # the unknown room is left out

    r = await as_hs1(tmp_path, hs2, f"/_matrix/federation/v1/hierarchy/{sub}?suggested_only=true")
    assert ([c["room_id"] for c in r.json["children"]], r.json["inaccessible_children"]) == ([deep], [])

    for room in (hidden, "!nowhere:hs2.test"):  # private to hs1, or unknown: 404
        r = await as_hs1(tmp_path, hs2, f"/_matrix/federation/v1/hierarchy/{room}")
        assert (r.status, r.json["errcode"]) == (404, "M_NOT_FOUND")
    r = await hs2.raw("GET", f"/_matrix/federation/v1/hierarchy/{sub}")
    assert (r.status, r.json["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_room_summary_of_a_room_only_another_server_knows(pair: dict[str, Matrix]) -> None:  # noqa: F811
    """MSC3266 room summary for a room hs1 holds nothing of: asked of hs2 over federation
    (its /hierarchy), by room id with `via` and by an alias hs2 answers for; a private
    room stays hidden, like an unknown one."""
    hs1, hs2 = pair["hs1.test"], pair["hs2.test"]
    (bob,) = await hs1.users("bob")
    carol = await hs2.register("carol")
    lounge = await carol.create_room(name="Lounge", preset="public_chat", topic="Come in")
    await carol.put(f"/directory/room/{q('#lounge:hs2.test')}", {"room_id": lounge})
    hidden = await carol.create_room(name="Hidden", preset="private_chat")

    got = await bob.get(f"{V1}/room_summary/{q(lounge)}", params={"via": "hs2.test"})
    assert got["room_id"] == lounge and got["name"] == "Lounge" and got["topic"] == "Come in"
    assert got["num_joined_members"] == 1 and got["join_rule"] == "public"
    assert "membership" not in got and "children_state" not in got
    by_alias = await bob.get(f"{V1}/room_summary/{q('#lounge:hs2.test')}")
    assert by_alias["room_id"] == lounge and by_alias["name"] == "Lounge"
    anonymous = await hs1.call("GET", f"{V1}/room_summary/{q(lounge)}", params={"via": "hs2.test"})
    assert anonymous["name"] == "Lounge"

    err = await bob.get(f"{V1}/room_summary/{q(hidden)}", params={"via": "hs2.test"}, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
