"""User directory search: by name or id, and by the short `alice@server` form."""

from __future__ import annotations

from tests.helpers import Matrix, assert_error, q


async def test_search_finds_users_by_display_name_and_id(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    await bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Robert Tables"})
    found = await alice.post("/user_directory/search", {"search_term": "tables"})
    assert found["results"] == [{"user_id": bob.user_id, "display_name": "Robert Tables"}]
    assert found["limited"] is False
    by_id = await alice.post("/user_directory/search", {"search_term": "bob"})
    assert [r["user_id"] for r in by_id["results"]] == [bob.user_id]


async def test_short_form_finds_the_user(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    short = bob.user_id[1:].replace(":", "@", 1)  # bob@hs.test
    found = await alice.post("/user_directory/search", {"search_term": short})
    assert bob.user_id in [r["user_id"] for r in found["results"]]


async def test_limit_and_bad_input(hs: Matrix) -> None:
    alice, *_ = await hs.users("alice", "dir1", "dir2", "dir3")
    found = await alice.post("/user_directory/search", {"search_term": "dir", "limit": 2})
    assert len(found["results"]) == 2 and found["limited"] is True
    assert_error(await alice.post("/user_directory/search", {"search_term": 5}, expect=400), "M_BAD_JSON")
    await hs.call("POST", "/user_directory/search", {"search_term": "x"}, expect=401)
