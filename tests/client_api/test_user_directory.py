"""User directory search: by name or id, and by the short `alice@server` form; only
users who share a room with the searcher or are in a public room (spec: "User directory")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from config.schema import HomeserverConfig, UserDirectoryConfig
from tests.helpers import Matrix, User, assert_error, q


async def _share_room(alice: User, *others: User) -> str:
    room = await alice.create_room(preset="private_chat", invite=[o.user_id for o in others])
    for other in others:
        await other.join(room)
    return room


async def test_search_finds_users_by_display_name_and_id(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    await bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Robert Tables"})
    await _share_room(alice, bob)
    found = await alice.post("/user_directory/search", {"search_term": "tables"})
    assert found["results"] == [{"user_id": bob.user_id, "display_name": "Robert Tables"}]
    assert found["limited"] is False
    by_id = await alice.post("/user_directory/search", {"search_term": "bob"})
    assert [r["user_id"] for r in by_id["results"]] == [bob.user_id]


async def test_short_form_finds_the_user(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    await _share_room(alice, bob)
    short = bob.user_id[1:].replace(":", "@", 1)  # bob@hs.test
    found = await alice.post("/user_directory/search", {"search_term": short})
    assert bob.user_id in [r["user_id"] for r in found["results"]]


async def test_limit_and_bad_input(hs: Matrix) -> None:
    alice, *others = await hs.users("alice", "dir1", "dir2", "dir3")
    await _share_room(alice, *others)
    found = await alice.post("/user_directory/search", {"search_term": "dir", "limit": 2})
    assert len(found["results"]) == 2 and found["limited"] is True
    assert_error(await alice.post("/user_directory/search", {"search_term": 5}, expect=400), "M_BAD_JSON")
    await hs.call("POST", "/user_directory/search", {"search_term": "x"}, expect=401)


async def test_a_stranger_is_not_listed(hs: Matrix) -> None:
    alice, carol = await hs.users("alice", "carol")
    await carol.create_room(preset="private_chat")  # a room alice is not in
    for term in ("carol", carol.user_id, carol.user_id[1:].replace(":", "@", 1)):
        assert (await alice.post("/user_directory/search", {"search_term": term}))["results"] == []


async def test_members_of_a_public_room_are_listed(hs: Matrix) -> None:
    alice, carol = await hs.users("alice", "carol")
    room = await carol.create_room(preset="public_chat")
    found = await alice.post("/user_directory/search", {"search_term": "carol"})
    assert [r["user_id"] for r in found["results"]] == [carol.user_id]
    # Once the room is no longer public, neither is its member.
    await carol.put_state(room, "m.room.join_rules", {"join_rule": "invite"})
    assert (await alice.post("/user_directory/search", {"search_term": "carol"}))["results"] == []


async def test_search_all_users_lists_strangers(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    hs = await start_hs(attrs.evolve(hs_config, user_directory=UserDirectoryConfig(search_all_users=True)))
    alice, carol = await hs.users("alice", "carol")
    found = await alice.post("/user_directory/search", {"search_term": "carol"})
    assert [r["user_id"] for r in found["results"]] == [carol.user_id]


async def _finds(searcher: User, term: str) -> list[str]:
    return [r["user_id"] for r in (await searcher.post("/user_directory/search", {"search_term": term}))["results"]]


async def test_leaving_the_only_shared_private_room_hides_the_user(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await _share_room(alice, bob)
    assert await _finds(alice, "bob") == [bob.user_id]
    await bob.leave(room)
    assert await _finds(alice, "bob") == []
    assert await _finds(bob, "alice") == []
    # A user only in private rooms the searcher is not in is never listed.
    carol = await hs.register("carol")
    await _share_room(bob, carol)
    assert await _finds(alice, "carol") == []


async def test_world_readable_rooms_list_their_members_until_that_changes(hs: Matrix) -> None:
    alice, dave = await hs.users("alice", "dave")
    room = await dave.create_room(preset="private_chat")
    assert await _finds(alice, "dave") == []
    await dave.put_state(room, "m.room.history_visibility", {"history_visibility": "world_readable"})
    assert await _finds(alice, "dave") == [dave.user_id]
    await dave.put_state(room, "m.room.history_visibility", {"history_visibility": "shared"})
    assert await _finds(alice, "dave") == []
    await dave.put_state(room, "m.room.join_rules", {"join_rule": "public"})
    assert await _finds(alice, "dave") == [dave.user_id]
