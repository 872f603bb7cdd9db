"""Matrix identifiers: parsing, validation and the short ``alice@hs`` form."""

from __future__ import annotations

import re
import secrets
import string

from homeserver.core.errors import MatrixError

_HASH_ROOM_ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")

_LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+\Z")
# Historical user ids may contain more characters; accept them when parsing
# ids that come from elsewhere, but only create new ones with the strict set.
_HISTORICAL_LOCALPART_RE = re.compile(r"^[\x21-\x39\x3b-\x7e]+\Z")
_SERVER_NAME_RE = re.compile(
    r"^(\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(\.[0-9]{1,3}){3}|[A-Za-z0-9\-.]{1,255})(:[0-9]{1,5})?\Z"
)
MAX_ID_BYTES = 255


def is_valid_server_name(name: str) -> bool:
    return bool(_SERVER_NAME_RE.match(name))


def is_valid_localpart(localpart: str) -> bool:
    return bool(_LOCALPART_RE.match(localpart))


def split_id(sigil: str, value: str) -> tuple[str, str]:
    """``"@alice:hs"`` -> ``("alice", "hs")``; raises ValueError when malformed."""
    if not isinstance(value, str) or len(value) < 3 or value[0] != sigil or ":" not in value:
        raise ValueError(f"not a valid {sigil} id: {value!r}")
    local, _, domain = value[1:].partition(":")
    if not domain or not is_valid_server_name(domain):
        raise ValueError(f"bad server name in {value!r}")
    return local, domain


def is_valid_user_id(value: object) -> bool:
    if not isinstance(value, str) or len(value.encode()) > MAX_ID_BYTES:
        return False
    try:
        local, _ = split_id("@", value)
    except ValueError:
        return False
    return bool(local) and bool(_HISTORICAL_LOCALPART_RE.match(local))


def server_of(entity_id: str) -> str:
    """The server name part of a user, room or alias id ("" for a v12 room id,
    which has none)."""
    return entity_id.split(":", 1)[1] if ":" in entity_id else ""


def is_room_id(value: object) -> bool:
    """``!opaque:server`` (room versions 1-11) or ``!`` + a url-safe reference hash
    (room version 12, appendices#room-ids)."""
    if not isinstance(value, str) or not value.startswith("!") or len(value) > 255:
        return False
    return ":" in value or bool(_HASH_ROOM_ID_RE.fullmatch(value[1:]))


def user_id(localpart: str, server_name: str) -> str:
    return f"@{localpart}:{server_name}"


def normalize_user_id(value: str, server_name: str) -> str:
    """Accept ``@alice:hs``, ``alice@hs`` or a bare ``alice`` (local) and return ``@alice:hs``."""
    if not isinstance(value, str) or not value:
        raise MatrixError(400, "M_INVALID_PARAM", "Missing user id")
    value = value.strip()
    if value.startswith("@"):
        result = value
    elif "@" in value:
        local, _, domain = value.rpartition("@")
        result = f"@{local}:{domain}"
    else:
        result = f"@{value}:{server_name}"
    if not is_valid_user_id(result):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user id: {value}")
    return result


_ALPHABET = string.ascii_letters


def random_string(length: int, alphabet: str = _ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_room_id(server_name: str) -> str:
    return f"!{random_string(18)}:{server_name}"


def new_device_id() -> str:
    return random_string(10, string.ascii_uppercase)
