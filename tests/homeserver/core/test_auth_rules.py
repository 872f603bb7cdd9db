import pytest

from homeserver.core.auth_rules import (
    auth_types_for_event,
    check_auth_events,
    check_auth_rules,
    check_event_auth,
    membership_of,
    named_power_level,
    required_power_level,
    room_creator,
    user_power_level,
)
from homeserver.core.errors import AuthError
from homeserver.core.signing import generate_signing_key, sign_json

from .authutil import ALICE, BOB, CAROL, DAVE, ROOM, Room, make_event, member


def allowed(room: Room, event, **kw) -> None:
    check_auth_rules(room.version, event, room.state, **kw)


def denied(room: Room, event, match: str | None = None, **kw) -> None:
    with pytest.raises(AuthError, match=match):
        check_auth_rules(room.version, event, room.state, **kw)


# --- rule 1: create ----------------------------------------------------------


def _create(version="10", sender=ALICE, **content):
    return make_event("m.room.create", sender, content, "", version=version, prev_events=[])


def test_create_ok():
    check_auth_rules("10", _create(creator=ALICE, room_version="10"), {})
    check_auth_rules("11", _create("11", room_version="11"), {})


def test_create_with_prev_events():
    event = make_event("m.room.create", ALICE, {"creator": ALICE, "room_version": "10"}, "")
    with pytest.raises(AuthError, match="prev_events"):
        check_auth_rules("10", event, {})


def test_create_room_domain_must_match_sender():
    with pytest.raises(AuthError, match="different servers"):
        check_auth_rules("10", _create(sender=BOB, creator=BOB, room_version="10"), {})


def test_create_unknown_version():
    with pytest.raises(AuthError, match="room version"):
        check_auth_rules("11", _create("11", room_version="99"), {})


def test_create_missing_version_means_v1():
    # A missing room_version means "1", which is a known version.
    check_auth_rules("11", _create("11"), {})


def test_create_v10_needs_creator_v11_does_not():
    with pytest.raises(AuthError, match="creator"):
        check_auth_rules("10", _create(room_version="10"), {})
    check_auth_rules("11", _create("11", room_version="11"), {})


def test_no_create_in_state():
    room = Room()
    del room.state[("m.room.create", "")]
    denied(room, room.ev("m.room.message", ALICE, {}), "create")


# --- rule 3: m.federate --------------------------------------------------------


def test_m_federate_false():
    room = Room()
    room.add(_create(creator=ALICE, room_version="10", **{"m.federate": False}))
    denied(room, room.member(BOB, "join"), "federate")
    allowed(room, room.member("@other:a.test", "join"))


# --- rule 4.3: joins -------------------------------------------------------------


def test_creator_first_join():
    for version in ("10", "11"):
        room = Room(version)
        del room.state[("m.room.member", ALICE)]
        del room.state[("m.room.join_rules", "")]
        del room.state[("m.room.power_levels", "")]
        first = room.member(ALICE, "join", prev_events=[room.create.event_id])
        allowed(room, first)
        # Not straight after the create event: the invite join rule applies.
        denied(room, room.member(ALICE, "join"), "not invited")
        # Somebody else straight after the create event.
        denied(room, room.member(BOB, "join", prev_events=[room.create.event_id]))


def test_v11_creator_is_create_sender():
    room = Room("11", join_rule=None)
    room.add(_create("11", room_version="11", creator=BOB))  # creator key has no meaning in v11
    del room.state[("m.room.power_levels", "")]
    create_id = room.state[("m.room.create", "")].event_id
    allowed(room, room.member(ALICE, "join", prev_events=[create_id]))
    denied(room, room.member(BOB, "join", prev_events=[create_id]))
    assert room_creator(room.state) == ALICE
    assert user_power_level(room.state, ALICE) == 100
    assert user_power_level(room.state, BOB) == 0


def test_v10_creator_from_content():
    room = Room("10", join_rule=None)
    room.add(_create(sender="@x:a.test", room_version="10", creator=ALICE))
    del room.state[("m.room.power_levels", "")]
    assert room_creator(room.state) == ALICE
    assert user_power_level(room.state, ALICE) == 100
    assert user_power_level(room.state, "@x:a.test") == 0


def test_join_public():
    room = Room(join_rule="public")
    allowed(room, room.member(BOB, "join"))


def test_join_on_behalf_of_other():
    room = Room()
    denied(room, room.member(BOB, "join", CAROL), "behalf")


def test_banned_cannot_join():
    room = Room()
    room.add(room.member(ALICE, "ban", BOB))
    denied(room, room.member(BOB, "join"), "banned")


@pytest.mark.parametrize("rule", ["invite", "knock"])
def test_join_invite_only(rule):
    room = Room(join_rule=rule)
    denied(room, room.member(BOB, "join"), "not invited")
    room.add(room.member(ALICE, "invite", BOB))
    allowed(room, room.member(BOB, "join"))
    room.join(BOB)
    allowed(room, room.member(BOB, "join", content={"displayname": "B"}))


def test_missing_join_rules_means_invite():
    room = Room(join_rule=None)
    denied(room, room.member(BOB, "join"))
    room.add(room.ev("m.room.join_rules", ALICE, {"join_rules": "public"}, ""))  # typo'd key
    denied(room, room.member(BOB, "join"))


@pytest.mark.parametrize("rule", ["private", "junk"])
def test_join_other_rules_rejected(rule):
    room = Room(join_rule=rule)
    denied(room, room.member(BOB, "join"))


@pytest.mark.parametrize("rule", ["restricted", "knock_restricted"])
def test_join_restricted(rule):
    room = Room(join_rule=rule, pl={"users": {ALICE: 100}, "invite": 50})
    denied(room, room.member(BOB, "join"), "authorised")
    via_alice = room.member(BOB, "join", content={"join_authorised_via_users_server": ALICE})
    # 4.2: the authorising server must have signed the event.
    denied(room, via_alice, "signed")
    signed = room.member(
        BOB,
        "join",
        content={"join_authorised_via_users_server": ALICE},
        signatures={"b.test": {"ed25519:1": "x"}, "a.test": {"ed25519:1": "y"}},
    )
    allowed(room, signed)
    # A caller-supplied signature check is used instead of the presence test.
    denied(room, signed, "signed", verify_authoriser=lambda event, server: False)
    seen = []
    allowed(room, via_alice, verify_authoriser=lambda event, server: seen.append(server) or True)
    assert seen == ["a.test"]
    # Authoriser without invite power, or not joined.
    room.join(DAVE)
    via_dave = room.member(BOB, "join", content={"join_authorised_via_users_server": DAVE})
    denied(room, via_dave, "authorised", verify_authoriser=lambda e, s: True)
    via_carol = room.member(BOB, "join", content={"join_authorised_via_users_server": CAROL})
    room.set_pl({"users": {ALICE: 100, CAROL: 50}, "invite": 50})
    denied(room, via_carol, "authorised", verify_authoriser=lambda e, s: True)
    room.join(CAROL)
    allowed(room, via_carol, verify_authoriser=lambda e, s: True)
    # An invite is enough without any authoriser.
    room.add(room.member(ALICE, "invite", BOB))
    allowed(room, room.member(BOB, "join"))


# --- rule 4.4: invites -------------------------------------------------------------


def test_invite():
    room = Room()
    allowed(room, room.member(ALICE, "invite", BOB))
    denied(room, room.member(BOB, "invite", CAROL), "not joined")  # sender not joined
    room.join(BOB)
    denied(room, room.member(ALICE, "invite", BOB), "already join")
    room.add(room.member(ALICE, "ban", CAROL))
    denied(room, room.member(ALICE, "invite", CAROL), "already ban")


def test_invite_needs_invite_level():
    room = Room(pl={"users": {ALICE: 100}, "invite": 50})
    room.join(BOB)
    denied(room, room.member(BOB, "invite", CAROL), "invite")
    allowed(room, room.member(ALICE, "invite", CAROL))
    # Default invite level is 0.
    room.set_pl({"users": {ALICE: 100}})
    allowed(room, room.member(BOB, "invite", CAROL))


def _third_party_room():
    key = generate_signing_key("0")
    room = Room()
    room.join(BOB)
    room.add(
        room.ev(
            "m.room.third_party_invite",
            BOB,
            {"display_name": "c...", "public_keys": [{"public_key": key.verify_key_base64}]},
            "tok",
        )
    )
    signed = sign_json({"mxid": CAROL, "token": "tok"}, "id.test", key)
    return room, key, signed


def test_third_party_invite():
    room, key, signed = _third_party_room()
    ok = room.member(BOB, "invite", CAROL, content={"third_party_invite": {"signed": signed}})
    allowed(room, ok)
    # Wrong inviter.
    denied(
        room,
        room.member(ALICE, "invite", CAROL, content={"third_party_invite": {"signed": signed}}),
    )
    # mxid mismatch.
    denied(
        room, room.member(BOB, "invite", DAVE, content={"third_party_invite": {"signed": signed}})
    )
    # Bad signature.
    forged = sign_json({"mxid": CAROL, "token": "tok"}, "id.test", generate_signing_key("0"))
    denied(
        room, room.member(BOB, "invite", CAROL, content={"third_party_invite": {"signed": forged}})
    )
    # Unknown token.
    other = sign_json({"mxid": CAROL, "token": "nope"}, "id.test", key)
    denied(
        room, room.member(BOB, "invite", CAROL, content={"third_party_invite": {"signed": other}})
    )
    # Missing signed.
    denied(room, room.member(BOB, "invite", CAROL, content={"third_party_invite": {}}))
    # Banned target.
    room.add(room.member(ALICE, "ban", CAROL))
    denied(room, ok, "banned")


def test_third_party_invite_single_public_key():
    room, key, signed = _third_party_room()
    tpi = room.state[("m.room.third_party_invite", "tok")]
    room.add(
        room.ev("m.room.third_party_invite", BOB, {"public_key": key.verify_key_base64}, "tok")
    )
    assert tpi is not room.state[("m.room.third_party_invite", "tok")]
    allowed(
        room, room.member(BOB, "invite", CAROL, content={"third_party_invite": {"signed": signed}})
    )


# --- rule 4.5 / 4.6: leave, kick, ban, unban -----------------------------------------


def test_self_leave():
    room = Room()
    room.join(BOB)
    allowed(room, room.member(BOB, "leave"))
    room.add(room.member(BOB, "leave"))
    denied(room, room.member(BOB, "leave"), "cannot leave")
    room.add(room.member(ALICE, "invite", BOB))
    allowed(room, room.member(BOB, "leave"))  # reject the invite
    room.add(room.member(ALICE, "ban", BOB))
    denied(room, room.member(BOB, "leave"), "cannot leave")
    denied(room, room.member(CAROL, "leave"), "cannot leave")  # never there


def test_kick():
    room = Room(pl={"users": {ALICE: 100, BOB: 50, CAROL: 50}})
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    allowed(room, room.member(BOB, "leave", DAVE))
    denied(room, room.member(BOB, "leave", CAROL), "kick")  # equal level
    denied(room, room.member(BOB, "leave", ALICE), "kick")  # higher level
    denied(room, room.member(DAVE, "leave", BOB), "kick")  # no power
    allowed(room, room.member(ALICE, "leave", BOB))
    room.add(room.member(BOB, "leave"))
    denied(room, room.member(BOB, "leave", DAVE), "not joined")
    # Kicking someone who already left still needs kick power (and is allowed).
    room.add(room.member(DAVE, "leave"))
    allowed(room, room.member(CAROL, "leave", DAVE))


def test_unban_needs_ban_and_kick_and_higher_level():
    room = Room(pl={"users": {ALICE: 100, BOB: 50}, "ban": 60, "kick": 40})
    room.join(BOB)
    room.add(room.member(ALICE, "ban", CAROL))
    denied(room, room.member(BOB, "leave", CAROL), "unban")
    allowed(room, room.member(ALICE, "leave", CAROL))
    room.set_pl({"users": {ALICE: 100, BOB: 50}, "ban": 50, "kick": 60})
    denied(room, room.member(BOB, "leave", CAROL), "kick")
    room.set_pl({"users": {ALICE: 100, BOB: 50, CAROL: 50}, "ban": 50, "kick": 50})
    denied(room, room.member(BOB, "leave", CAROL), "kick")


def test_ban():
    room = Room(pl={"users": {ALICE: 100, BOB: 50, CAROL: 50}})
    room.join(BOB)
    allowed(room, room.member(BOB, "ban", DAVE))  # not even in the room
    denied(room, room.member(BOB, "ban", CAROL), "ban")
    denied(room, room.member(DAVE, "ban", BOB), "not joined")
    room.join(DAVE)
    denied(room, room.member(DAVE, "ban", BOB), "ban")
    allowed(room, room.member(ALICE, "ban", BOB))


# --- rule 4.7 / 4.8: knock and unknown memberships ------------------------------------


@pytest.mark.parametrize("rule", ["knock", "knock_restricted"])
def test_knock(rule):
    room = Room(join_rule=rule)
    allowed(room, room.member(BOB, "knock"))
    denied(room, room.member(BOB, "knock", CAROL), "behalf")
    room.add(room.member(ALICE, "invite", BOB))
    denied(room, room.member(BOB, "knock"), "invite")
    room.add(room.member(BOB, "knock"))
    allowed(room, room.member(BOB, "leave"))  # rescind


def test_knock_needs_knock_rule():
    room = Room(join_rule="public")
    denied(room, room.member(BOB, "knock"), "knock")


def test_bad_member_events():
    room = Room()
    denied(room, room.member(BOB, "dance"), "Unknown membership")
    denied(room, room.ev("m.room.member", BOB, {}, BOB), "membership")
    denied(room, room.ev("m.room.member", BOB, {"membership": "join"}), "state_key")


# --- rules 5-8: everything else --------------------------------------------------------


def test_non_members_cannot_send():
    room = Room()
    denied(room, room.ev("m.room.message", BOB, {"body": "hi"}), "not joined")
    room.add(room.member(ALICE, "invite", BOB))
    denied(room, room.ev("m.room.message", BOB, {"body": "hi"}), "not joined")
    room.join(BOB)
    allowed(room, room.ev("m.room.message", BOB, {"body": "hi"}))
    room.add(room.member(BOB, "leave"))
    denied(room, room.ev("m.room.message", BOB, {"body": "hi"}), "not joined")


def test_required_power_levels():
    room = Room(pl={"users": {ALICE: 100, BOB: 50}, "events": {"m.room.name": 100, "m.custom": 60}})
    room.join(BOB)
    room.join(CAROL)
    allowed(room, room.ev("m.room.topic", BOB, {}, ""))  # state_default 50
    denied(room, room.ev("m.room.topic", CAROL, {}, ""), "power level 50")
    denied(room, room.ev("m.room.name", BOB, {}, ""), "power level 100")
    denied(room, room.ev("m.custom", BOB, {}), "power level 60")  # events override messages
    allowed(room, room.ev("m.room.message", CAROL, {}))
    # Redactions pass like any message; the redact level is not an auth rule.
    allowed(room, room.ev("m.room.redaction", CAROL, {}, redacts="$x"))
    room.set_pl({"users": {ALICE: 100}, "events_default": 10})
    denied(room, room.ev("m.room.message", CAROL, {}), "power level 10")


def test_third_party_invite_event_needs_invite_level():
    room = Room(pl={"users": {ALICE: 100}, "invite": 10})
    room.join(BOB)
    denied(room, room.ev("m.room.third_party_invite", BOB, {}, "tok"), "invite")
    allowed(room, room.ev("m.room.third_party_invite", ALICE, {}, "tok"))


def test_rule_8_state_key_at():
    room = Room(pl={"users": {ALICE: 100}, "state_default": 0})
    room.join(BOB)
    allowed(room, room.ev("m.custom.state", BOB, {}, BOB))
    denied(room, room.ev("m.custom.state", BOB, {}, CAROL), "@")
    denied(room, room.ev("m.custom.state", ALICE, {}, BOB), "@")
    allowed(room, room.ev("m.custom.state", BOB, {}, "not-a-user"))


# --- rule 9: power levels ------------------------------------------------------------------


def pl_room():
    room = Room(
        pl={"users": {ALICE: 100, BOB: 50, CAROL: 50}, "events": {"m.room.power_levels": 50}}
    )
    room.join(BOB)
    room.join(CAROL)
    return room


def pl(sender, content, room):
    return room.ev("m.room.power_levels", sender, content, "")


@pytest.mark.parametrize(
    "content",
    [
        {"ban": "50"},
        {"users_default": True},
        {"kick": 50.0},
        {"invite": None},
        {"events": {"m.room.name": "100"}},
        {"events": []},
        {"notifications": {"room": "50"}},
        {"users": {ALICE: "100"}},
        {"users": {"alice": 100}},
        {"users": []},
    ],
)
def test_power_levels_must_be_integers(content):
    room = pl_room()
    denied(room, pl(ALICE, {"users": {ALICE: 100}, **content}, room))
    # Even the first PL event is checked.
    del room.state[("m.room.power_levels", "")]
    denied(room, pl(ALICE, {"users": {ALICE: 100}, **content}, room))


def test_first_power_levels_event_allowed():
    room = Room()
    del room.state[("m.room.power_levels", "")]
    allowed(room, pl(ALICE, {"users": {ALICE: 100, BOB: 100}, "ban": 1000}, room))


def test_power_level_changes():
    room = pl_room()
    base = {"users": {ALICE: 100, BOB: 50, CAROL: 50}, "events": {"m.room.power_levels": 50}}
    allowed(room, pl(BOB, {**base, "users": {ALICE: 100, BOB: 50, CAROL: 50, DAVE: 50}}, room))
    denied(room, pl(BOB, {**base, "users": {ALICE: 100, BOB: 50, CAROL: 50, DAVE: 51}}, room))
    # Cannot demote (or remove) a peer at the same level, or a superior.
    denied(room, pl(BOB, {**base, "users": {ALICE: 100, BOB: 50, CAROL: 0}}, room), "not below")
    denied(room, pl(BOB, {**base, "users": {ALICE: 100, BOB: 50}}, room), "not below")
    denied(room, pl(BOB, {**base, "users": {ALICE: 0, BOB: 50, CAROL: 50}}, room), "not below")
    # Can demote yourself, cannot promote yourself.
    allowed(room, pl(BOB, {**base, "users": {ALICE: 100, BOB: 10, CAROL: 50}}, room))
    denied(room, pl(BOB, {**base, "users": {ALICE: 100, BOB: 60, CAROL: 50}}, room))
    # The admin can do all of that.
    allowed(room, pl(ALICE, {**base, "users": {ALICE: 100, BOB: 0, CAROL: 99}}, room))
    # Named levels: new or old value above the sender's level.
    allowed(room, pl(BOB, {**base, "ban": 50}, room))
    denied(room, pl(BOB, {**base, "ban": 51}, room), "above your own")
    room.set_pl({**base, "kick": 75})
    denied(room, pl(BOB, {**base, "kick": 0}, room), "from a level above")
    denied(room, pl(BOB, base, room), "from a level above")  # removing it is a change too
    allowed(room, pl(BOB, {**base, "kick": 75, "redact": 10}, room))


def test_power_level_events_and_notifications_maps():
    room = pl_room()
    base = {"users": {ALICE: 100, BOB: 50, CAROL: 50}, "events": {"m.room.power_levels": 50}}
    allowed(room, pl(BOB, {**base, "events": {"m.room.power_levels": 50, "m.x": 50}}, room))
    denied(room, pl(BOB, {**base, "events": {"m.room.power_levels": 50, "m.x": 51}}, room))
    denied(room, pl(BOB, {**base, "notifications": {"room": 60}}, room))
    room.set_pl(
        {**base, "events": {"m.room.power_levels": 50, "m.x": 80}, "notifications": {"room": 80}}
    )
    denied(room, pl(BOB, {**base, "notifications": {"room": 80}}, room))  # removes m.x
    changed = {
        **base,
        "events": {"m.room.power_levels": 50, "m.x": 80},
        "notifications": {"room": 0},
    }
    denied(room, pl(BOB, changed, room))
    same = {**base, "events": {"m.room.power_levels": 50, "m.x": 80}, "notifications": {"room": 80}}
    allowed(room, pl(BOB, same, room))


# --- helpers -------------------------------------------------------------------------------


def test_named_level_defaults():
    room = Room(pl={"users": {ALICE: 100}})
    expected = {
        "invite": 0,
        "kick": 50,
        "ban": 50,
        "redact": 50,
        "state_default": 50,
        "events_default": 0,
        "users_default": 0,
    }
    for name, level in expected.items():
        assert named_power_level(room.state, name) == level
    del room.state[("m.room.power_levels", "")]
    for name, level in expected.items():
        assert named_power_level(room.state, name) == level
    assert required_power_level(room.state, "m.room.topic", True) == 50
    assert required_power_level(room.state, "m.room.message", False) == 0


def test_user_power_level():
    room = Room(pl={"users": {ALICE: 100, BOB: 20}, "users_default": 5})
    assert user_power_level(room.state, ALICE) == 100
    assert user_power_level(room.state, BOB) == 20
    assert user_power_level(room.state, CAROL) == 5
    assert membership_of(room.state, ALICE) == "join"
    assert membership_of(room.state, BOB) is None


# --- auth event selection and rule 2 ---------------------------------------------------------


def test_auth_types():
    assert auth_types_for_event("10", "m.room.create", ALICE, "", {}) == []
    base = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", BOB)]
    assert auth_types_for_event("10", "m.room.message", BOB, None, {}) == base
    assert auth_types_for_event("10", "m.room.member", BOB, BOB, {"membership": "join"}) == [
        *base,
        ("m.room.join_rules", ""),
    ]
    assert auth_types_for_event("11", "m.room.member", BOB, CAROL, {"membership": "ban"}) == [
        *base,
        ("m.room.member", CAROL),
    ]
    tpi = {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}}
    assert auth_types_for_event("10", "m.room.member", BOB, CAROL, tpi) == [
        *base,
        ("m.room.member", CAROL),
        ("m.room.join_rules", ""),
        ("m.room.third_party_invite", "tok"),
    ]
    restricted = {"membership": "join", "join_authorised_via_users_server": ALICE}
    assert auth_types_for_event("10", "m.room.member", BOB, BOB, restricted) == [
        *base,
        ("m.room.join_rules", ""),
        ("m.room.member", ALICE),
    ]


def test_check_auth_events():
    room = Room()
    auth = [
        room.state[("m.room.create", "")],
        room.state[("m.room.power_levels", "")],
        room.state[("m.room.member", ALICE)],
    ]
    message = room.ev("m.room.message", ALICE, {})
    check_auth_events("10", message, auth)
    check_event_auth("10", message, auth)
    check_auth_events("10", message, auth[:1])  # missing entries are fine
    with pytest.raises(AuthError, match="Duplicate"):
        check_auth_events("10", message, [*auth, room.ev("m.room.power_levels", ALICE, {}, "")])
    with pytest.raises(AuthError, match="Unexpected"):
        check_auth_events("10", message, [*auth, room.state[("m.room.join_rules", "")]])
    with pytest.raises(AuthError, match="Unexpected"):
        check_auth_events("10", message, [*auth, room.ev("m.room.message", ALICE, {})])
    with pytest.raises(AuthError, match="rejected"):
        check_auth_events(
            "10",
            message,
            [auth[0], make_event("m.room.power_levels", ALICE, {}, "", rejected=True)],
        )
    with pytest.raises(AuthError, match="create"):
        check_auth_events("10", message, auth[1:])
    with pytest.raises(AuthError, match="another room"):
        check_auth_events(
            "10", message, [*auth[:2], member(ALICE, "join", room_id="!other:a.test")]
        )
    # Create events are judged by rule 1 alone.
    check_auth_events("10", room.state[("m.room.create", "")], [])
    # Check (a) runs the rules against the auth events only.
    with pytest.raises(AuthError, match="not joined"):
        check_event_auth("10", message, auth[:2])
    assert message.room_id == ROOM


# --- join rules a room version does not know ------------------------------------


def _without(**flags):
    import attrs

    from homeserver.core.room_versions import V10

    return attrs.evolve(V10, **flags)


def test_knock_refused_where_the_version_has_no_knocking():
    # Before v7 there was no knocking: "knock" admits neither knocks nor joins.
    room = Room(join_rule="knock")
    version = _without(knock_join_rule=False, knock_restricted_join_rule=False)
    with pytest.raises(AuthError, match="knock"):
        check_auth_rules(version, room.member(BOB, "knock"), room.state)
    room.add(room.member(ALICE, "invite", BOB))
    with pytest.raises(AuthError, match="join rule"):
        check_auth_rules(version, room.member(BOB, "join"), room.state)
    allowed(room, room.member(BOB, "join"))  # the same join in a version that knows knock


@pytest.mark.parametrize(
    ("rule", "flag"), [("restricted", "restricted_join_rule"), ("knock_restricted", "knock_restricted_join_rule")],
)
def test_restricted_rules_admit_nobody_where_unknown(rule, flag):
    room = Room(join_rule=rule, pl={"users": {ALICE: 100}, "invite": 50})
    room.add(room.member(ALICE, "invite", BOB))
    with pytest.raises(AuthError, match="join rule"):
        check_auth_rules(_without(**{flag: False}), room.member(BOB, "join"), room.state)
    allowed(room, room.member(BOB, "join"))
