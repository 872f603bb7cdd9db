"""Canonical JSON (spec appendix) and the strict JSON parser for untrusted input.

Canonical JSON is what gets hashed and signed, so it must be byte-exact:
sorted keys (by code point, which is what Python compares), no whitespace,
raw UTF-8, integers only and within +/-(2**53 - 1).
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

import canonicaljson

from homeserver.core.errors import MatrixError

MAX_SAFE_INTEGER = 2**53 - 1

_compact_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _check_canonical(value: Any) -> None:
    """Reject what the stdlib would happily encode but canonical JSON forbids."""
    # An explicit stack: event content can nest deeply and recursion is slow.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise ValueError(f"canonical JSON object keys must be strings, got {k!r}")
                stack.append(v)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, float):
            raise ValueError("floats are not allowed in canonical JSON")
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise ValueError(f"integer {item} out of canonical JSON range")


def encode_canonical_json(value: Any, *, strict: bool = True) -> bytes:
    """The spec's canonical encoding; ValueError on floats, out-of-range ints or bad keys.

    ``strict=False`` is for rooms of versions 1-5, which predate strict canonical JSON
    (rooms/v6 canonical JSON) and may hold floats (rooms/v1 floaty power levels).
    """
    if strict:
        _check_canonical(value)  # canonicaljson would write floats; the spec forbids them
    return canonicaljson.encode_canonical_json(value)


def encode_json(value: Any) -> str:
    """Compact, non-canonical dump for responses (key order preserved)."""
    return _compact_encoder.encode(value)


def _bad_json(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def _parse_int(text: str) -> int:
    # Length check first: int() of a huge digit string is slow (and limited in 3.11).
    if len(text.lstrip("-")) > 16:
        raise _bad_json(f"Integer out of range: {text[:32]}")
    value = int(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise _bad_json(f"Integer out of range: {text}")
    return value


def _parse_float(text: str) -> int:
    # Decimal is exact, so "1.0000000000000001" is (correctly) not integral.
    try:
        number = Decimal(text)
    except InvalidOperation as e:  # pragma: no cover - the scanner only passes numbers
        raise _bad_json(f"Bad number: {text[:32]}") from e
    if abs(number) > MAX_SAFE_INTEGER:
        raise _bad_json(f"Number out of range: {text[:32]}")
    if number != number.to_integral_value():
        raise _bad_json(f"Non-integer numbers are not allowed: {text[:32]}")
    return int(number)


def _parse_constant(name: str) -> Any:
    raise _bad_json(f"{name} is not valid JSON")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _parse_finite_float(text: str) -> int | float:
    """Integral numbers become ints (as in events); others stay floats, within the same range."""
    number = Decimal(text)
    if abs(number) > MAX_SAFE_INTEGER:
        raise _bad_json(f"Number out of range: {text[:32]}")
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def _parse_lenient_int(text: str) -> int:
    # Any size the spec's rooms v1-5 warning allows, within reason (int() of a huge string is slow).
    if len(text.lstrip("-")) > 64:
        raise _bad_json(f"Integer too long: {text[:32]}")
    return int(text)


def _parse_lenient_float(text: str) -> float:
    # Kept as written ("2.0" stays a float): a peer's signature covers its encoding.
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _bad_json(f"Number out of range: {text[:32]}")
    return value


def parse_federation_json(data: bytes | bytearray) -> Any:
    """Parse a body that carries PDUs of any room version (a transaction, a peer's
    answer): numbers are kept as the peer wrote them — floats stay floats, integers of
    any reasonable size — because rooms of versions 1-5 predate strict canonical JSON
    and their events may hold such values ("Servers SHOULD be capable of handling JSON
    which is considered invalid by these restrictions", spec appendix "Canonical JSON").
    Each PDU is then judged by its room version (``events.validate_pdu``), so one bad
    event is refused alone instead of the whole transaction. Otherwise as ``parse_json``."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise MatrixError(400, "M_NOT_JSON", "Body is not valid UTF-8") from e
    try:
        value = json.loads(
            text, parse_int=_parse_lenient_int, parse_float=_parse_lenient_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as e:
        raise MatrixError(400, "M_NOT_JSON", f"Content not JSON: {e.msg}") from e
    except RecursionError as e:
        raise MatrixError(400, "M_BAD_JSON", "JSON nested too deeply") from e
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
        raise MatrixError(400, "M_NOT_JSON", "JSON contains an unpaired surrogate")
    return value


def parse_json(data: bytes | bytearray | str, allow_floats: bool = False) -> Any:
    """Parse untrusted JSON strictly.

    - invalid UTF-8, invalid JSON, or lone surrogate escapes -> 400 M_NOT_JSON;
    - NaN/Infinity, non-integral numbers, integers beyond +/-(2**53-1) -> 400 M_BAD_JSON;
    - integral numbers written as floats (``1e10``, ``2.0``, ``-0.0``) become ints.

    ``allow_floats``: non-integral numbers are kept, for documents that are never signed
    (account data, room tags, whose `order` the spec makes a number in [0, 1]).
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise MatrixError(400, "M_NOT_JSON", "Body is not valid UTF-8") from e
    else:
        text = data
    try:
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_finite_float if allow_floats else _parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as e:
        raise MatrixError(400, "M_NOT_JSON", f"Content not JSON: {e.msg}") from e
    except RecursionError as e:
        raise MatrixError(400, "M_BAD_JSON", "JSON nested too deeply") from e
    # Only \uD800-\uDFFF escapes can produce strings that are not valid Unicode;
    # a cheap substring test avoids walking every body.
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
        raise MatrixError(400, "M_NOT_JSON", "JSON contains an unpaired surrogate")
    return value
