"""m.room.server_acl: which servers may take part in a room (pure)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    # Only * (any run) and ? (one character) are wildcards; everything else is literal.
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def _host(server_name: str) -> str:
    if server_name.startswith("["):
        return server_name[: server_name.index("]") + 1]
    return server_name.rsplit(":", 1)[0] if ":" in server_name else server_name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def server_allowed(acl_content: Mapping[str, Any] | None, server_name: str) -> bool:
    """True when the room's ACL (its content, or None for no ACL) lets this server in."""
    if acl_content is None:
        return True
    host = _host(server_name)
    allow_ip = acl_content.get("allow_ip_literals", True)
    if allow_ip is False and _is_ip_literal(host):
        return False
    deny = [p for p in acl_content.get("deny") or [] if isinstance(p, str)] if isinstance(acl_content.get("deny"), list) else []
    allow = [p for p in acl_content.get("allow") or [] if isinstance(p, str)] if isinstance(acl_content.get("allow"), list) else []
    if any(_glob(p).match(host) for p in deny):
        return False
    return any(_glob(p).match(host) for p in allow)
