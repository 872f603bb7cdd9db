"""Recall: a sender redacts their own message within the window for its msgtype;
moderators any time; the original content leaves storage after the retention."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import attrs
import sqlalchemy as sa

from config.schema import HomeserverConfig
from storage.engine import create_engine
from tests.helpers import Matrix, assert_error, q


async def _stored_content(cfg: HomeserverConfig, event_id: str) -> dict:
    engine = create_engine(cfg.database.url)
    try:
        async with engine.connect() as conn:
            raw = (await conn.execute(sa.text("SELECT json FROM events WHERE event_id = :e"), {"e": event_id})).scalar()
    finally:
        await engine.dispose()
    return json.loads(raw)["content"]


async def test_recall_window_per_msgtype_and_moderators(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    # Text may not be recalled at all here (window 0); files for ten minutes.
    cfg = attrs.evolve(hs_config, recall_window_ms=0, recall_windows_ms={"m.file": 600_000})
    hs = await start_hs(cfg)
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    text = await bob.send(room, "typo")
    file = await bob.send(room, {"msgtype": "m.file", "body": "a.pdf", "url": "mxc://hs.test/abc"})
    await asyncio.sleep(0.01)  # the text message is now older than its (zero) window
    err = await bob.put(f"/rooms/{q(room)}/redact/{q(text)}/r1", {}, expect=403)
    assert_error(err, "M_FORBIDDEN")
    assert err["error"] == "Messages can only be recalled within 0 ms of sending them"
    await bob.put(f"/rooms/{q(room)}/redact/{q(file)}/r2", {})
    # The room owner (a moderator by power level) recalls anyone's message at any time.
    await alice.put(f"/rooms/{q(room)}/redact/{q(text)}/r3", {"reason": "cleanup"})
    seen = await bob.get(f"/rooms/{q(room)}/event/{q(text)}")
    assert seen["content"] == {} and seen["unsigned"]["redacted_because"]["sender"] == alice.user_id


async def test_window_error_names_the_window(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    hs = await start_hs(attrs.evolve(hs_config, recall_window_ms=0, recall_windows_ms={"m.text": 120_000, "m.image": 0}))
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    image = await bob.send(room, {"msgtype": "m.image", "body": "cat.png", "url": "mxc://hs.test/cat"})
    await asyncio.sleep(0.01)
    err = await bob.put(f"/rooms/{q(room)}/redact/{q(image)}/r1", {}, expect=403)
    assert err["error"] == "Messages can only be recalled within 0 ms of sending them"
    text = await bob.send(room, "fine")
    await bob.put(f"/rooms/{q(room)}/redact/{q(text)}/r2", {})


async def test_recalled_content_leaves_storage_at_once_by_default(hs: Matrix, hs_config: HomeserverConfig) -> None:
    alice = await hs.register("alice")
    room = await alice.create_room()
    secret = await alice.send(room, "my password is hunter2")
    kept = await alice.send(room, "this stays")
    await alice.put(f"/rooms/{q(room)}/redact/{q(secret)}/r1", {})
    assert await _stored_content(hs_config, secret) == {}
    assert (await _stored_content(hs_config, kept))["body"] == "this stays"
    # Readers still see the trace: the event, redacted, in /messages.
    page = await alice.messages(room, "b", limit=5)
    trace = next(e for e in page["chunk"] if e["event_id"] == secret)
    assert trace["content"] == {} and "redacted_because" in trace["unsigned"]


async def test_content_retention_delays_the_purge(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> None:
    cfg = attrs.evolve(hs_config, recall_content_retention_ms=300)
    hs = await start_hs(cfg)
    alice = await hs.register("alice")
    room = await alice.create_room()
    secret = await alice.send(room, "kept a moment")
    await alice.put(f"/rooms/{q(room)}/redact/{q(secret)}/r1", {})
    assert (await _stored_content(cfg, secret))["body"] == "kept a moment"
    seen = await alice.get(f"/rooms/{q(room)}/event/{q(secret)}")
    assert seen["content"] == {}  # never served, even while still stored
    for _ in range(200):  # bounded: 10 s
        if await _stored_content(cfg, secret) == {}:
            break
        await asyncio.sleep(0.05)
    assert await _stored_content(cfg, secret) == {}


def test_windows_read_as_people_say_them() -> None:
    from homeserver.services.local_events import _duration

    assert _duration(120_000) == "2 minutes"
    assert _duration(10_800_000) == "3 hours"
    assert _duration(1000) == "1 second"
    assert _duration(1500) == "1500 ms"
