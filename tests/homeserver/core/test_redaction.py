import pytest

from homeserver.core.errors import MatrixError
from homeserver.core.redaction import redact_pdu
from homeserver.core.room_versions import V10, V11

TOP = {
    "event_id": "$e",
    "room_id": "!r:d",
    "sender": "@u:d",
    "origin": "d",
    "origin_server_ts": 1,
    "depth": 2,
    "prev_events": ["$p"],
    "auth_events": ["$a"],
    "prev_state": [],
    "membership": "join",
    "hashes": {"sha256": "h"},
    "signatures": {"d": {"ed25519:1": "s"}},
    "unsigned": {"age": 1},
    "redacts": "$t",
    "other": "x",
}
COMMON_KEPT = {
    "event_id",
    "room_id",
    "sender",
    "origin_server_ts",
    "depth",
    "prev_events",
    "auth_events",
    "hashes",
    "signatures",
    "type",
    "content",
    "state_key",
}


def _pdu(event_type, content, state_key=""):
    pdu = {**TOP, "type": event_type, "content": content}
    if state_key is not None:
        pdu["state_key"] = state_key
    return pdu


@pytest.mark.parametrize("version", [V10, V11])
def test_top_level_keys(version):
    redacted = redact_pdu(version, _pdu("m.room.message", {"body": "hi"}, state_key=None))
    expected = COMMON_KEPT - {"state_key"}
    if version is V10:
        expected |= {"origin", "prev_state", "membership"}
    assert set(redacted) == expected
    assert redacted["content"] == {}


def test_input_not_modified_and_content_always_present():
    pdu = _pdu("m.room.message", {"body": "hi"}, state_key=None)
    redact_pdu(V10, pdu)
    assert pdu["content"] == {"body": "hi"} and "unsigned" in pdu
    assert redact_pdu("11", {"type": "m.room.message"}) == {"type": "m.room.message", "content": {}}
    assert redact_pdu(V10, {"type": "m.room.member", "content": "bad"})["content"] == {}


def test_unknown_version():
    with pytest.raises(MatrixError):
        redact_pdu("13", {})


PL_CONTENT = {
    "ban": 50,
    "events": {"m.room.name": 100},
    "events_default": 0,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "users": {"@u:d": 100},
    "users_default": 0,
    "invite": 0,
    "notifications": {"room": 50},
    "historical": 100,
}

CASES = [
    # (type, content, v10 kept content, v11 kept content)
    (
        "m.room.member",
        {
            "membership": "join",
            "displayname": "U",
            "join_authorised_via_users_server": "@a:d",
            "third_party_invite": {"signed": {"mxid": "@u:d"}, "display_name": "x"},
        },
        {"membership": "join", "join_authorised_via_users_server": "@a:d"},
        {
            "membership": "join",
            "join_authorised_via_users_server": "@a:d",
            "third_party_invite": {"signed": {"mxid": "@u:d"}},
        },
    ),
    (
        "m.room.member",
        {"membership": "invite", "third_party_invite": {"display_name": "x"}},
        {"membership": "invite"},
        {"membership": "invite", "third_party_invite": {}},
    ),
    (
        "m.room.member",
        {"membership": "invite", "third_party_invite": "junk"},
        {"membership": "invite"},
        {"membership": "invite"},
    ),
    (
        "m.room.create",
        {"creator": "@u:d", "room_version": "10", "m.federate": False, "type": "m.space"},
        {"creator": "@u:d"},
        {"creator": "@u:d", "room_version": "10", "m.federate": False, "type": "m.space"},
    ),
    (
        "m.room.join_rules",
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1},
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
    ),
    (
        "m.room.power_levels",
        PL_CONTENT,
        {
            k: PL_CONTENT[k]
            for k in (
                "ban",
                "events",
                "events_default",
                "kick",
                "redact",
                "state_default",
                "users",
                "users_default",
            )
        },
        {
            k: PL_CONTENT[k]
            for k in (
                "ban",
                "events",
                "events_default",
                "kick",
                "redact",
                "state_default",
                "users",
                "users_default",
                "invite",
            )
        },
    ),
    (
        "m.room.history_visibility",
        {"history_visibility": "shared", "x": 1},
        {"history_visibility": "shared"},
        {"history_visibility": "shared"},
    ),
    ("m.room.redaction", {"redacts": "$t", "reason": "spam"}, {}, {"redacts": "$t"}),
    ("m.room.aliases", {"aliases": ["#a:d"]}, {}, {}),
    ("m.room.name", {"name": "n"}, {}, {}),
    ("m.room.topic", {"topic": "t"}, {}, {}),
    ("com.example.custom", {"a": 1}, {}, {}),
]


@pytest.mark.parametrize(("event_type", "content", "v10", "v11"), CASES)
def test_content_per_type(event_type, content, v10, v11):
    pdu = _pdu(event_type, content)
    assert redact_pdu(V10, pdu)["content"] == v10
    assert redact_pdu(V11, pdu)["content"] == v11


def test_redaction_top_level_redacts_removed_in_both():
    pdu = _pdu("m.room.redaction", {"redacts": "$t"}, state_key=None)
    assert "redacts" not in redact_pdu(V10, pdu)
    assert "redacts" not in redact_pdu(V11, pdu)
