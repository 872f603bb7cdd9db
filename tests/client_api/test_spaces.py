"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy on one server (client-server API,
"Spaces"); test_federation_spaces.py covers rooms known only over federation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Matrix, User, assert_error, q

V1 = "/_matrix/client/v1"


async def hierarchy(user: User, room: str, *, expect: int = 200, **params: Any) -> Any:
    return await user.get(f"{V1}/rooms/{q(room)}/hierarchy", params=params or None, expect=expect)


def ids(answer: dict[str, Any]) -> list[str]:
    return [r["room_id"] for r in answer["rooms"]]


async def add_child(owner: User, space: str, child: str, **content: Any) -> None:
    await owner.put_state(space, "m.space.child", {"via": [owner.hs.server_name], **content}, key=child)


async def make_space(owner: User, name: str, **extra: Any) -> str:
    return await owner.create_room(
        name=name, preset="public_chat", creation_content={"type": "m.space"}, **extra,
    )


@pytest.fixture
async def world(hs: Matrix) -> dict[str, Any]:
    """alice's space: public "general" (suggested, order "a"), private "secret", world-
    readable "news" (order "b"), a restricted "members" (for the space's members), and a
    sub-space holding "deep"; bob joined the space only."""
    alice, bob = await hs.users("alice", "bob")
    space = await make_space(alice, "Space", topic="All of it")
    general = await alice.create_room(name="General", preset="public_chat")
    secret = await alice.create_room(name="Secret", preset="private_chat")
    news = await alice.create_room(
        name="News", preset="private_chat",
        initial_state=[{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}}],
    )
    members = await alice.create_room(
        name="Members", preset="private_chat",
        initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": {
            "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}],
        }}],
    )
    sub = await make_space(alice, "Sub")
    deep = await alice.create_room(name="Deep", preset="public_chat")
    await add_child(alice, space, general, suggested=True, order="a")
    await add_child(alice, space, news, order="b")
    await add_child(alice, space, secret)
    await add_child(alice, space, members)
    await add_child(alice, space, sub, suggested=True)
    await add_child(alice, sub, deep)
    await add_child(alice, sub, space)  # a loop: must not be walked forever
    await bob.join(space)
    return {
        "alice": alice, "bob": bob, "space": space, "general": general, "secret": secret,
        "news": news, "members": members, "sub": sub, "deep": deep,
    }


async def test_the_tree_is_walked_depth_first_with_what_the_user_may_see(world: dict[str, Any]) -> None:
    w = world
    got = await hierarchy(w["bob"], w["space"])
    # Ordered children: "a", "b", then by timestamp; "secret" (invite only) is hidden.
    assert ids(got) == [w["space"], w["general"], w["news"], w["members"], w["sub"], w["deep"]]
    assert "next_batch" not in got
    space = got["rooms"][0]
    assert space["room_type"] == "m.space" and space["name"] == "Space" and space["topic"] == "All of it"
    assert space["join_rule"] == "public" and space["num_joined_members"] == 2
    assert space["world_readable"] is False and space["guest_can_join"] is False
    children = space["children_state"]
    assert [c["state_key"] for c in children] == [w["general"], w["news"], w["secret"], w["members"], w["sub"]]
    assert all(c["type"] == "m.space.child" and isinstance(c["origin_server_ts"], int) for c in children)
    assert children[0]["content"] == {"via": ["hs.test"], "suggested": True, "order": "a"}
    by_id = {r["room_id"]: r for r in got["rooms"]}
    assert by_id[w["news"]]["world_readable"] is True
    assert by_id[w["members"]]["allowed_room_ids"] == [w["space"]]
    assert by_id[w["general"]]["children_state"] == []

    # alice is in every room: she sees the secret one too.
    assert w["secret"] in ids(await hierarchy(w["alice"], w["space"]))


async def test_suggested_only_and_max_depth(world: dict[str, Any]) -> None:
    w = world
    assert ids(await hierarchy(w["bob"], w["space"], suggested_only="true")) == [w["space"], w["general"], w["sub"]]
    assert ids(await hierarchy(w["bob"], w["space"], max_depth=1)) == [
        w["space"], w["general"], w["news"], w["members"], w["sub"],
    ]
    assert ids(await hierarchy(w["bob"], w["space"], max_depth=0)) == [w["space"]]


async def test_pages_follow_each_other_with_an_opaque_token(world: dict[str, Any]) -> None:
    w = world
    everything = ids(await hierarchy(w["bob"], w["space"]))
    pages, token = [], None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if token is not None:
            params["from"] = token
        page = await hierarchy(w["bob"], w["space"], **params)
        assert len(page["rooms"]) <= 2
        pages += ids(page)
        token = page.get("next_batch")
        if token is None:
            break
    assert pages == everything
    first = await hierarchy(w["bob"], w["space"], limit=2)
    # The spec: suggested_only and max_depth cannot change between pages.
    r = await hierarchy(w["bob"], w["space"], expect=400, limit=2, suggested_only="true", **{"from": first["next_batch"]})
    assert_error(r, "M_INVALID_PARAM")
    r = await hierarchy(w["bob"], w["space"], expect=400, **{"from": "garbage"})
    assert_error(r, "M_INVALID_PARAM")


async def test_bad_parameters_and_invisible_roots(world: dict[str, Any]) -> None:
    w = world
    assert_error(await hierarchy(w["bob"], w["space"], expect=400, limit=0), "M_INVALID_PARAM")
    assert_error(await hierarchy(w["bob"], w["space"], expect=400, max_depth=-1), "M_INVALID_PARAM")
    assert_error(await hierarchy(w["bob"], w["space"], expect=400, suggested_only="maybe"), "M_INVALID_PARAM")
    # A private room bob is not in, and a room nobody here knows.
    assert_error(await hierarchy(w["bob"], w["secret"], expect=403), "M_FORBIDDEN")
    assert_error(await hierarchy(w["bob"], "!nowhere:hs.test", expect=403), "M_FORBIDDEN")


async def test_a_child_whose_event_lost_its_via_is_gone(world: dict[str, Any]) -> None:
    w = world
    await w["alice"].put_state(w["space"], "m.space.child", {}, key=w["general"])
    assert w["general"] not in ids(await hierarchy(w["bob"], w["space"]))


async def test_versions_claim_spaces_and_authenticated_media(hs: Matrix) -> None:
    versions = await hs.call("GET", "/_matrix/client/versions")
    assert "v1.2" in versions["versions"]  # v1.2 requires the hierarchy endpoint
    # Authenticated media without claiming v1.11, so that clients leave the frozen paths.
    assert versions["unstable_features"]["org.matrix.msc3916.stable"] is True
