"""The push gateway format: what a homeserver POSTs to a pusher's URL.

Pure. Spec: https://spec.matrix.org/v1.19/push-gateway-api/#post_matrixpushv1notify
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

PATH = "/_matrix/push/v1/notify"


@attrs.frozen
class GatewayAnswer:
    """What the gateway said: `retry` for unreachable or a 5xx/429 (send again later);
    otherwise delivered, with the pushkeys it rejected (their pushers are removed)."""

    retry: bool = False
    rejected: tuple[str, ...] = ()


def tweaks(actions: Sequence[Any]) -> dict[str, Any]:
    """The set_tweak actions as the `tweaks` object (highlight defaults to true)."""
    out: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            out[action["set_tweak"]] = action.get("value", True)
    return out


def notify_body(
    *, pusher: Mapping[str, Any], event: Mapping[str, Any], actions: Sequence[Any], unread: int,
    sender_display_name: str | None, room_name: str | None, user_is_target: bool,
) -> dict[str, Any]:
    """One pusher's notification. `data.format: event_id_only` sends no event content
    (spec: for gateways that must not see it); `data.url` stays with us."""
    data = {k: v for k, v in pusher.get("data", {}).items() if k != "url"}
    device = {
        "app_id": pusher["app_id"], "pushkey": pusher["pushkey"], "data": data,
        "tweaks": tweaks(actions),
    }
    if "pushkey_ts" in pusher:
        device["pushkey_ts"] = pusher["pushkey_ts"]
    note: dict[str, Any] = {
        "event_id": event["event_id"], "room_id": event["room_id"],
        "counts": {"unread": unread},
        "devices": [device],
        "prio": "high" if "highlight" in device["tweaks"] or "sound" in device["tweaks"] else "low",
    }
    if data.get("format") != "event_id_only":
        note.update({
            "type": event["type"], "sender": event["sender"], "content": event.get("content", {}),
        })
        if sender_display_name:
            note["sender_display_name"] = sender_display_name
        if room_name:
            note["room_name"] = room_name
        if event["type"] == "m.room.member":
            note["user_is_target"] = user_is_target
    return {"notification": note}
