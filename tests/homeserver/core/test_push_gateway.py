"""The push gateway body (spec push-gateway-api, POST /_matrix/push/v1/notify)."""

from __future__ import annotations

from homeserver.core.push_gateway import notify_body, tweaks

PUSHER = {"app_id": "app", "pushkey": "key", "pushkey_ts": 12,
          "data": {"url": "https://gw/_matrix/push/v1/notify", "extra": 1}}
EVENT = {"event_id": "$e", "room_id": "!r:hs", "type": "m.room.member", "sender": "@a:hs",
         "state_key": "@b:hs", "content": {"membership": "invite"}}


def test_tweaks_from_actions() -> None:
    assert tweaks(["notify", {"set_tweak": "sound", "value": "ring"}, {"set_tweak": "highlight"}]) == {
        "sound": "ring", "highlight": True,
    }
    assert tweaks(["notify"]) == {}


def test_full_body_keeps_the_url_to_ourselves() -> None:
    note = notify_body(
        pusher=PUSHER, event=EVENT, actions=["notify"], unread=3, sender_display_name="Alice",
        room_name="Room", user_is_target=True,
    )["notification"]
    assert note == {
        "event_id": "$e", "room_id": "!r:hs", "type": "m.room.member", "sender": "@a:hs",
        "content": {"membership": "invite"}, "sender_display_name": "Alice", "room_name": "Room",
        "user_is_target": True, "counts": {"unread": 3}, "prio": "low",
        "devices": [{"app_id": "app", "pushkey": "key", "pushkey_ts": 12, "data": {"extra": 1}, "tweaks": {}}],
    }


def test_event_id_only_sends_no_content() -> None:
    pusher = {**PUSHER, "data": {"url": "u", "format": "event_id_only"}}
    note = notify_body(
        pusher=pusher, event=EVENT, actions=["notify", {"set_tweak": "highlight"}], unread=1,
        sender_display_name="Alice", room_name="Room", user_is_target=True,
    )["notification"]
    assert set(note) == {"event_id", "room_id", "counts", "devices", "prio"}
    assert note["prio"] == "high"
