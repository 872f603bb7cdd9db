"""Push rules: the spec's examples for each condition, the default ruleset's verdicts on
everyday events, and the edits clients make (spec: client-server API "Push Rules")."""

import pytest

from homeserver.core.errors import MatrixError
from homeserver.core.push_rules import (
    PushContext,
    delete_rule,
    evaluate,
    find_rule,
    highlights,
    notifies,
    property_at,
    put_rule,
    ruleset,
    set_rule_attribute,
)

ME = "@me:hs.test"
CTX = PushContext(ME, "Me Myself", member_count=5, sender_power_level=0, notification_levels={"room": 50})


def msg(body="hello", **content):
    return {"type": "m.room.message", "room_id": "!r:hs.test", "sender": "@you:hs.test",
            "content": {"msgtype": "m.text", "body": body, **content}}


def actions(event, user=None, ctx=CTX):
    return evaluate(ruleset(ME, user), event, ctx)


# -- conditions, with the spec's own examples ----------------------------------------------


@pytest.mark.parametrize(("topic", "hit"), [
    ("Lunch plans", True), ("LUNCH", True), (" lunch", False), ("lunc", False), (None, False),
])
def test_event_match_whole_value(topic, hit):
    rule = {"conditions": [{"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}], "actions": ["notify"]}
    user = put_rule(None, "override", "lunch", rule)
    event = {"type": "m.room.topic", "state_key": "", "content": {"topic": topic}}
    assert notifies(actions(event, user)) is hit


@pytest.mark.parametrize(("body", "hit"), [
    ("An example event.", True), ("exple", True), ("An exciting triple-whammy", True),
    ("examples", False), ("counterexample", False),
])
def test_content_body_matches_at_word_boundaries(body, hit):
    user = put_rule(None, "content", "ex", {"pattern": "ex*ple", "actions": ["notify", {"set_tweak": "highlight"}]})
    assert highlights(actions(msg(body), user)) is hit


def test_property_is_does_not_cast():
    rule = {"conditions": [{"kind": "event_property_is", "key": "content.m\\.federate", "value": True}],
            "actions": ["notify", {"set_tweak": "highlight"}]}
    user = put_rule(None, "override", "fed", rule)
    create = {"type": "m.room.create", "state_key": "", "content": {"m.federate": True}}
    assert highlights(actions(create, user))
    for value in ("true", 1):
        assert not highlights(actions({**create, "content": {"m.federate": value}}, user))


def test_property_contains_exact_values_only():
    rule = {"conditions": [{"kind": "event_property_contains", "key": "content.alt_aliases",
                            "value": "#myroom:example.com"}], "actions": ["notify", {"set_tweak": "highlight"}]}
    user = put_rule(None, "override", "alias", rule)
    event = {"type": "m.room.canonical_alias", "state_key": "",
             "content": {"alt_aliases": ["#somewhere:example.org", "#myroom:example.com"]}}
    assert highlights(actions(event, user))
    event["content"]["alt_aliases"] = [":example.com"]
    assert not highlights(actions(event, user))


def test_dot_separated_paths_escape_dots_and_backslashes():
    event = {"content": {"m.relates_to": {"rel_type": "x"}, "m\\foo": 1, "a": {"b": 2}}}
    assert property_at(event, "content.m\\.relates_to.rel_type") == "x"
    assert property_at(event, "content.m\\\\foo") == 1
    assert property_at(event, "content.a.b") == 2
    assert property_at(event, "content.m.relates_to") is None


def test_unknown_condition_never_matches():
    user = put_rule(None, "override", "odd", {"conditions": [{"kind": "org.example.future"}], "actions": []})
    assert notifies(actions(msg(), user))  # fell through to .m.rule.message


# -- the default rules -----------------------------------------------------------------------


def test_default_verdicts():
    assert actions(msg()) == ["notify"]                                           # .m.rule.message
    assert not notifies(actions(msg(msgtype="m.notice")))                         # suppress_notices
    assert actions(msg(), ctx=PushContext(ME, None, 2, 0, {})) == [
        "notify", {"set_tweak": "sound", "value": "default"}]                    # room_one_to_one
    mention = msg(**{"m.mentions": {"user_ids": [ME]}})
    assert highlights(actions(mention))                                           # is_user_mention
    room_mention = msg(**{"m.mentions": {"room": True}})
    assert not highlights(actions(room_mention))                                  # sender below 50
    assert highlights(actions(room_mention, ctx=PushContext(ME, None, 5, 50, {"room": 50})))
    invite = {"type": "m.room.member", "state_key": ME, "content": {"membership": "invite"}}
    assert notifies(actions(invite))                                              # invite_for_me
    assert not notifies(actions({**invite, "state_key": "@other:hs.test"}))       # member_event
    assert not notifies(actions({"type": "m.reaction", "content": {}}))
    edit = msg(**{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert not notifies(actions(edit))                                            # suppress_edits
    assert actions({"type": "m.room.encrypted", "content": {}}) == ["notify"]
    assert actions({"type": "org.example.custom", "content": {}}) is None


def test_legacy_display_name_condition():
    user = put_rule(None, "override", "name", {"conditions": [{"kind": "contains_display_name"}],
                                                "actions": ["notify", {"set_tweak": "highlight"}]})
    assert highlights(actions(msg("hey me myself, lunch?"), user))
    assert not highlights(actions(msg("hey memyselfish"), user))


def test_member_count_operators():
    for op, count, hit in [("2", 2, True), ("==2", 3, False), ("<3", 2, True), (">=10", 10, True), ("<=1", 2, False)]:
        user = put_rule(None, "override", "n", {"conditions": [{"kind": "room_member_count", "is": op}],
                                                 "actions": ["notify", {"set_tweak": "highlight"}]})
        assert highlights(actions(msg(), user, PushContext(ME, None, count, 0, {}))) is hit, (op, count)


# -- edits -------------------------------------------------------------------------------------


def test_master_rule_silences_everything_and_stays_first():
    user = set_rule_attribute(ME, None, "override", ".m.rule.master", "enabled", True)
    user = put_rule(user, "override", "mine", {"conditions": [], "actions": ["notify"]})
    assert [r["rule_id"] for r in ruleset(ME, user)["override"][:2]] == [".m.rule.master", "mine"]
    assert actions(msg(), user) == []


def test_room_and_sender_rules():
    user = put_rule(None, "room", "!r:hs.test", {"actions": []})
    assert not notifies(actions(msg(), user))
    user = delete_rule(user, "room", "!r:hs.test")
    user = put_rule(user, "sender", "@you:hs.test", {"actions": ["notify", {"set_tweak": "highlight"}]})
    assert highlights(actions(msg(), user))


def test_before_and_after_order_user_rules():
    user = put_rule(None, "content", "a", {"pattern": "a", "actions": []})
    user = put_rule(user, "content", "b", {"pattern": "b", "actions": []})  # newest first
    user = put_rule(user, "content", "c", {"pattern": "c", "actions": []}, after="a")
    user = put_rule(user, "content", "d", {"pattern": "d", "actions": []}, before="b")
    assert [r["rule_id"] for r in ruleset(ME, user)["content"] if not r["default"]] == ["d", "b", "a", "c"]


def test_disabled_rule_is_skipped_and_replacing_keeps_enabled():
    user = put_rule(None, "sender", "@you:hs.test", {"actions": []})
    user = set_rule_attribute(ME, user, "sender", "@you:hs.test", "enabled", False)
    assert notifies(actions(msg(), user))
    user = put_rule(user, "sender", "@you:hs.test", {"actions": ["notify"]})
    assert find_rule(ME, user, "sender", "@you:hs.test")["enabled"] is False


def test_default_rule_actions_can_change_but_not_the_rule():
    user = set_rule_attribute(ME, None, "underride", ".m.rule.message", "actions", [])
    assert actions(msg(), user) == []
    assert find_rule(ME, user, "underride", ".m.rule.message")["default"] is True
    with pytest.raises(MatrixError) as e:
        delete_rule(user, "underride", ".m.rule.message")
    assert e.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize(("kind", "rule_id", "body", "errcode"), [
    ("override", ".mine", {"actions": []}, "M_INVALID_PARAM"),
    ("nonsense", "x", {"actions": []}, "M_INVALID_PARAM"),
    ("override", "x", {"actions": ["explode"]}, "M_INVALID_PARAM"),
    ("override", "x", {"actions": "notify"}, "M_INVALID_PARAM"),
    ("content", "x", {"actions": []}, "M_INVALID_PARAM"),
    ("room", "not-a-room", {"actions": []}, "M_INVALID_PARAM"),
    ("override", "x", {"actions": [], "conditions": [1]}, "M_INVALID_PARAM"),
    ("override", "x", [], "M_BAD_JSON"),
])
def test_bad_rules_refused(kind, rule_id, body, errcode):
    with pytest.raises(MatrixError) as e:
        put_rule(None, kind, rule_id, body)
    assert (e.value.status, e.value.errcode) == (400, errcode)


def test_unknown_rules_are_404():
    for call in (lambda: find_rule(ME, None, "override", "nope"),
                 lambda: delete_rule(None, "override", "nope"),
                 lambda: put_rule(None, "override", "x", {"actions": []}, before="nope"),
                 lambda: set_rule_attribute(ME, None, "room", "!x:hs.test", "enabled", True)):
        with pytest.raises(MatrixError) as e:
            call()
        assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")


def test_historical_actions_are_stripped():
    user = put_rule(None, "override", "old", {"conditions": [], "actions": ["dont_notify"]})
    assert find_rule(ME, user, "override", "old")["actions"] == []


def test_legacy_mentions_in_the_body_unless_the_event_uses_m_mentions():
    assert highlights(actions(msg("is Me Myself around?")))      # .m.rule.contains_display_name
    assert highlights(actions(msg("ping me please")))            # .m.rule.contains_user_name
    assert not highlights(actions(msg("@room lunch")))           # sender below the room level
    assert highlights(actions(msg("@room lunch"), ctx=PushContext(ME, None, 5, 50, {"room": 50})))
    assert not highlights(actions(msg("ping me please", **{"m.mentions": {}})))
    assert [r["rule_id"] for r in ruleset(ME, None)["content"]] == [".m.rule.contains_user_name"]
