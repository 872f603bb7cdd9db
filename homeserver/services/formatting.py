"""Client event format: the PDU minus federation keys, plus `unsigned`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.core.events import Event, StoredEvent
from homeserver.core.redaction import redact_pdu
from homeserver.services.clock import now_ms

_CLIENT_KEYS = ("event_id", "type", "sender", "origin_server_ts", "content", "state_key", "room_id")


def client_event(
    se: StoredEvent, *, device_id: str | None = None, redacted_by: Event | None = None,
    prev_content: dict[str, Any] | None = None, include_room_id: bool = True, now: int | None = None,
) -> dict[str, Any]:
    event = se.event
    pdu = redact_pdu(event.room_version, event.pdu) if redacted_by is not None else event.pdu
    out: dict[str, Any] = {"event_id": event.event_id}
    for key in _CLIENT_KEYS[1:]:
        if key in pdu:
            out[key] = pdu[key]
    out.setdefault("content", {})
    if include_room_id:
        out["room_id"] = event.room_id  # a v12 create event carries none; clients need it
    else:
        out.pop("room_id", None)
    if event.type == "m.room.redaction" and event.redacts:
        out["redacts"] = event.redacts
    unsigned: dict[str, Any] = {"age": max(0, (now or now_ms()) - event.origin_server_ts)}
    if device_id is not None and se.txn_device == device_id and se.txn_id is not None:
        unsigned["transaction_id"] = se.txn_id
    if prev_content is not None:
        unsigned["prev_content"] = prev_content
        unsigned["replaces_state"] = se.replaces_state
    if redacted_by is not None:
        unsigned["redacted_because"] = bare_client_event(redacted_by, include_room_id=include_room_id, now=now)
    out["unsigned"] = unsigned
    return out


def federation_event(se: StoredEvent, *, redacted_by: Event | None = None) -> dict[str, Any]:
    """Spec "Filtering", `event_format: federation`: the event as received over federation,
    i.e. the PDU as stored (redacted once a redaction applies), with nothing of ours added."""
    event = se.event
    return redact_pdu(event.room_version, event.pdu) if redacted_by is not None else dict(event.pdu)


def bare_client_event(event: Event, *, include_room_id: bool = True, now: int | None = None) -> dict[str, Any]:
    """An event with nothing of ours attached (no transaction id, no prev_content, no redaction)."""
    return client_event(StoredEvent(event, 0, None, None), include_room_id=include_room_id, now=now)


def stripped_state(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Stripped state for invites: type, state_key, sender and content only."""
    return [
        {"type": e.type, "state_key": e.state_key, "sender": e.sender, "content": e.content}
        for e in events
    ]
