"""Server-side search (spec: "Server Side Search"): POST /search over room_events, on
SQLite (FTS5) and MariaDB (FULLTEXT): what is found, in which order, pagination, and that a
user never finds what they may not read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from config.schema import HomeserverConfig
from storage.engine import create_engine
from storage.schema import event_search, push_progress
from tests.helpers import Matrix, User, assert_error, q


async def search(user: User, term: str, *, next_batch: str | None = None, expect: int = 200, **criteria: Any) -> Any:
    body = {"search_categories": {"room_events": {"search_term": term, **criteria}}}
    got = await user.post("/search", body, params={"next_batch": next_batch} if next_batch else None, expect=expect)
    return got["search_categories"]["room_events"] if expect == 200 else got


def found(result: Any) -> list[str]:
    return [r["result"]["content"].get("body") or r["result"]["content"].get("name")
            or r["result"]["content"].get("topic") for r in result["results"]]


async def test_search_finds_words_names_and_topics(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat", name="Cheese lovers", topic="All about cheese")
    await bob.join(room)
    await bob.send(room, "I like Cheddar cheese")
    await alice.send(room, "lunch at noon?")
    got = await search(bob, "cheese")
    assert sorted(found(got)) == ["All about cheese", "Cheese lovers", "I like Cheddar cheese"]
    assert got["count"] == 3 and "cheese" in got["highlights"]
    only_body = await search(bob, "cheese", keys=["content.body"])
    assert found(only_body) == ["I like Cheddar cheese"]
    r = only_body["results"][0]
    assert r["result"]["room_id"] == room and r["result"]["sender"] == bob.user_id
    assert isinstance(r["rank"], float | int)
    # Case, accents by NFKC, and a word's prefix.
    assert found(await search(bob, "CHEDDAR")) == ["I like Cheddar cheese"]
    assert found(await search(bob, "chedd")) == ["I like Cheddar cheese"]
    # Every word must be there.
    assert found(await search(bob, "cheddar lunch")) == []
    assert (await search(bob, "nothing-like-this"))["results"] == []


async def test_chinese_text_without_spaces_is_found(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await alice.send(room, "我们明天去北京吃烤鸭")
    await alice.send(room, "今天天气很好")
    assert found(await search(bob, "北京")) == ["我们明天去北京吃烤鸭"]
    assert found(await search(bob, "烤鸭")) == ["我们明天去北京吃烤鸭"]
    assert found(await search(bob, "天气")) == ["今天天气很好"]
    assert found(await search(bob, "鸭")) == ["我们明天去北京吃烤鸭"]
    assert found(await search(bob, "上海")) == []


async def test_rank_and_recent_orders_and_pagination(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    room = await alice.create_room()
    await alice.send(room, "apple")
    await alice.send(room, "apple apple apple banana cherry apple")
    for n in range(12):
        await alice.send(room, f"filler {n} apple and many other words that dilute the apple term here {n}")
    ranked = await search(alice, "apple", filter={"limit": 5})
    assert ranked["count"] == 14 and len(ranked["results"]) == 5
    ranks = [r["rank"] for r in ranked["results"]]
    assert ranks == sorted(ranks, reverse=True)
    assert ranked["results"][0]["result"]["content"]["body"] in ("apple", "apple apple apple banana cherry apple")
    seen = [r["result"]["event_id"] for r in ranked["results"]]
    batch = ranked["next_batch"]
    while batch:
        page = await search(alice, "apple", filter={"limit": 5}, next_batch=batch)
        seen += [r["result"]["event_id"] for r in page["results"]]
        batch = page.get("next_batch")
        assert len(seen) <= 14
    assert len(seen) == len(set(seen)) == 14

    recent = await search(alice, "apple", order_by="recent", filter={"limit": 4})
    bodies_ = found(recent)
    assert bodies_[0].startswith("filler 11") and bodies_[3].startswith("filler 8")
    older = await search(alice, "apple", order_by="recent", filter={"limit": 20}, next_batch=recent["next_batch"])
    assert len(older["results"]) == 10 and "next_batch" not in older
    assert found(older)[-1] == "apple"
    assert_error(await search(alice, "apple", order_by="recent", next_batch="o5", expect=400), "M_INVALID_PARAM")


async def test_a_user_never_finds_what_they_may_not_read(hs: Matrix) -> None:
    alice, bob, eve = await hs.users("alice", "bob", "eve")
    private = await alice.create_room(preset="private_chat")
    await alice.send(private, "secret plans")
    assert (await search(eve, "secret"))["count"] == 0  # never a member
    # Joined history visibility: what came before bob joined stays hidden.
    room = await alice.create_room(preset="public_chat")
    await alice.put_state(room, "m.room.history_visibility", {"history_visibility": "joined"})
    await alice.send(room, "secret before bob")
    await bob.join(room)
    await alice.send(room, "secret while bob is here")
    assert found(await search(bob, "secret")) == ["secret while bob is here"]
    # After leaving: what came before the leave, nothing after.
    await bob.leave(room)
    await alice.send(room, "secret after bob left")
    assert found(await search(bob, "secret")) == ["secret while bob is here"]
    # A redacted event leaves the index at once.
    mine = await alice.send(room, "secret to be redacted")
    assert "secret to be redacted" in found(await search(alice, "secret"))
    await alice.put(f"/rooms/{q(room)}/redact/{q(mine)}/r1", {})
    assert "secret to be redacted" not in found(await search(alice, "secret"))
    assert (await search(alice, "redacted"))["count"] == 0


async def test_filters_context_state_and_groupings(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    r1 = await alice.create_room(preset="public_chat", name="one")
    r2 = await alice.create_room(preset="public_chat", name="two")
    await bob.join(r1)
    await bob.join(r2)
    await bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bobby"})
    await alice.send(r1, "before")
    await bob.send(r1, "pizza in one")
    await alice.send(r1, "after")
    await alice.send(r2, "pizza in two")
    only_r2 = await search(bob, "pizza", filter={"rooms": [r2]})
    assert found(only_r2) == ["pizza in two"]
    not_bob = await search(bob, "pizza", filter={"not_senders": [bob.user_id]})
    assert found(not_bob) == ["pizza in two"]
    with_ctx = await search(
        bob, "pizza", filter={"rooms": [r1]}, include_state=True,
        event_context={"before_limit": 1, "after_limit": 1, "include_profile": True},
        groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
    )
    ctx = with_ctx["results"][0]["context"]
    assert [e["content"]["body"] for e in ctx["events_before"]] == ["before"]
    assert [e["content"]["body"] for e in ctx["events_after"]] == ["after"]
    assert ctx["start"] and ctx["end"]
    assert ctx["profile_info"][bob.user_id]["displayname"] == "Bobby"
    assert {e["type"] for e in with_ctx["state"][r1]} >= {"m.room.create", "m.room.name"}
    event_id = with_ctx["results"][0]["result"]["event_id"]
    assert with_ctx["groups"]["room_id"][r1]["results"] == [event_id]
    assert with_ctx["groups"]["sender"][bob.user_id]["results"] == [event_id]


async def test_bad_search_requests(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    for body in (
        {}, {"search_categories": {"room_events": {}}},
        {"search_categories": {"room_events": {"search_term": 5}}},
        {"search_categories": {"room_events": {"search_term": "x", "order_by": "best"}}},
        {"search_categories": {"room_events": {"search_term": "x", "keys": ["content.url"]}}},
        {"search_categories": {"room_events": {"search_term": "x", "filter": {"rooms": "!r:hs.test"}}}},
    ):
        err = await alice.post("/search", body, expect=400)
        assert err["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM", "M_MISSING_PARAM"), (body, err)
    assert_error(await search(alice, "x", next_batch="garbage", expect=400), "M_INVALID_PARAM")
    await hs.call("POST", "/search", {"search_categories": {}}, expect=401)


async def test_events_not_yet_indexed_when_the_server_stopped_are_indexed_on_start(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    """As after a crash between commit and indexing: the index lost its rows and its mark
    (or never had them: a database from before search existed). The next start indexes
    the history again, redactions included."""
    hs = await start_hs(hs_config)
    alice = await hs.register("alice")
    room = await alice.create_room(name="Durable room")
    await alice.send(room, "kept message")
    gone = await alice.send(room, "redacted message")
    await alice.put(f"/rooms/{q(room)}/redact/{q(gone)}/r1", {})
    await hs.client.close()
    engine = create_engine(hs_config.database.url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.delete(event_search))
            await conn.execute(sa.delete(push_progress).where(push_progress.c.name == "search"))
    finally:
        await engine.dispose()

    hs = await start_hs(hs_config)
    alice = await hs.login_user("alice")
    assert found(await search(alice, "message")) == ["kept message"]
    assert found(await search(alice, "durable")) == ["Durable room"]
