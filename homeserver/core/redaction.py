"""The redaction algorithms (rooms/v1, v6, v8, v9 and v11 redactions): what survives a redaction.

Used for signing, for event ids (reference hashes) and for serving redacted
events, so it must match the spec key by key for each room version.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.room_versions import RedactionRules, RoomVersion, get_room_version

_TOP_LEVEL_V10 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 no longer protects origin, membership and prev_state.
_TOP_LEVEL_V11 = _TOP_LEVEL_V10 - {"origin", "membership", "prev_state"}

_POWER_LEVEL_KEYS = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)

# rooms/v1 redactions (v1-v5).
_CONTENT_V1: dict[str, tuple[str, ...]] = {
    "m.room.member": ("membership",),
    "m.room.create": ("creator",),
    "m.room.join_rules": ("join_rule",),
    "m.room.power_levels": _POWER_LEVEL_KEYS,
    "m.room.aliases": ("aliases",),
    "m.room.history_visibility": ("history_visibility",),
}
# rooms/v6 redactions: m.room.aliases loses its special case.
_CONTENT_V6 = {k: v for k, v in _CONTENT_V1.items() if k != "m.room.aliases"}
# rooms/v8: join_rules keep "allow".
_CONTENT_V8 = {**_CONTENT_V6, "m.room.join_rules": ("join_rule", "allow")}
# rooms/v9 redactions (v9-v10): members keep join_authorised_via_users_server.
_CONTENT_V10 = {**_CONTENT_V8, "m.room.member": ("membership", "join_authorised_via_users_server")}
_CONTENT_V11: dict[str, tuple[str, ...]] = {
    **_CONTENT_V10,
    "m.room.power_levels": (*_POWER_LEVEL_KEYS, "invite"),
    "m.room.redaction": ("redacts",),
}
_CONTENT_TABLES = {
    RedactionRules.V1: _CONTENT_V1,
    RedactionRules.V6: _CONTENT_V6,
    RedactionRules.V8: _CONTENT_V8,
    RedactionRules.V9: _CONTENT_V10,
    RedactionRules.V11: _CONTENT_V11,
}


def _redact_content(version: RoomVersion, event_type: Any, content: Any) -> dict[str, Any]:
    if not isinstance(content, dict):
        return {}
    if version.v11_redaction and event_type == "m.room.create":
        return dict(content)  # v11 keeps the whole create content
    table = _CONTENT_TABLES[version.redaction_rules]
    keep = table.get(event_type, ()) if isinstance(event_type, str) else ()
    new = {k: content[k] for k in keep if k in content}
    if version.v11_redaction and event_type == "m.room.member" and "third_party_invite" in content:
        # v11 keeps only third_party_invite.signed. Like Synapse: an object without
        # "signed" becomes {}, anything that is not an object is dropped.
        tpi = content["third_party_invite"]
        if isinstance(tpi, dict):
            new["third_party_invite"] = {"signed": tpi["signed"]} if "signed" in tpi else {}
    return new


def redact_pdu(room_version: RoomVersion | str, pdu: dict[str, Any]) -> dict[str, Any]:
    """Return the redacted form of ``pdu`` (a new dict; ``pdu`` is not modified).

    Nested values under kept keys (e.g. ``users`` in power levels) are shared
    with the input, not copied: treat the result as read-only or copy it.
    ``unsigned`` is removed; callers serving the event re-add
    ``unsigned.redacted_because`` themselves.
    """
    version = get_room_version(room_version)
    keep = _TOP_LEVEL_V11 if version.v11_redaction else _TOP_LEVEL_V10
    redacted = {k: v for k, v in pdu.items() if k in keep}
    redacted["content"] = _redact_content(version, pdu.get("type"), pdu.get("content"))
    return redacted
