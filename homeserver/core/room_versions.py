"""The room versions we implement, as data: code branches on flags, never on ids.

Every stable version of https://spec.matrix.org/v1.19/rooms/ (1-12) is one frozen
flag set; the flags name the behaviour that changed and the version that changed it.
"""

from __future__ import annotations

import enum

import attrs

from homeserver.core.errors import MatrixError


class EventFormat(enum.Enum):
    # v1-v2: "$opaque:server" chosen by the sender and carried in the PDU;
    # prev_events/auth_events are [event_id, {hashes}] pairs.
    V1 = 1
    # v3: "$" + standard base64 of the reference hash (rooms/v3 event ids).
    V3 = 3
    # v4+: "$" + url-safe base64 of the reference hash (rooms/v4 event ids).
    V4 = 4


class StateResAlgorithm(enum.Enum):
    V1 = 1  # rooms/v1 state resolution
    V2 = 2  # rooms/v2 state resolution (v2-v11)
    V2_1 = 21  # rooms/v12: iterative auth checks from an empty map + conflicted subgraph


class RedactionRules(enum.Enum):
    V1 = 1  # v1-v5: m.room.aliases keeps "aliases"
    V6 = 6  # v6-v7: aliases no longer special
    V8 = 8  # v8: join_rules keep "allow"
    V9 = 9  # v9-v10: member keeps join_authorised_via_users_server
    V11 = 11  # v11+: rooms/v11 redactions


@attrs.frozen
class RoomVersion:
    identifier: str
    event_format: EventFormat
    state_res: StateResAlgorithm
    redaction_rules: RedactionRules
    # v1-v5: m.room.aliases is authorised by the sender's domain alone (auth rule 4).
    special_case_aliases_auth: bool
    # v1-v2: auth rule 11 (the redact level or same event-id domain authorises redactions).
    redaction_auth_rule: bool
    # v6+: events must be strict canonical JSON (no floats, ints within 2**53).
    strict_canonical_json: bool
    # v6+: auth rule 9 also limits changes to power_levels.notifications.
    limit_notifications_power_levels: bool
    # v10+: power levels must be JSON integers; before, "50" and 50.5 mean 50.
    integer_power_levels: bool
    # v10: m.room.create carries content.creator (auth rule 1.4 requires it) and
    # "the creator" means that key. v11: the creator is the create event's sender.
    creator_in_content: bool
    # v11: m.room.redaction has content.redacts instead of a top-level redacts.
    redacts_in_content: bool
    # Join rules the version's auth rules know (knock: v7+, restricted: v8+,
    # knock_restricted: v10+); a join rule the version does not know admits nobody.
    knock_join_rule: bool
    restricted_join_rule: bool
    knock_restricted_join_rule: bool
    # v12: room id = "!" + the create event's reference hash; no room_id in the create
    # event and the create event is never in auth_events (rooms/v12 auth rules 1.2, 2, 3.2).
    room_id_is_create_hash: bool
    # v12: the create sender and content.additional_creators have infinite power.
    privileged_creators: bool
    # Advertised as "stable" (not "unstable") in the client capabilities.
    stable: bool = True

    @property
    def v11_redaction(self) -> bool:
        return self.redaction_rules is RedactionRules.V11


def _version(identifier: str, n: int) -> RoomVersion:
    return RoomVersion(
        identifier,
        event_format=EventFormat.V1 if n <= 2 else EventFormat.V3 if n == 3 else EventFormat.V4,
        state_res=(
            StateResAlgorithm.V1
            if n == 1
            else StateResAlgorithm.V2_1
            if n >= 12
            else StateResAlgorithm.V2
        ),
        redaction_rules=(
            RedactionRules.V1
            if n <= 5
            else RedactionRules.V6
            if n <= 7
            else RedactionRules.V8
            if n == 8
            else RedactionRules.V9
            if n <= 10
            else RedactionRules.V11
        ),
        special_case_aliases_auth=n <= 5,
        redaction_auth_rule=n <= 2,
        strict_canonical_json=n >= 6,
        limit_notifications_power_levels=n >= 6,
        integer_power_levels=n >= 10,
        creator_in_content=n <= 10,
        redacts_in_content=n >= 11,
        knock_join_rule=n >= 7,
        restricted_join_rule=n >= 8,
        knock_restricted_join_rule=n >= 10,
        room_id_is_create_hash=n >= 12,
        privileged_creators=n >= 12,
    )


V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12 = (_version(str(n), n) for n in range(1, 13))

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v for v in (V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12)
}

# What /createRoom uses when neither the client nor the config chooses (Synapse 1.163
# creates v12 rooms too).
DEFAULT_ROOM_VERSION = V12


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
