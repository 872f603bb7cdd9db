"""X-Matrix request signing and header parsing
(https://spec.matrix.org/v1.19/server-server-api/#request-authentication). Pure: no I/O.

The signed object is ``{method, uri, origin, destination, content?}``; ``uri``
is the request target byte-for-byte as sent (path plus raw query), so callers
must hand over the exact string that goes on the wire.
"""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.core.signing import SigningKey, sign_json

SCHEME = "X-Matrix"


@attrs.frozen
class XMatrixAuth:
    origin: str
    destination: str | None  # old senders omit it
    key_id: str
    sig: str


def request_json_for_signing(
    method: str, uri: str, origin: str, destination: str, content: Any = None,
) -> dict[str, Any]:
    """The object both sides sign/verify; ``content`` is omitted when None (no body)."""
    obj: dict[str, Any] = {
        "method": method.upper(),
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_header(auth: XMatrixAuth) -> str:
    """Exactly the form Synapse sends: quoted values, no spaces around commas."""
    params = [("origin", auth.origin)]
    if auth.destination is not None:
        params.append(("destination", auth.destination))
    params += [("key", auth.key_id), ("sig", auth.sig)]
    return f"{SCHEME} " + ",".join(f"{name}={_quote(value)}" for name, value in params)


def sign_request(
    key: SigningKey, origin: str, destination: str, method: str, uri: str,
    content: Any = None,
) -> str:
    """The full ``Authorization`` header value for one request."""
    # Not strict: a body may carry PDUs of rooms v1-5 with floats (spec appendix, canonical JSON).
    signed = sign_json(
        request_json_for_signing(method, uri, origin, destination, content), origin, key, strict=False,
    )
    sig = signed["signatures"][origin][key.key_id]
    return format_header(XMatrixAuth(origin, destination, key.key_id, sig))


def is_xmatrix(value: str) -> bool:
    """Does an ``Authorization`` value use our scheme? (Scheme names are case-insensitive.)"""
    return value[: len(SCHEME) + 1].lower() in (SCHEME.lower() + " ", SCHEME.lower() + "\t")


def _parse_params(text: str) -> dict[str, str]:
    """``name=value`` pairs separated by commas (spaces/tabs allowed around them).

    Quoted values may contain commas and ``\\x`` escapes; unquoted values run to
    the next comma. The first occurrence of a name wins.
    """
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError(f"X-Matrix parameter without '=': {text[i:]!r}")
        name = text[i:eq].strip(" \t").lower()
        if not name or any(c in name for c in ' \t,"'):
            raise ValueError(f"bad X-Matrix parameter name: {text[i:eq]!r}")
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted X-Matrix value")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            value = "".join(chars)
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] != ",":
                raise ValueError("garbage after quoted X-Matrix value")
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip(" \t")
            i = end
        params.setdefault(name, value)
    return params


def parse_xmatrix_header(value: str) -> XMatrixAuth:
    """Parse one ``Authorization`` value; ValueError if it is not a usable X-Matrix header."""
    if not isinstance(value, str):
        raise ValueError("header must be a string")
    if not is_xmatrix(value):
        raise ValueError("not an X-Matrix authorization header")
    params = _parse_params(value[len(SCHEME):])
    missing = [p for p in ("origin", "key", "sig") if not params.get(p)]
    if missing:
        raise ValueError(f"X-Matrix header lacks {', '.join(missing)}")
    return XMatrixAuth(
        origin=params["origin"], destination=params.get("destination") or None,
        key_id=params["key"], sig=params["sig"],
    )
