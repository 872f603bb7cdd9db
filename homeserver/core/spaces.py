"""Spaces: the pure parts of the space hierarchy (client-server API "Spaces", spec v1.2+;
server-server API "Spaces"): which ``m.space.child`` events name a child, in what order,
what a room summary says, and who may see a room in a hierarchy.

Inputs are plain state: ``{(type, state_key): pdu}`` dicts, membership strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

StateKey = tuple[str, str]
SPACE_CHILD = "m.space.child"
# Join rules that let anyone join or knock without an invite.
_OPEN_RULES = frozenset({"public", "knock", "knock_restricted"})
_RESTRICTED_RULES = frozenset({"restricted", "knock_restricted"})


@attrs.frozen
class Child:
    room_id: str
    via: tuple[str, ...]
    suggested: bool
    order: str | None
    ts: int


def _valid_order(value: Any) -> str | None:
    """``order``: a string of at most 50 characters in \\x20-\\x7E (spec, "m.space.child")."""
    if isinstance(value, str) and len(value) <= 50 and all("\x20" <= c <= "\x7e" for c in value):
        return value
    return None


def space_children(state: Mapping[StateKey, Mapping[str, Any]]) -> list[Child]:
    """The children named by a room's ``m.space.child`` state, ordered as the spec says:
    valid ``order`` first (by code point), then by the event's origin_server_ts, then by
    room id. An event without a non-empty ``via`` list removes the child."""
    children = []
    for (event_type, room_id), pdu in state.items():
        if event_type != SPACE_CHILD or not room_id.startswith("!"):
            continue
        content = pdu.get("content") or {}
        via = content.get("via")
        if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
            continue
        ts = pdu.get("origin_server_ts")
        children.append(Child(
            room_id, tuple(via), content.get("suggested") is True, _valid_order(content.get("order")),
            ts if isinstance(ts, int) else 0,
        ))
    children.sort(key=lambda c: (c.order is None, c.order or "", c.ts, c.room_id))
    return children


def children_state(state: Mapping[StateKey, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``m.space.child`` events as stripped state plus ``origin_server_ts``, in child order."""
    by_room = {k[1]: pdu for k, pdu in state.items() if k[0] == SPACE_CHILD}
    return [
        {
            "type": SPACE_CHILD, "state_key": c.room_id, "content": by_room[c.room_id].get("content") or {},
            "sender": by_room[c.room_id].get("sender"), "origin_server_ts": c.ts,
        }
        for c in space_children(state)
    ]


def _content(state: Mapping[StateKey, Mapping[str, Any]], key: StateKey) -> Mapping[str, Any]:
    pdu = state.get(key)
    content = pdu.get("content") if pdu is not None else None
    return content if isinstance(content, Mapping) else {}


def join_rule(state: Mapping[StateKey, Mapping[str, Any]]) -> str:
    rule = _content(state, ("m.room.join_rules", "")).get("join_rule")
    return rule if isinstance(rule, str) else "invite"


def allowed_room_ids(state: Mapping[StateKey, Mapping[str, Any]]) -> list[str]:
    """The rooms whose members may join a restricted room (``m.room_membership`` allow rules)."""
    allow = _content(state, ("m.room.join_rules", "")).get("allow")
    return [
        a["room_id"] for a in (allow if isinstance(allow, list) else [])
        if isinstance(a, Mapping) and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)
    ]


def room_summary(
    room_id: str, room_version: str, state: Mapping[StateKey, Mapping[str, Any]], joined_members: int,
) -> dict[str, Any]:
    """The spec's room summary (``room_summary.yaml``), plus ``children_state``."""
    summary: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": joined_members,
        "world_readable": _content(state, ("m.room.history_visibility", "")).get("history_visibility")
        == "world_readable",
        "guest_can_join": _content(state, ("m.room.guest_access", "")).get("guest_access") == "can_join",
        "join_rule": join_rule(state),
        "room_version": room_version,
        "children_state": children_state(state),
    }
    for key, field, name in (
        (("m.room.name", ""), "name", "name"), (("m.room.topic", ""), "topic", "topic"),
        (("m.room.avatar", ""), "url", "avatar_url"),
        (("m.room.canonical_alias", ""), "alias", "canonical_alias"),
        (("m.room.encryption", ""), "algorithm", "encryption"),
        (("m.room.create", ""), "type", "room_type"),
    ):
        value = _content(state, key).get(field)
        if isinstance(value, str) and value:
            summary[name] = value
    if summary["join_rule"] in _RESTRICTED_RULES:
        summary["allowed_room_ids"] = allowed_room_ids(state)
    return summary


def visible_to_user(
    summary: Mapping[str, Any], membership: str | None, joined_rooms: Iterable[str],
) -> bool:
    """Whether a user may see a room in a hierarchy (client-server API, GET /hierarchy):
    joined or invited, a public or knockable room, a restricted one whose conditions
    they meet, or a world-readable one."""
    if membership in ("join", "invite"):
        return True
    if summary.get("join_rule") in _OPEN_RULES or summary.get("world_readable") is True:
        return True
    if summary.get("join_rule") in _RESTRICTED_RULES:
        allowed = summary.get("allowed_room_ids") or []
        return any(r in allowed for r in joined_rooms)
    return False


def visible_to_server(summary: Mapping[str, Any], server_has_member: bool) -> bool:
    """Whether a peer could feasibly peek or join (server-server API, GET /hierarchy):
    it has a member there, or the room is public, knockable, world-readable or
    restricted (its users may meet the conditions; the peer filters per user)."""
    return server_has_member or summary.get("join_rule") in _OPEN_RULES | _RESTRICTED_RULES or (
        summary.get("world_readable") is True
    )
