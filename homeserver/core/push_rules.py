"""Push rules: the server-default rules, a user's edits to them, and evaluation.

Pure: plain JSON-shaped inputs and outputs. Spec:
https://spec.matrix.org/v1.19/client-server-api/#push-rules

A user's rules are kept as one JSON object (`UserRules`): the rules they added, per
kind, in priority order, and what they changed of the server-default rules
(enabled, actions). `ruleset` turns that into the `global` ruleset clients read;
`evaluate` finds the actions for one event.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from homeserver.core.canonical_json import MAX_SAFE_INTEGER
from homeserver.core.errors import MatrixError

KINDS = ("override", "content", "room", "sender", "underride")
MASTER = ".m.rule.master"
LEGACY_MENTION_RULES = frozenset(
    {".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"},
)
# Historical actions clients and servers must strip (spec: "Historical Actions").
_HISTORICAL_ACTIONS = ("dont_notify", "coalesce")

UserRules = dict[str, Any]  # {"override": [rule...], ..., "defaults": {rule_id: {...}}}

_SOUND = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> dict[str, str]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def _default_rules(user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The server-default rules of spec v1.19 ("Predefined Rules"), in priority order,
    plus the three legacy body-mention rules the spec dropped in v1.17: clients that do
    not send `m.mentions` (matrix-nio, bots, older apps) still highlight a user's name.
    Like Synapse, we skip those three for events that carry `m.mentions`."""
    def rule(rule_id: str, conditions: list[dict[str, Any]], actions: list[Any], enabled: bool = True):
        return {"rule_id": rule_id, "default": True, "enabled": enabled,
                "conditions": conditions, "actions": actions}

    return {
        "override": [
            rule(MASTER, [], [], enabled=False),
            rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
            rule(".m.rule.invite_for_me", [
                _match("type", "m.room.member"), _match("content.membership", "invite"),
                _match("state_key", user_id),
            ], ["notify", _SOUND]),
            rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
            rule(".m.rule.is_user_mention", [{
                "kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
                "value": user_id,
            }], ["notify", _SOUND, _HIGHLIGHT]),
            rule(".m.rule.contains_display_name", [{"kind": "contains_display_name"}],
                 ["notify", _SOUND, _HIGHLIGHT]),
            rule(".m.rule.is_room_mention", [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ], ["notify", _HIGHLIGHT]),
            rule(".m.rule.roomnotif", [
                _match("content.body", "@room"), {"kind": "sender_notification_permission", "key": "room"},
            ], ["notify", _HIGHLIGHT]),
            rule(".m.rule.tombstone", [
                _match("type", "m.room.tombstone"), _match("state_key", ""),
            ], ["notify", _HIGHLIGHT]),
            rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
            rule(".m.rule.room.server_acl", [
                _match("type", "m.room.server_acl"), _match("state_key", ""),
            ], []),
            rule(".m.rule.suppress_edits", [{
                "kind": "event_property_is", "key": "content.m\\.relates_to.rel_type",
                "value": "m.replace",
            }], []),
        ],
        "content": [{
            "rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True,
            "pattern": localpart(user_id), "actions": ["notify", _SOUND, _HIGHLIGHT],
        }],
        "room": [],
        "sender": [],
        "underride": [
            rule(".m.rule.call", [_match("type", "m.call.invite")],
                 ["notify", {"set_tweak": "sound", "value": "ring"}]),
            rule(".m.rule.encrypted_room_one_to_one", [
                {"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted"),
            ], ["notify", _SOUND]),
            rule(".m.rule.room_one_to_one", [
                {"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message"),
            ], ["notify", _SOUND]),
            rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
            rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
        ],
    }


def ruleset(user_id: str, user: UserRules | None) -> dict[str, list[dict[str, Any]]]:
    """The `global` ruleset as GET /pushrules/ shows it: per kind, the master rule, then
    the user's rules, then the server defaults (spec: user-defined rules outrank
    server-default ones, except .m.rule.master)."""
    user = user or {}
    changed = user.get("defaults", {})
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, defaults in _default_rules(user_id).items():
        applied = [{**r, **changed.get(r["rule_id"], {})} for r in defaults]
        master = [r for r in applied if r["rule_id"] == MASTER]
        rest = [r for r in applied if r["rule_id"] != MASTER]
        custom = [_shown(kind, r) for r in user.get(kind, [])]
        out[kind] = master + custom + rest
    return out


def _shown(kind: str, rule: dict[str, Any]) -> dict[str, Any]:
    shown = {"rule_id": rule["rule_id"], "default": False, "enabled": rule.get("enabled", True),
             "actions": rule["actions"]}
    if kind in ("override", "underride"):
        shown["conditions"] = rule.get("conditions", [])
    elif kind == "content":
        shown["pattern"] = rule["pattern"]
    return shown


# -- edits (PUT / DELETE /pushrules/global/{kind}/{ruleId}[/enabled|/actions]) --------------


def find_rule(user_id: str, user: UserRules | None, kind: str, rule_id: str) -> dict[str, Any]:
    """The rule as clients see it; 404 M_NOT_FOUND when there is none."""
    _check_kind(kind)
    for rule in ruleset(user_id, user)[kind]:
        if rule["rule_id"] == rule_id:
            return rule
    raise MatrixError(404, "M_NOT_FOUND", "Unknown push rule")


def put_rule(
    user: UserRules | None, kind: str, rule_id: str, body: Any,
    before: str | None = None, after: str | None = None,
) -> UserRules:
    """Add or replace a user-defined rule (spec PUT /pushrules/{scope}/{kind}/{ruleId})."""
    _check_kind(kind)
    if rule_id.startswith("."):
        raise MatrixError(400, "M_INVALID_PARAM", "Rule ids starting with '.' are reserved for server-default rules")
    if not rule_id or "/" in rule_id or "\\" in rule_id:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid rule id")
    if not isinstance(body, dict):
        raise MatrixError(400, "M_BAD_JSON", "Expected a JSON object")
    rule: dict[str, Any] = {"rule_id": rule_id, "actions": check_actions(body.get("actions"))}
    if kind in ("override", "underride"):
        conditions = body.get("conditions", [])
        if not isinstance(conditions, list) or not all(isinstance(c, dict) and isinstance(c.get("kind"), str) for c in conditions):
            raise MatrixError(400, "M_INVALID_PARAM", "conditions must be a list of objects with a kind")
        rule["conditions"] = conditions
    elif kind == "content":
        if not isinstance(body.get("pattern"), str):
            raise MatrixError(400, "M_INVALID_PARAM", "A content rule needs a string pattern")
        rule["pattern"] = body["pattern"]
    elif kind == "room" and not rule_id.startswith("!"):
        raise MatrixError(400, "M_INVALID_PARAM", "A room rule's id is a room id")
    elif kind == "sender" and not rule_id.startswith("@"):
        raise MatrixError(400, "M_INVALID_PARAM", "A sender rule's id is a user id")

    new = _copy(user)
    rules: list[dict[str, Any]] = new[kind]
    old = next((r for r in rules if r["rule_id"] == rule_id), None)
    if old is not None:
        rule["enabled"] = old.get("enabled", True)
    anchor = before if before is not None else after
    if anchor is not None:
        if anchor.startswith("."):
            raise MatrixError(400, "M_INVALID_PARAM", "before/after may not name a server-default rule")
        if anchor == rule_id or not any(r["rule_id"] == anchor for r in rules):
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown rule {anchor!r}")
        rules[:] = [r for r in rules if r["rule_id"] != rule_id]
        at = next(i for i, r in enumerate(rules) if r["rule_id"] == anchor)
        rules.insert(at if before is not None else at + 1, rule)
    elif old is not None:
        rules[rules.index(old)] = rule
    else:
        rules.insert(0, rule)  # newest first: most specific wins (as Synapse does)
    return new


def delete_rule(user: UserRules | None, kind: str, rule_id: str) -> UserRules:
    _check_kind(kind)
    if rule_id.startswith("."):
        raise MatrixError(400, "M_INVALID_PARAM", "Server-default rules cannot be deleted")
    new = _copy(user)
    kept = [r for r in new[kind] if r["rule_id"] != rule_id]
    if len(kept) == len(new[kind]):
        raise MatrixError(404, "M_NOT_FOUND", "Unknown push rule")
    new[kind] = kept
    return new


def set_rule_attribute(
    user_id: str, user: UserRules | None, kind: str, rule_id: str, attr: str, value: Any,
) -> UserRules:
    """PUT .../enabled ({"enabled": bool}) or .../actions ({"actions": [...]})."""
    find_rule(user_id, user, kind, rule_id)  # 404 for an unknown rule
    if attr == "enabled":
        if not isinstance(value, bool):
            raise MatrixError(400, "M_INVALID_PARAM", "enabled must be a boolean")
    elif attr == "actions":
        value = check_actions(value)
    else:
        raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown push rule attribute {attr!r}")
    new = _copy(user)
    if rule_id.startswith("."):
        new["defaults"].setdefault(rule_id, {})[attr] = value
    else:
        for rule in new[kind]:
            if rule["rule_id"] == rule_id:
                rule[attr] = value
    return new


def check_actions(actions: Any) -> list[Any]:
    """Validate a rule's actions; historical ones are dropped."""
    if not isinstance(actions, list):
        raise MatrixError(400, "M_INVALID_PARAM", "actions must be a list")
    out: list[Any] = []
    for action in actions:
        if action in _HISTORICAL_ACTIONS:
            continue
        if action == "notify" or (isinstance(action, dict) and isinstance(action.get("set_tweak"), str)):
            out.append(action)
            continue
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown action {action!r}")
    return out


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown rule kind {kind!r}")


def _copy(user: UserRules | None) -> UserRules:
    user = user or {}
    new: UserRules = {k: [dict(r) for r in user.get(k, [])] for k in KINDS}
    new["defaults"] = {k: dict(v) for k, v in user.get("defaults", {}).items()}
    return new


# -- evaluation ----------------------------------------------------------------------------


@attrs.frozen
class PushContext:
    """What conditions need beyond the event, for one recipient."""

    user_id: str
    display_name: str | None
    member_count: int
    sender_power_level: int
    notification_levels: Mapping[str, int]  # power_levels.notifications, defaults applied


def evaluate(rules: Mapping[str, Sequence[Mapping[str, Any]]], event: Mapping[str, Any], ctx: PushContext) -> list[Any] | None:
    """The actions of the first enabled rule that matches, or None when none does.
    Callers skip events the user sent themselves (spec: never notify for those)."""
    content = event.get("content")
    intentional = isinstance(content, dict) and "m.mentions" in content
    for kind in KINDS:
        for rule in rules.get(kind, ()):
            if not rule.get("enabled", True):
                continue
            if intentional and rule.get("rule_id") in LEGACY_MENTION_RULES:
                continue
            if _rule_matches(kind, rule, event, ctx):
                return [a for a in rule.get("actions", []) if a not in _HISTORICAL_ACTIONS]
    return None


def notifies(actions: Sequence[Any] | None) -> bool:
    return bool(actions) and "notify" in actions  # type: ignore[operator]


def highlights(actions: Sequence[Any] | None) -> bool:
    for action in actions or ():
        if isinstance(action, dict) and action.get("set_tweak") == "highlight":
            return action.get("value", True) is True
    return False


def _rule_matches(kind: str, rule: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    rule_id = rule.get("rule_id")
    if kind == "room":
        return event.get("room_id") == rule_id
    if kind == "sender":
        return event.get("sender") == rule_id
    if kind == "content":
        pattern = rule.get("pattern")
        return isinstance(pattern, str) and _condition_matches(
            {"kind": "event_match", "key": "content.body", "pattern": pattern}, event, ctx,
        )
    return all(_condition_matches(c, event, ctx) for c in rule.get("conditions", ()))


def _condition_matches(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    check = _CONDITIONS.get(cond.get("kind"))  # type: ignore[arg-type]
    return check is not None and check(cond, event, ctx)  # unknown conditions never match


def _event_match(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    key, pattern = cond.get("key"), cond.get("pattern")
    if not isinstance(key, str) or not isinstance(pattern, str):
        return False
    value = property_at(event, key)
    if not isinstance(value, str):
        return False
    if key == "content.body":
        return _glob(pattern, words=True).search(value) is not None
    return _glob(pattern, words=False).fullmatch(value) is not None


def _is_scalar(value: Any) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    return type(value) is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def _same(a: Any, b: Any) -> bool:
    return _is_scalar(a) and type(a) is type(b) and a == b  # no casts: 1 is not true


def _property_is(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    key = cond.get("key")
    return isinstance(key, str) and "value" in cond and _same(property_at(event, key, _ABSENT), cond["value"])


def _property_contains(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    key = cond.get("key")
    values = property_at(event, key) if isinstance(key, str) else None
    return isinstance(values, list) and "value" in cond and any(_same(v, cond["value"]) for v in values)


def _contains_display_name(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    body = property_at(event, "content.body")
    name = ctx.display_name
    if not isinstance(body, str) or not name:
        return False
    return _word(name).search(body) is not None


@functools.lru_cache(maxsize=4096)
def _word(text: str) -> re.Pattern[str]:
    """`text` as a whole word, case-insensitively (compiled once per display name)."""
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(text)}(?![A-Za-z0-9_])", re.IGNORECASE)


_COUNT = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)\Z")


def _member_count(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    m = _COUNT.match(str(cond.get("is", ""))) if isinstance(cond.get("is"), str) else None
    if m is None:
        return False
    op, n = m.group(1) or "==", int(m.group(2))
    c = ctx.member_count
    return {"==": c == n, "<": c < n, ">": c > n, "<=": c <= n, ">=": c >= n}[op]


def _sender_permission(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    key = cond.get("key")
    if not isinstance(key, str):
        return False
    return ctx.sender_power_level >= ctx.notification_levels.get(key, 50)


_CONDITIONS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], PushContext], bool]] = {
    "event_match": _event_match,
    "event_property_is": _property_is,
    "event_property_contains": _property_contains,
    "contains_display_name": _contains_display_name,
    "room_member_count": _member_count,
    "sender_notification_permission": _sender_permission,
}

_ABSENT = object()


def property_at(event: Mapping[str, Any], path: str, missing: Any = None) -> Any:
    """The value at a dot-separated property path (spec appendix "Dot-separated property
    paths": `\\.` is a literal dot, `\\\\` a literal backslash)."""
    value: Any = event
    for part in _split_path(path):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value


@functools.lru_cache(maxsize=1024)
def _split_path(path: str) -> tuple[str, ...]:
    parts, cur, i = [], [], 0
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            cur.append(path[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return tuple(parts)


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, words: bool) -> re.Pattern[str]:
    """`*` is any run of characters, `?` exactly one (spec appendix "Glob-style matching");
    case-insensitive. For content.body the match must start and end at word boundaries."""
    body = "".join(".*?" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    if words:
        body = rf"(?<![A-Za-z0-9_]){body}(?![A-Za-z0-9_])"
    return re.compile(body, re.IGNORECASE | re.DOTALL)
