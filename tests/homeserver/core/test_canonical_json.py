import pytest

from homeserver.core.canonical_json import encode_canonical_json, encode_json, parse_json
from homeserver.core.errors import MatrixError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, b"{}"),
        ({"one": 1, "two": "Two"}, b'{"one":1,"two":"Two"}'),
        ({"b": "2", "a": "1"}, b'{"a":"1","b":"2"}'),
        (
            {
                "auth": {
                    "success": True,
                    "mxid": "@john.doe:example.com",
                    "profile": {
                        "display_name": "John Doe",
                        "three_pids": [
                            {"medium": "email", "address": "john.doe@example.org"},
                            {"medium": "msisdn", "address": "123456789"},
                        ],
                    },
                }
            },
            b'{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
            b'"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
            b'{"address":"123456789","medium":"msisdn"}]},"success":true}}',
        ),
        ({"a": "日本語"}, '{"a":"日本語"}'.encode()),
        ({"本": 2, "日": 1}, '{"日":1,"本":2}'.encode()),
        ({"a": "\u65e5"}, '{"a":"日"}'.encode()),
        ({"a": None}, b'{"a":null}'),
        ({"\uffff": 2, "😀": 1}, '{"\uffff":2,"😀":1}'.encode()),
        ({"a": '\x1f\n"\\/\x7f\u2028'}, '{"a":"\\u001f\\n\\"\\\\/\x7f\u2028"}'.encode()),
    ],
)
def test_canonical_vectors(value, expected):
    assert encode_canonical_json(value) == expected


def test_spec_number_example_through_parser():
    value = parse_json(b'{"a": -0, "b": 1e10}')
    assert value == {"a": 0, "b": 10000000000}
    assert type(value["b"]) is int
    assert encode_canonical_json(value) == b'{"a":0,"b":10000000000}'


@pytest.mark.parametrize("bad", [1.5, float("nan"), {"a": [0.0]}, 2**53, -(2**53)])
def test_encode_rejects_floats_and_big_ints(bad):
    with pytest.raises(ValueError):
        encode_canonical_json(bad)


def test_encode_accepts_range_limits():
    assert (
        encode_canonical_json([2**53 - 1, -(2**53) + 1]) == b"[9007199254740991,-9007199254740991]"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.0", 2),
        ("-0.0", 0),
        ("1E2", 100),
        ("9007199254740991", 2**53 - 1),
        ("-9007199254740991", -(2**53) + 1),
        ('{"a": [1, "x", true, null]}', {"a": [1, "x", True, None]}),
        ('"\\ud83d\\ude00"', "😀"),
    ],
)
def test_parse_ok(text, expected):
    value = parse_json(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "text",
    [
        "1.5",
        "1.0000000000000001",
        "9007199254740992",
        "-9007199254740992",
        "1e16",
        "1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        '{"a": [NaN]}',
        "1" * 5000,
    ],
)
def test_parse_bad_json(text):
    with pytest.raises(MatrixError) as e:
        parse_json(text)
    assert (e.value.status, e.value.errcode) == (400, "M_BAD_JSON")


@pytest.mark.parametrize(
    "data", [b"", b"{", b"{'a': 1}", b"\xff\xfe{}", b'{"a": "\xc3"}', '"\\ud800"']
)
def test_parse_not_json(data):
    with pytest.raises(MatrixError) as e:
        parse_json(data)
    assert (e.value.status, e.value.errcode) == (400, "M_NOT_JSON")


def test_encode_json_is_compact_and_unescaped():
    assert encode_json({"b": 1, "a": "é"}) == '{"b":1,"a":"é"}'


def test_parse_with_floats_keeps_fractions_within_range():
    assert parse_json('{"order": 0.25, "n": 2.0}', allow_floats=True) == {"order": 0.25, "n": 2}
    for bad in ("[1e400]", "[NaN]", "[-9007199254740993.5]"):
        with pytest.raises(MatrixError) as e:
            parse_json(bad, allow_floats=True)
        assert e.value.errcode == "M_BAD_JSON"
