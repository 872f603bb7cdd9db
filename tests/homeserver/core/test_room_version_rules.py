"""Per-version rules of rooms v1-v12: event ids, redaction, auth (table-driven)."""

from __future__ import annotations

import pytest

from homeserver.core.auth_rules import (
    auth_event_selection,
    check_auth_events,
    check_auth_rules,
    check_event_auth,
    user_power_level,
)
from homeserver.core.errors import AuthError, MatrixError
from homeserver.core.events import (
    compute_event_id,
    event_from_pdu,
    hash_and_sign_pdu,
    room_id_for_create,
    validate_pdu,
)
from homeserver.core.redaction import redact_pdu
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.core.signing import SigningKey, decode_base64, verify_json_signature
from tests.homeserver.core.authutil import ALICE, BOB, CAROL, Room, make_event, member

KEY = SigningKey("1", decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"))
ALL = [str(n) for n in range(1, 13)]

# The spec's signing example (appendices#signing-details): same signature in every
# version whose redaction keeps "origin" (v1-v10).
MINIMAL = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
MINIMAL_SIG = (
    "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
)


@pytest.mark.parametrize("version", [str(n) for n in range(1, 11)])
def test_spec_signing_vector_v1_to_v10(version):
    pdu = dict(MINIMAL, event_id="$e:domain") if version in ("1", "2") else MINIMAL
    signed = hash_and_sign_pdu(version, pdu, "domain", KEY)
    if version in ("1", "2"):  # event_id is signed too in these versions
        verify_json_signature(
            redact_pdu(version, signed), "domain", "ed25519:1", KEY.verify_key_bytes
        )
    else:
        assert signed["signatures"]["domain"]["ed25519:1"] == MINIMAL_SIG


def test_event_id_formats_per_version():
    signed = hash_and_sign_pdu("10", MINIMAL, "domain", KEY)
    v4 = compute_event_id("4", signed)
    assert v4 == "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"  # known v10 vector
    # v3 is the same hash in the standard alphabet; v4+ url-safe; v1-2 carried in the event.
    v3 = compute_event_id("3", signed)
    assert v3 == v4.replace("-", "+").replace("_", "/")
    assert compute_event_id("1", {**signed, "event_id": "$abc:domain"}) == "$abc:domain"
    with pytest.raises(MatrixError):
        compute_event_id("2", signed)  # v1-2 events must carry their id


def test_hash_with_slash_differs_between_v3_and_v4():
    # Find an event whose hash has a '+' or '/', so the alphabets visibly differ.
    for ts in range(1000, 1200):
        pdu = hash_and_sign_pdu("4", {**MINIMAL, "origin_server_ts": ts}, "domain", KEY)
        v3, v4 = compute_event_id("3", pdu), compute_event_id("4", pdu)
        if v3 != v4:
            assert set(v3[1:]) & set("+/") and set(v4[1:]) & set("-_")
            return
    pytest.fail("no hash with + or / found")


def test_legacy_prev_events_pairs():
    pdu = {
        **MINIMAL,
        "event_id": "$e:domain",
        "prev_events": [["$p:domain", {"sha256": "abc"}]],
        "auth_events": [["$c:domain", {"sha256": "def"}]],
    }
    signed = hash_and_sign_pdu("1", pdu, "domain", KEY)
    validate_pdu("1", signed)
    event = event_from_pdu("1", signed)
    assert event.event_id == "$e:domain"
    assert event.prev_event_ids == ["$p:domain"] and event.auth_event_ids == ["$c:domain"]
    with pytest.raises(MatrixError):  # plain ids are not the v1 format
        validate_pdu("1", {**signed, "prev_events": ["$p:domain"]})
    with pytest.raises(MatrixError):  # and pairs are not the v4 format
        validate_pdu("4", {**signed, "event_id": None})


def test_v12_room_ids():
    create = {k: v for k, v in MINIMAL.items() if k != "room_id"}
    create.update(type="m.room.create", state_key="", content={"room_version": "12"})
    signed = hash_and_sign_pdu("12", create, "domain", KEY)
    validate_pdu("12", signed)
    event = event_from_pdu("12", signed)
    assert event.room_id == room_id_for_create(event.event_id)
    assert event.room_id.startswith("!") and ":" not in event.room_id
    # A server-less room id is valid only in v12.
    msg = {**MINIMAL, "room_id": event.room_id}
    validate_pdu("12", hash_and_sign_pdu("12", msg, "domain", KEY))
    with pytest.raises(MatrixError):
        validate_pdu("11", hash_and_sign_pdu("11", msg, "domain", KEY))


# --- redaction ---------------------------------------------------------------

CONTENTS = {
    "m.room.aliases": {"aliases": ["#a:domain"], "x": 1},
    "m.room.join_rules": {"join_rule": "restricted", "allow": [], "x": 1},
    "m.room.member": {"membership": "join", "join_authorised_via_users_server": ALICE, "x": 1},
    "m.room.power_levels": {"ban": 50, "invite": 0, "x": 1},
    "m.room.create": {"creator": ALICE, "room_version": "1", "x": 1},
    "m.room.redaction": {"redacts": "$x", "x": 1},
}
# (type) -> the content keys each version keeps.
KEPT = {
    "m.room.aliases": {v: ({"aliases"} if int(v) <= 5 else set()) for v in ALL},
    "m.room.join_rules": {
        v: ({"join_rule", "allow"} if int(v) >= 8 else {"join_rule"}) for v in ALL
    },
    "m.room.member": {
        v: ({"membership", "join_authorised_via_users_server"} if int(v) >= 9 else {"membership"})
        for v in ALL
    },
    "m.room.power_levels": {v: ({"ban", "invite"} if int(v) >= 11 else {"ban"}) for v in ALL},
    "m.room.create": {
        v: ({"creator", "room_version", "x"} if int(v) >= 11 else {"creator"}) for v in ALL
    },
    "m.room.redaction": {v: ({"redacts"} if int(v) >= 11 else set()) for v in ALL},
}


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("event_type", sorted(CONTENTS))
def test_redaction_per_version(version, event_type):
    pdu = {"type": event_type, "content": CONTENTS[event_type], "origin": "d", "membership": "j"}
    redacted = redact_pdu(version, pdu)
    assert set(redacted["content"]) == KEPT[event_type][version]
    # v11 stops keeping origin/membership at the top level.
    assert ("origin" in redacted) is (int(version) <= 10)


# --- auth rules ----------------------------------------------------------------


def _room(version, **kw):
    room = Room(version, **kw)
    return room


@pytest.mark.parametrize("version", ALL)
def test_knock_needs_v7(version):
    room = _room(version, join_rule="knock")
    knock = member(BOB, "knock", version=version)
    if int(version) >= 7:
        check_auth_rules(version, knock, room.state)
    else:
        with pytest.raises(AuthError):
            check_auth_rules(version, knock, room.state)


@pytest.mark.parametrize("version", ALL)
def test_restricted_needs_v8_and_knock_restricted_v10(version):
    for rule, since in (("restricted", 8), ("knock_restricted", 10)):
        room = _room(version, join_rule=rule)
        join = member(
            BOB,
            "join",
            version=version,
            content={"join_authorised_via_users_server": ALICE},
            signatures={"b.test": {"ed25519:1": "x"}, "a.test": {"ed25519:1": "x"}},
        )
        if int(version) >= since:
            check_auth_rules(version, join, room.state)
        else:
            with pytest.raises(AuthError):
                check_auth_rules(version, join, room.state)


@pytest.mark.parametrize("version", ALL)
def test_aliases_special_case_v1_to_v5(version):
    room = _room(version)
    room.add(member(BOB, "join", version=version))
    # BOB (b.test) may not send state at level 0, except m.room.aliases for b.test in v1-v5.
    aliases = make_event("m.room.aliases", BOB, {"aliases": []}, "b.test", version=version)
    if int(version) <= 5:
        check_auth_rules(version, aliases, room.state)
        with pytest.raises(AuthError):
            bad = make_event("m.room.aliases", BOB, {"aliases": []}, "a.test", version=version)
            check_auth_rules(version, bad, room.state)
    else:
        with pytest.raises(AuthError):
            check_auth_rules(version, aliases, room.state)


@pytest.mark.parametrize("version", ALL)
def test_redaction_auth_rule_v1_v2(version):
    room = _room(version)
    room.add(member(BOB, "join", version=version))
    # BOB (level 0) redacts an event from another server: v1-v2 auth rejects it.
    redaction = make_event("m.room.redaction", BOB, {}, version=version, redacts="$x:a.test")
    redaction = type(redaction)("$r:b.test", redaction.pdu, version)
    if int(version) <= 2:
        with pytest.raises(AuthError):
            check_auth_rules(version, redaction, room.state)
        own = type(redaction)("$r:b.test", {**redaction.pdu, "redacts": "$y:b.test"}, version)
        check_auth_rules(version, own, room.state)
    else:
        check_auth_rules(version, redaction, room.state)  # handled outside auth from v3


@pytest.mark.parametrize("version", ALL)
def test_stringy_power_levels_until_v10(version):
    room = _room(version)
    pl = make_event(
        "m.room.power_levels", ALICE, {"users": {ALICE: "100"}, "ban": "50"}, "", version=version
    )
    if int(version) >= 10:
        with pytest.raises(AuthError):
            check_auth_rules(version, pl, room.state)
    else:
        check_auth_rules(version, pl, room.state)
        room.add(pl)
        assert user_power_level(room.state, ALICE, version) == (
            2**64 if int(version) >= 12 else 100
        )


@pytest.mark.parametrize("version", ALL)
def test_notifications_limited_from_v6(version):
    room = _room(version)
    room.add(member(BOB, "join", version=version))
    room.add(
        make_event(
            "m.room.power_levels",
            ALICE,
            {"users": {BOB: 50}, "events": {"m.room.power_levels": 50}},
            "",
            version=version,
        )
    )
    pl = make_event(
        "m.room.power_levels",
        BOB,
        {"users": {BOB: 50}, "events": {"m.room.power_levels": 50}, "notifications": {"room": 90}},
        "",
        version=version,
    )
    if int(version) >= 6:
        with pytest.raises(AuthError):
            check_auth_rules(version, pl, room.state)
    else:
        check_auth_rules(version, pl, room.state)


@pytest.mark.parametrize("version", ALL)
def test_leave_after_knock_from_v7(version):
    room = _room(version, join_rule="knock" if int(version) >= 7 else "invite")
    room.add(member(BOB, "knock", version=version))
    leave = member(BOB, "leave", version=version)
    if int(version) >= 7:
        check_auth_rules(version, leave, room.state)
    else:
        with pytest.raises(AuthError):
            check_auth_rules(version, leave, room.state)


# --- v12 ---------------------------------------------------------------------


def _v12_room(additional=None):
    content = {"room_version": "12"}
    if additional is not None:
        content["additional_creators"] = additional
    create = make_event("m.room.create", ALICE, content, "", version="12", prev_events=[])
    pdu = {k: v for k, v in create.pdu.items() if k != "room_id"}
    create = type(create)("$createhash", pdu, "12")
    room_id = room_id_for_create(create.event_id)
    state = {("m.room.create", ""): create}
    join = member(ALICE, "join", version="12", room_id=room_id, prev_events=[create.event_id])
    state[("m.room.member", ALICE)] = join
    return create, room_id, state


def test_v12_create_rules():
    create, _, _ = _v12_room()
    check_auth_rules("12", create, {})
    with pytest.raises(AuthError, match="room_id"):
        check_auth_rules("12", type(create)("$c", {**create.pdu, "room_id": "!x:a.test"}, "12"), {})
    bad, _, _ = _v12_room(additional=["not a user"])
    with pytest.raises(AuthError, match="additional_creators"):
        check_auth_rules("12", bad, {})


def test_v12_room_id_must_name_the_create_event():
    _, room_id, state = _v12_room()
    msg = make_event("m.room.message", ALICE, {}, version="12", room_id=room_id)
    check_auth_rules("12", msg, state)
    other = make_event("m.room.message", ALICE, {}, version="12", room_id="!other")
    with pytest.raises(AuthError, match="create"):
        check_auth_rules("12", other, state)


def test_v12_create_not_in_auth_events():
    create, room_id, state = _v12_room()
    assert ("m.room.create", "") not in auth_event_selection(
        "12", "m.room.message", ALICE, None, {}
    )
    assert ("m.room.create", "") in auth_event_selection("11", "m.room.message", ALICE, None, {})
    msg = make_event("m.room.message", ALICE, {}, version="12", room_id=room_id)
    join = state[("m.room.member", ALICE)]
    check_event_auth("12", msg, [join], create_event=create)
    with pytest.raises(AuthError, match="Unexpected"):
        check_auth_events("12", msg, [create, join])


def test_v12_creators_have_infinite_power():
    _, room_id, state = _v12_room(additional=[BOB])
    state[("m.room.member", BOB)] = member(BOB, "join", version="12", room_id=room_id)
    state[("m.room.member", CAROL)] = member(CAROL, "join", version="12", room_id=room_id)
    assert user_power_level(state, ALICE, "12") > 2**53
    assert user_power_level(state, BOB, "12") > 2**53
    # Creators cannot be listed in power levels, nor kick each other.
    pl = make_event(
        "m.room.power_levels", ALICE, {"users": {BOB: 100}}, "", version="12", room_id=room_id
    )
    with pytest.raises(AuthError, match="creators"):
        check_auth_rules("12", pl, state)
    ok = make_event(
        "m.room.power_levels", ALICE, {"users": {CAROL: 100}}, "", version="12", room_id=room_id
    )
    check_auth_rules("12", ok, state)
    kick = member(ALICE, "leave", BOB, version="12", room_id=room_id)
    with pytest.raises(AuthError):
        check_auth_rules("12", kick, state)
    kick_carol = member(BOB, "leave", CAROL, version="12", room_id=room_id)
    check_auth_rules("12", kick_carol, state)


def test_all_versions_known():
    assert sorted(KNOWN_ROOM_VERSIONS, key=int) == ALL
