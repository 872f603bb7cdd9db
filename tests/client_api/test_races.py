"""Requests that race each other: retries with the same transaction id, the same name twice."""

from __future__ import annotations

import asyncio

from tests.helpers import PASSWORD, Matrix, bodies, q


async def test_a_retry_racing_the_original_request_creates_one_event(hs: Matrix) -> None:
    alice = await hs.register("alice")
    room = await alice.create_room()
    ids = await asyncio.gather(*(alice.send(room, "only once", txn="retry-1") for _ in range(5)))
    assert len(set(ids)) == 1
    assert bodies((await alice.messages(room, limit=10))["chunk"]) == ["only once"]


async def test_registering_the_same_name_at_once_gives_one_account(hs: Matrix) -> None:
    body = {"username": "popular", "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
    results = await asyncio.gather(*(hs.raw("POST", "/register", body) for _ in range(4)))
    statuses = sorted(r.status for r in results)
    assert statuses == [200, 400, 400, 400], [r.text for r in results]
    assert all(r.json["errcode"] == "M_USER_IN_USE" for r in results if r.status == 400)


async def test_simultaneous_joins_all_succeed(hs: Matrix) -> None:
    alice = await hs.register("alice")
    room = await alice.create_room(preset="public_chat")
    others = [await hs.register(f"user{n}") for n in range(6)]
    await asyncio.gather(*(u.join(room) for u in others))
    joined = (await alice.get(f"/rooms/{q(room)}/joined_members"))["joined"]
    assert set(joined) == {alice.user_id} | {u.user_id for u in others}


async def test_concurrent_filter_uploads_get_distinct_ids(hs: Matrix) -> None:
    alice = await hs.register("alice")
    bodies_ = [{"room": {"timeline": {"limit": n}}} for n in range(8)]
    got = await asyncio.gather(*(alice.post(f"/user/{q(alice.user_id)}/filter", b) for b in bodies_))
    ids = [g["filter_id"] for g in got]
    assert len(set(ids)) == len(ids)
    for fid, body in zip(ids, bodies_, strict=True):
        assert await alice.get(f"/user/{q(alice.user_id)}/filter/{fid}") == body
