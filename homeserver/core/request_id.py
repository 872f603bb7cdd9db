"""The id of the request being served, for log lines and for the requests it causes.

A context variable, so every log line written while a request is handled (in any task
it awaits) carries the same id, and a federation request made on its behalf sends it on
(``X-Request-Id``) for the peer to log next to its own. Tasks that outlive a request
(federation senders, fan-out workers) start from an empty context and set their own.
"""

from __future__ import annotations

import contextvars
import re
import secrets

HEADER = "X-Request-Id"

# The id of the request (or background job) this code runs for; None outside one.
current: contextvars.ContextVar[str | None] = contextvars.ContextVar("tricolor_request_id", default=None)

# What we accept from a peer: short and printable, so it cannot forge log lines.
_PEER_ID = re.compile(r"[A-Za-z0-9._:@!/+=-]{1,80}")


def new_id(prefix: str = "") -> str:
    """A fresh id: 12 hex digits (48 bits), enough to tell a day's requests apart."""
    return prefix + secrets.token_hex(6)


def peer_id(value: str | None) -> str | None:
    """A request id a peer sent us, or None when absent or not something safe to log."""
    if value is None or _PEER_ID.fullmatch(value) is None:
        return None
    return value
