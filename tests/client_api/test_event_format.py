"""Filter `event_format` (spec: "Filtering"): "federation" returns the events as PDUs."""

from __future__ import annotations

from tests.client_api.test_sync import chat
from tests.helpers import Matrix, q, timeline

PDU_KEYS = {"auth_events", "prev_events", "depth", "hashes", "signatures", "room_id"}


async def test_federation_format_returns_the_pdus_in_sync(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    await alice.send(room, "as a pdu")
    sync = await alice.sync(filter={"event_format": "federation", "room": {"timeline": {"limit": 1}}})
    (event,) = timeline(sync, room)
    assert set(event) >= PDU_KEYS and event["content"]["body"] == "as a pdu"
    state = sync["rooms"]["join"][room]["state"]["events"]
    # v12: the create event has no room_id (the room id is its hash).
    assert state and all(set(e) >= PDU_KEYS - ({"room_id"} if e["type"] == "m.room.create" else set()) for e in state)
    # The default, client format, has none of the federation keys.
    (event,) = timeline(await alice.sync(filter={"room": {"timeline": {"limit": 1}}}), room)
    assert not set(event) & (PDU_KEYS - {"room_id"})


async def test_federation_format_shows_redactions(hs: Matrix) -> None:
    alice, _, room = await chat(hs)
    event_id = await alice.send(room, "secret")
    await alice.put(f"/rooms/{q(room)}/redact/{q(event_id)}/t1", {})
    sync = await alice.sync(filter={"event_format": "federation", "room": {"timeline": {"limit": 2}}})
    (redacted,) = [e for e in timeline(sync, room) if e["type"] == "m.room.message"]
    assert redacted["content"] == {} and "hashes" in redacted
