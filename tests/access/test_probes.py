"""Access-control probes (issue 18): nobody reads what isn't theirs.

A probe (:func:`leaks`) asks every read endpoint that could show a room's content, as one
user, whether it gives away a marker only the room's members may see: the event itself,
/messages, /context, /relations, /threads, /timestamp_to_event, state (whole and one
event), members and joined members, /initialSync, search, /notifications, /sync
(timeline, state, and the typing and receipt EDUs) and the room's account data. Each
scenario checks the probe finds nothing where history visibility forbids it, and finds
the marker where it allows it (so a probe that cannot see anything would fail there).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

from tests.helpers import Matrix, User, q

CV1 = "/_matrix/client/v1"


async def status_and_text(user: User, method: str, path: str, body: Any = None, **params: Any) -> tuple[int, str]:
    kw: dict[str, Any] = {"token": user.token}
    if params:
        kw["params"] = params
    if body is not None:
        r = await user.hs.raw(method, path, body, **kw)
    else:
        r = await user.hs.raw(method, path, **kw)
    assert r.status < 500, (method, path, r.status, r.text)
    return r.status, r.text


async def leaks(user: User, room: str, event_id: str, marker: str) -> set[str]:
    """Which endpoints show ``user`` the event ``event_id`` or the text ``marker`` (also the
    localpart of a member who joined with the secret, see :func:`add_traces`)."""
    found: set[str] = set()
    r, e = q(room), q(event_id)
    ts = _sent_ts.get(event_id, int(time.time() * 1000))
    probes: list[tuple[str, str, str, Any, dict[str, Any]]] = [
        ("event", "GET", f"/rooms/{r}/event/{e}", None, {}),
        ("messages", "GET", f"/rooms/{r}/messages", None, {"dir": "b", "limit": "100"}),
        ("context", "GET", f"/rooms/{r}/context/{e}", None, {}),
        ("relations", "GET", f"{CV1}/rooms/{r}/relations/{e}", None, {}),
        ("threads", "GET", f"{CV1}/rooms/{r}/threads", None, {}),
        ("timestamp_to_event", "GET", f"{CV1}/rooms/{r}/timestamp_to_event", None,
         {"ts": str(ts), "dir": "b"}),
        ("state", "GET", f"/rooms/{r}/state", None, {}),
        ("state_event", "GET", f"/rooms/{r}/state/m.room.topic/", None, {}),
        ("members", "GET", f"/rooms/{r}/members", None, {}),
        ("joined_members", "GET", f"/rooms/{r}/joined_members", None, {}),
        ("initial_sync", "GET", f"/rooms/{r}/initialSync", None, {}),
        ("search", "POST", "/search", {"search_categories": {"room_events": {"search_term": marker}}}, {}),
        ("notifications", "GET", "/notifications", None, {}),
        ("sync", "GET", "/sync", None, {"full_state": "true"}),
    ]
    for name, method, path, body, params in probes:
        status, text = await status_and_text(user, method, path, body, **params)
        if name == "search" and status == 200:
            # The answer repeats the search term (`highlights`): only results count.
            text = json.dumps(json.loads(text)["search_categories"]["room_events"].get("results", []))
        if status == 200 and (marker in text or event_id in text):
            found.add(name)
    # Ephemeral events of the room reach a user only through /sync, and only while joined.
    sync = json.loads((await status_and_text(user, "GET", "/sync", None))[1])
    for section in ("join", "leave", "invite"):
        ephemeral = sync.get("rooms", {}).get(section, {}).get(room, {}).get("ephemeral", {}).get("events", [])
        for edu in ephemeral:
            if edu["type"] == "m.typing" and edu["content"].get("user_ids"):
                found.add("typing")
            if edu["type"] == "m.receipt" and edu["content"]:
                found.add("receipts")
    return found


# The secret event's origin_server_ts, so timestamp_to_event points at it exactly.
_sent_ts: dict[str, int] = {}

READ_ENDPOINTS = {
    "event", "messages", "context", "relations", "threads", "timestamp_to_event", "state", "state_event",
    "members", "joined_members", "initial_sync", "search", "notifications", "sync", "typing", "receipts",
}


async def room_with_secret(owner: User, visibility: str, preset: str = "private_chat") -> tuple[str, str, str]:
    """A room of ``owner`` whose history visibility is ``visibility``, holding a secret
    message (mentioning "eve", so it would notify her), a reaction and a thread reply to
    it, a topic, a member, a receipt, typing, and room account data; returns (room, event,
    marker)."""
    marker = "secret" + secrets.token_hex(6)
    room = await owner.create_room(preset=preset, initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": visibility}},
    ])
    event_id = await owner.send(room, f"{marker} for eve")
    await add_traces(owner, room, event_id, marker)
    return room, event_id, marker


async def add_traces(owner: User, room: str, event_id: str, marker: str) -> None:
    _sent_ts[event_id] = (await owner.get(f"/rooms/{q(room)}/event/{q(event_id)}"))["origin_server_ts"]
    # A member named after the secret: members lists are secrets of the room too.
    member = await owner.hs.register(marker)
    await owner.invite(room, member)
    await member.join(room)
    await owner.send(room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": marker}},
                     type="m.reaction")
    await owner.send(room, {"msgtype": "m.text", "body": f"{marker} reply",
                            "m.relates_to": {"rel_type": "m.thread", "event_id": event_id}})
    await owner.put_state(room, "m.room.topic", {"topic": marker})
    await owner.post(f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {})
    await owner.put(f"/rooms/{q(room)}/typing/{q(owner.user_id)}", {"typing": True, "timeout": 30000})
    await owner.put(f"/user/{q(owner.user_id)}/rooms/{q(room)}/account_data/m.secret", {"marker": marker})


async def assert_room_account_data_private(eve: User, owner: User, room: str) -> None:
    for path in (f"/user/{q(owner.user_id)}/rooms/{q(room)}/account_data/m.secret",
                 f"/user/{q(owner.user_id)}/account_data/m.secret"):
        status, _ = await status_and_text(eve, "GET", path)
        assert status == 403, path


@pytest.mark.parametrize("visibility", ["shared", "invited", "joined"])
async def test_an_outsider_reads_nothing(hs: Matrix, visibility: str) -> None:
    alice, eve = await hs.users("alice", "eve")
    room, event_id, marker = await room_with_secret(alice, visibility)
    assert await leaks(eve, room, event_id, marker) == set()
    await assert_room_account_data_private(eve, alice, room)
    # The probe sees what a member sees (it is not blind): alice's own view leaks everything.
    assert await leaks(alice, room, event_id, marker) >= READ_ENDPOINTS - {"notifications", "typing", "receipts"}


async def test_world_readable_history_is_readable_but_not_ephemeral_or_private_data(hs: Matrix) -> None:
    alice, eve = await hs.users("alice", "eve")
    room, event_id, marker = await room_with_secret(alice, "world_readable")
    found = await leaks(eve, room, event_id, marker)
    # Spec "History visibility": world_readable events are for anyone...
    assert {"event", "messages", "context", "relations", "state_event"} <= found
    # ...but an outsider's notifications, sync, typing and receipts never show the room.
    assert found.isdisjoint({"notifications", "sync", "typing", "receipts", "search"})
    await assert_room_account_data_private(eve, alice, room)


@pytest.mark.parametrize("how", ["leave", "kick", "ban"])
async def test_after_leaving_nothing_new_is_readable(hs: Matrix, how: str) -> None:
    alice, eve = await hs.users("alice", "eve")
    room, before_id, before = await room_with_secret(alice, "shared", preset="public_chat")
    await eve.join(room)
    if how == "leave":
        await eve.leave(room)
    else:
        await alice.post(f"/rooms/{q(room)}/{how}", {"user_id": eve.user_id})
    after = "after" + secrets.token_hex(6)
    after_id = await alice.send(room, f"{after} for eve")
    await add_traces(alice, room, after_id, after)
    assert await leaks(eve, room, after_id, after) == set()
    await assert_room_account_data_private(eve, alice, room)
    # What eve could see while she was there stays hers (spec: up to the leave).
    assert {"event", "messages"} <= await leaks(eve, room, before_id, before)


async def test_joined_visibility_hides_what_came_before_the_join(hs: Matrix) -> None:
    alice, eve = await hs.users("alice", "eve")
    room, before_id, before = await room_with_secret(alice, "joined", preset="public_chat")
    await eve.join(room)
    found = await leaks(eve, room, before_id, before)
    assert "typing" in found  # a member does get the room's ephemeral events (the probe sees them)
    # The current state (topic) is eve's now that she is joined; the history before her join
    # (the message, its relations, receipts) is not.
    assert found.isdisjoint({"event", "context", "relations", "threads", "search", "notifications",
                             "timestamp_to_event", "messages"}), found
    after = "after" + secrets.token_hex(6)
    after_id = await alice.send(room, f"{after} for eve")
    assert {"event", "messages", "context", "search"} <= await leaks(eve, room, after_id, after)


async def test_invited_visibility_shows_from_the_invite_on(hs: Matrix) -> None:
    alice, eve = await hs.users("alice", "eve")
    room, before_id, before = await room_with_secret(alice, "invited")
    await alice.invite(room, eve)
    # Invited but not joined: no history, no state beyond the invite's stripped state.
    assert await leaks(eve, room, before_id, before) - {"sync"} == set()
    between = "between" + secrets.token_hex(6)
    between_id = await alice.send(room, f"{between} for eve")
    await eve.join(room)
    assert {"event", "messages"} <= await leaks(eve, room, between_id, between)
    found = await leaks(eve, room, before_id, before)
    assert found.isdisjoint({"event", "context", "relations", "search", "timestamp_to_event"}), found


async def test_authenticated_media_needs_a_token(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    up = await hs.raw_bytes("POST", "/_matrix/media/v3/upload", b"private bytes", token=alice.token,
                            headers={"Content-Type": "text/plain"})
    media_id = json.loads(up.body)["content_uri"].rsplit("/", 1)[1]
    for path in (f"{CV1}/media/download/{hs.server_name}/{media_id}",
                 f"{CV1}/media/thumbnail/{hs.server_name}/{media_id}"):
        r = await hs.raw_bytes("GET", path, params={"width": "32", "height": "32"})
        assert r.status == 401, path
        assert json.loads(r.body)["errcode"] == "M_MISSING_TOKEN"
