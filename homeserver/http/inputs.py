"""Declarative input checks every adapter shares (docs/inputs.md): the client API and the
federation API read bodies and query strings through one msgspec schema per endpoint, so
a wrong type is a Matrix error before any service runs, never a 500."""

from __future__ import annotations

import keyword
import typing
from typing import Any, TypeVar

import attrs
import msgspec
from aiohttp import web

from homeserver.core.canonical_json import parse_json
from homeserver.core.errors import MatrixError, bad_json

T = TypeVar("T")


async def json_body(
    request: web.Request, allow_empty: bool = False, allow_floats: bool = False,
) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise MatrixError(400, "M_NOT_JSON", "Content not JSON.")
    body = parse_json(raw, allow_floats)
    if not isinstance(body, dict):
        raise bad_json("Content must be a JSON object.")
    return body


def validate(value: object, schema: type[T], *, errcode: str = "M_BAD_JSON", strict: bool = True) -> T:
    """``value`` as a ``schema`` instance, or the Matrix error naming what was wrong.

    A missing required field is M_MISSING_PARAM; a value outside a ``Literal`` set is
    M_INVALID_PARAM; any other mismatch (a string where a boolean belongs) is ``errcode``.
    Unknown fields are ignored, as the spec lets clients send more than an endpoint reads.
    """
    try:
        return msgspec.convert(value, schema, strict=strict)
    except msgspec.ValidationError as e:
        message = str(e)
        if message.startswith("Object missing required field"):
            raise MatrixError(400, "M_MISSING_PARAM", message) from None
        if message.startswith("Invalid enum value"):
            raise MatrixError(400, "M_INVALID_PARAM", message) from None
        raise MatrixError(400, errcode, message) from None


async def parse_body(request: web.Request, schema: type[T], allow_empty: bool = False) -> T:
    """The JSON object body checked against ``schema`` (spec: wrong types are M_BAD_JSON)."""
    return validate(await json_body(request, allow_empty), schema)


def parse_query(request: web.Request, schema: type[T]) -> T:
    """The query string checked against ``schema``: strings become the declared ints and
    booleans ("true"/"false"), ``list`` fields collect repeated parameters, a parameter
    named by a Python keyword fills the field with a trailing underscore (``from`` ->
    ``from_``), and anything else is M_INVALID_PARAM."""
    lists = {name for name, hint in typing.get_type_hints(schema).items() if typing.get_origin(hint) is list}
    raw: dict[str, Any] = {}
    for key in request.query.keys():
        name = key + "_" if keyword.iskeyword(key) else key
        raw[name] = request.query.getall(key) if name in lists else request.query[key]
    parsed = validate(raw, schema, errcode="M_INVALID_PARAM", strict=False)
    fields = attrs.asdict(parsed, recurse=False) if attrs.has(type(parsed)) else {}
    for name, value in fields.items():
        if isinstance(value, int) and not isinstance(value, bool) and not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            # JSON bodies are held to this range by the canonical-JSON parser; the query string
            # must be too, or a huge `ts` or `limit` overflows the database (a 500).
            raise MatrixError(400, "M_INVALID_PARAM", f"{name.rstrip('_')} is out of range")
    return parsed


# Spec "Canonical JSON": integers are in [-(2**53)+1, (2**53)-1].
MAX_SAFE_INT = 2**53 - 1
