"""The pure parts of sync filters: `*` globs, event_fields paths, parsing errors."""

from __future__ import annotations

import pytest

from homeserver.core.errors import MatrixError
from homeserver.services.filtering import EventFilter, SyncFilter, glob_match, pick_fields


@pytest.mark.parametrize(("value", "patterns", "expected"), [
    ("m.room.message", ["m.room.message"], True),
    ("m.room.message", ["m.room.*"], True),
    ("m.room.message", ["m.*.message"], True),
    ("m.room.message", ["*"], True),
    ("m.room.message", ["m.room"], False),
    ("m.room.message", ["m.room.messag?"], False),  # only * is a wildcard
    ("m.room.[x]", ["m.room.[x]"], True),
    ("m.reaction", ["m.room.*", "m.reaction"], True),
])
def test_glob_match(value: str, patterns: list[str], expected: bool) -> None:
    assert glob_match(value, patterns) is expected


def test_not_lists_win_over_inclusive_ones() -> None:
    f = EventFilter.parse({"types": ["m.room.*"], "not_types": ["m.room.member"], "not_senders": ["@eve:x"]})
    assert f.allows("m.room.message", "@bob:x", None, {})
    assert not f.allows("m.room.member", "@bob:x", None, {})
    assert not f.allows("m.room.message", "@eve:x", None, {})
    assert not f.allows("m.reaction", "@bob:x", None, {})


def test_contains_url() -> None:
    with_url, without = EventFilter(contains_url=True), EventFilter(contains_url=False)
    assert with_url.allows("m.room.message", None, None, {"url": "mxc://a/b"})
    assert not with_url.allows("m.room.message", None, None, {"body": "hi"})
    assert without.allows("m.room.message", None, None, {"body": "hi"})


def test_pick_fields_with_escaped_dots() -> None:
    event = {"type": "m.room.message", "sender": "@a:x",
             "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread"}}}
    paths = SyncFilter.parse({"event_fields": ["type", "content.m\\.relates_to", "content.missing"]}).event_fields
    assert paths is not None
    assert pick_fields(event, paths) == {"type": "m.room.message", "content": {"m.relates_to": {"rel_type": "m.thread"}}}


@pytest.mark.parametrize("body", [
    {"event_fields": "type"}, {"event_format": "xml"}, {"room": {"timeline": {"contains_url": "yes"}}},
    {"room": {"state": {"lazy_load_members": 1}}}, {"presence": []}, {"account_data": {"types": "m.x"}},
    {"room": {"include_leave": "true"}}, {"room": {"timeline": {"rooms": "!a:x"}}},
])
def test_malformed_filters_are_bad_json(body: dict) -> None:
    with pytest.raises(MatrixError) as e:
        SyncFilter.parse(body)
    assert e.value.errcode == "M_BAD_JSON"
