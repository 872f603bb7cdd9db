"""Push rules, unread counts, GET /notifications and pushers (spec v1.19 "Push Notifications")."""

from sltools import eventually, joined, quote

SPEC_OVERRIDE = [
    ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
    ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.is_room_mention",
    ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
]
SPEC_UNDERRIDE = [
    ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
    ".m.rule.message", ".m.rule.encrypted",
]


def _ids(rules, kind):
    return [r["rule_id"] for r in rules[kind]]


async def test_default_push_rules(user):
    """SyTest: Can fetch a user's pushrules; the spec's predefined rules are there, in order."""
    rules = (await user.get("pushrules/")).expect(200)["global"]
    override = [r for r in _ids(rules, "override") if r in SPEC_OVERRIDE]
    assert override == SPEC_OVERRIDE
    underride = [r for r in _ids(rules, "underride") if r in SPEC_UNDERRIDE]
    assert underride == SPEC_UNDERRIDE
    assert _ids(rules, "override")[0] == ".m.rule.master"
    master = (await user.get("pushrules/global/override/.m.rule.master")).expect(200)
    assert master["enabled"] is False and master["default"] is True


async def test_add_toggle_and_delete_a_rule(user):
    """SyTest: Can add/enable/disable/delete a push rule."""
    path = "pushrules/global/override/lunch"
    body = {"conditions": [{"kind": "event_match", "key": "content.body", "pattern": "lunch"}],
            "actions": ["notify"]}
    (await user.put(path, body)).expect(200)
    got = (await user.get(path)).expect(200)
    assert got["actions"] == ["notify"] and got["enabled"] is True and got["default"] is False
    (await user.put(path + "/enabled", {"enabled": False})).expect(200)
    assert (await user.get(path + "/enabled")).expect(200) == {"enabled": False}
    (await user.put(path + "/actions", {"actions": []})).expect(200)
    assert (await user.get(path + "/actions")).expect(200) == {"actions": []}
    (await user.request("DELETE", path)).expect(200)
    (await user.get(path)).expect_error(404, "M_NOT_FOUND")


async def test_rules_before_and_after(user):
    """SyTest: Can add push rule before/after another rule."""
    base = "pushrules/global/override/"
    body = {"conditions": [], "actions": []}
    (await user.put(base + "b", body)).expect(200)
    (await user.put(base + "a", body, params={"before": "b"})).expect(200)
    (await user.put(base + "c", body, params={"after": "b"})).expect(200)
    rules = (await user.get("pushrules/")).expect(200)["global"]
    mine = [r for r in _ids(rules, "override") if r in ("a", "b", "c")]
    assert mine == ["a", "b", "c"]


async def test_bad_rules_are_refused(user):
    r = await user.put("pushrules/global/override/x", {"actions": "notify"})
    assert r.status == 400, r.text
    r = await user.put("pushrules/global/override/.m.rule.mine", {"actions": []})
    assert r.status == 400, r.text
    (await user.get("pushrules/global/override/nothere")).expect_error(404, "M_NOT_FOUND")


async def test_unread_notifications_counted_and_cleared_by_receipt(user, make_user):
    """SyTest: Notifications can be viewed with GET /notifications; unread counts in /sync
    go back to zero after a read receipt."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    since = (await bob.sync())["next_batch"]
    event_id = await user.send_message(room, "hello bob")

    def counts(s):
        r = joined(s, room)
        return r and r.get("unread_notifications", {}).get("notification_count") == 1

    await bob.sync_until(since, counts)

    async def listed():
        got = (await bob.get("notifications")).expect(200)["notifications"]
        return [n for n in got if n["event"]["event_id"] == event_id]

    (note,) = await eventually(listed, deadline=10)
    assert note["room_id"] == room and "notify" in note["actions"] and note["read"] is False

    s = await bob.sync()
    (await bob.send_receipt(room, event_id)).expect(200)

    def cleared(s):
        r = joined(s, room)
        return r and r.get("unread_notifications", {}).get("notification_count") == 0

    await bob.sync_until(s["next_batch"], cleared)


async def test_pushers_set_get_delete(user):
    """SyTest: Can set and get a pusher; kind null deletes it."""
    pusher = {
        "kind": "http", "app_id": "org.example.sytestlite", "pushkey": "a-push-key",
        "app_display_name": "sytest-lite", "device_display_name": "device", "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"},
    }
    (await user.post("pushers/set", pusher)).expect(200)
    got = (await user.get("pushers")).expect(200)["pushers"]
    assert [(p["app_id"], p["pushkey"], p["kind"]) for p in got] == [
        ("org.example.sytestlite", "a-push-key", "http"),
    ]
    assert got[0]["data"]["url"] == pusher["data"]["url"]
    (await user.post("pushers/set", {**pusher, "kind": None})).expect(200)
    assert (await user.get("pushers")).expect(200)["pushers"] == []


async def test_http_pusher_needs_a_url(user):
    r = await user.post("pushers/set", {
        "kind": "http", "app_id": "org.example.sytestlite", "pushkey": "k",
        "app_display_name": "x", "device_display_name": "y", "lang": "en", "data": {},
    })
    assert r.status == 400, r.text
    assert (await user.get("pushers")).expect(200)["pushers"] == []


async def test_room_push_rule_mutes_a_room(user, make_user):
    """A room rule with no actions: messages there no longer count."""
    bob = await make_user()
    room = await user.create_room(preset="public_chat")
    (await bob.join(room)).expect(200)
    (await bob.put(f"pushrules/global/room/{quote(room)}", {"actions": []})).expect(200)
    since = (await bob.sync())["next_batch"]
    await user.send_message(room, "muted")

    def seen(s):
        r = joined(s, room)
        return r and any(e.get("content", {}).get("body") == "muted" for e in r["timeline"]["events"])

    s, _ = await bob.sync_until(since, seen)
    assert joined(s, room)["unread_notifications"]["notification_count"] == 0
