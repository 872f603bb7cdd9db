"""Event relationships (spec: "Forming relationships between events"): what an event's
`m.relates_to` says it relates to. Pure."""

from __future__ import annotations

from homeserver.core.events import Event

# The relation types whose aggregations are bundled in unsigned.m.relations
# (spec: "Aggregations of child events").
REPLACE, THREAD, REFERENCE = "m.replace", "m.thread", "m.reference"


def relation_of(event: Event) -> tuple[str, str] | None:
    """(parent event id, rel_type), or None when the event relates to nothing. Replies
    (`m.in_reply_to`) are not relationships in this sense and are not indexed."""
    rel = event.content.get("m.relates_to")
    if not isinstance(rel, dict):
        return None
    parent, rel_type = rel.get("event_id"), rel.get("rel_type")
    if not isinstance(parent, str) or not isinstance(rel_type, str) or not parent or not rel_type:
        return None
    if len(parent) > 255 or len(rel_type) > 255:
        return None
    return parent, rel_type
