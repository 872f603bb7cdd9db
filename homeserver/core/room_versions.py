"""The room versions we implement, as data: code branches on flags, never on ids."""

from __future__ import annotations

import attrs

from homeserver.core.errors import MatrixError


@attrs.frozen
class RoomVersion:
    identifier: str
    # v10: m.room.create carries content.creator (auth rule 1.4 requires it) and
    # "the creator" means that key. v11: the creator is the create event's sender.
    creator_in_content: bool
    # v11: m.room.redaction has content.redacts instead of a top-level redacts.
    redacts_in_content: bool
    # v11 redaction algorithm (https://spec.matrix.org/v1.19/rooms/v11/#redactions).
    v11_redaction: bool
    # Join rules the version's auth rules know (knock: v7+, restricted: v8+,
    # knock_restricted: v10+); a join rule the version does not know admits nobody.
    restricted_join_rule: bool = True
    knock_join_rule: bool = True
    knock_restricted_join_rule: bool = True
    # Advertised as "stable" (not "unstable") in the client capabilities.
    stable: bool = True
    # Behaviours every version here shares (integer-only power levels, strict canonical
    # JSON, url-safe reference-hash event ids) get flags when older versions arrive.

V10 = RoomVersion("10", creator_in_content=True, redacts_in_content=False, v11_redaction=False)
V11 = RoomVersion("11", creator_in_content=False, redacts_in_content=True, v11_redaction=True)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {v.identifier: v for v in (V10, V11)}

# What /createRoom uses when the client does not choose (and what we advertise).
DEFAULT_ROOM_VERSION = V10


def get_room_version(identifier: str | RoomVersion) -> RoomVersion:
    """Look up a room version; unknown ones are refused, never guessed."""
    if isinstance(identifier, RoomVersion):
        return identifier
    version = KNOWN_ROOM_VERSIONS.get(identifier) if isinstance(identifier, str) else None
    if version is None:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version: {identifier!r}"
        )
    return version
