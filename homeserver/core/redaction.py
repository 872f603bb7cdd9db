"""The redaction algorithm (https://spec.matrix.org/v1.19/rooms/v11/#redactions): what survives a redaction.

Used for signing, for event ids (reference hashes) and for serving redacted
events, so it must match the spec key by key for each room version.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.room_versions import RoomVersion, get_room_version

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

_CONTENT_V10: dict[str, tuple[str, ...]] = {
    "m.room.member": ("membership", "join_authorised_via_users_server"),
    "m.room.create": ("creator",),
    "m.room.join_rules": ("join_rule", "allow"),
    "m.room.power_levels": _POWER_LEVEL_KEYS,
    "m.room.history_visibility": ("history_visibility",),
}
_CONTENT_V11: dict[str, tuple[str, ...]] = {
    **_CONTENT_V10,
    "m.room.power_levels": (*_POWER_LEVEL_KEYS, "invite"),
    "m.room.redaction": ("redacts",),
}


def _redact_content(version: RoomVersion, event_type: Any, content: Any) -> dict[str, Any]:
    if not isinstance(content, dict):
        return {}
    if version.v11_redaction and event_type == "m.room.create":
        return dict(content)  # v11 keeps the whole create content
    table = _CONTENT_V11 if version.v11_redaction else _CONTENT_V10
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
