"""Reporting content (spec: "Reporting content"): what is stored for admins, and that a
refused report stores nothing."""

from __future__ import annotations

from typing import Any

from config.schema import HomeserverConfig
from storage.engine import create_engine
from storage.stores.reports import ReportStore
from tests.helpers import Matrix, assert_error, q


async def stored(cfg: HomeserverConfig) -> list[dict[str, Any]]:
    engine = create_engine(cfg.database.url)
    try:
        return await ReportStore(engine).list()
    finally:
        await engine.dispose()


async def test_reports_of_events_rooms_and_users(hs: Matrix, hs_config: HomeserverConfig) -> None:
    alice, bob, eve = await hs.users("alice", "bob", "eve")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    bad = await bob.send(room, "something awful")
    assert await alice.post(f"/rooms/{q(room)}/report/{q(bad)}", {"reason": "awful", "score": -100}) == {}
    assert await alice.post(f"/rooms/{q(room)}/report/{q(bad)}", {}) == {}  # reason is optional
    assert await eve.post(f"/rooms/{q(room)}/report", {"reason": "spam room"}) == {}  # no need to be in it
    assert await alice.post(f"/users/{q(bob.user_id)}/report", {"reason": "rude"}) == {}
    assert await alice.post(f"/users/{q('@someone:elsewhere.test')}/report", {"reason": "remote"}) == {}
    got = [(r["kind"], r["reporter"], r["room_id"], r["event_id"], r["target_user_id"], r["reason"])
           for r in reversed(await stored(hs_config))]
    assert got == [
        ("event", alice.user_id, room, bad, None, "awful"),
        ("event", alice.user_id, room, bad, None, None),
        ("room", eve.user_id, room, None, None, "spam room"),
        ("user", alice.user_id, None, None, bob.user_id, "rude"),
        ("user", alice.user_id, None, None, "@someone:elsewhere.test", "remote"),
    ]


async def test_refused_reports_store_nothing(hs: Matrix, hs_config: HomeserverConfig) -> None:
    alice, bob, eve = await hs.users("alice", "bob", "eve")
    room = await alice.create_room(preset="public_chat")
    other = await alice.create_room(preset="public_chat")
    event = await alice.send(room, "hello")
    # Not joined: 404, as for an unknown event, an event of another room, or a redacted one.
    assert_error(await eve.post(f"/rooms/{q(room)}/report/{q(event)}", {"reason": "x"}, expect=404), "M_NOT_FOUND")
    await bob.join(room)
    await bob.join(other)
    for room_id, event_id in ((room, "$nope"), (other, event)):
        err = await bob.post(f"/rooms/{q(room_id)}/report/{q(event_id)}", {"reason": "x"}, expect=404)
        assert_error(err, "M_NOT_FOUND")
    await alice.put(f"/rooms/{q(room)}/redact/{q(event)}/r1", {})
    assert_error(await bob.post(f"/rooms/{q(room)}/report/{q(event)}", {}, expect=404), "M_NOT_FOUND")
    assert_error(await bob.post(f"/rooms/{q('!nope:hs.test')}/report", {"reason": "x"}, expect=404), "M_NOT_FOUND")
    assert_error(await bob.post(f"/users/{q('@ghost:hs.test')}/report", {"reason": "x"}, expect=404), "M_NOT_FOUND")
    assert_error(await bob.post(f"/users/{q('ghost')}/report", {"reason": "x"}, expect=400), "M_INVALID_PARAM")
    assert_error(await bob.post(f"/rooms/{q(room)}/report", {}, expect=400), "M_MISSING_PARAM")
    assert_error(await bob.post(f"/rooms/{q(room)}/report", {"reason": 5}, expect=400), "M_BAD_JSON")
    await hs.call("POST", f"/rooms/{q(room)}/report", {"reason": "x"}, expect=401)
    assert await stored(hs_config) == []
