"""Authorization rules for room versions 1-12
(https://spec.matrix.org/v1.19/rooms/v1/#authorization-rules ... rooms/v12/#authorisation-rules).

Rule numbers in comments follow the spec's v10 numbering; version differences
are RoomVersion flags: the m.room.aliases special case (v1-v5), the redaction
rule (v1-v2), knock (v7), restricted joins (v8), notifications and integer power
levels (v6, v10), the creator (v11) and v12's room ids and privileged creators.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from homeserver.core.auth_helpers import (
    CREATE_KEY,
    POWER_LEVELS_KEY,
    AuthState,
    StateKey,
    domain_of,
    join_rule_of,
    membership_of,
    named_power_level,
    notification_power_level,
    required_power_level,
    room_creator,
    room_creators,
    user_power_level,
)
from homeserver.core.auth_power_levels import check_power_levels_change
from homeserver.core.errors import AuthError, SignatureError
from homeserver.core.events import Event
from homeserver.core.ids import is_valid_user_id
from homeserver.core.room_versions import (
    KNOWN_ROOM_VERSIONS,
    EventFormat,
    RoomVersion,
    get_room_version,
)
from homeserver.core.signing import decode_base64, signature_key_ids, verify_json_signature

__all__ = [
    "AuthState",
    "StateKey",
    "auth_event_selection",
    "auth_references",
    "auth_state_from_events",
    "auth_types_for_event",
    "check_auth_events",
    "check_auth_rules",
    "check_event_auth",
    "create_event_id_for_room",
    "join_rule_of",
    "membership_of",
    "named_power_level",
    "notification_power_level",
    "required_power_level",
    "room_creator",
    "room_creators",
    "user_power_level",
]

# (event, server_name) -> is the event validly signed by that server?
AuthoriserCheck = Callable[[Event, str], bool]


def auth_types_for_event(
    room_version: RoomVersion | str,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[StateKey]:
    """The (type, state_key) pairs an event's ``auth_events`` are chosen from (§1)."""
    version = get_room_version(room_version)  # refuse unknown versions early
    if event_type == "m.room.create":
        return []
    wanted: list[StateKey] = [CREATE_KEY, POWER_LEVELS_KEY, ("m.room.member", sender)]
    if event_type == "m.room.member" and isinstance(state_key, str):
        membership = content.get("membership")
        wanted.append(("m.room.member", state_key))
        if membership in ("join", "invite", "knock"):
            wanted.append(("m.room.join_rules", ""))
        if membership == "invite":
            tpi = content.get("third_party_invite")
            signed = tpi.get("signed") if isinstance(tpi, dict) else None
            token = signed.get("token") if isinstance(signed, dict) else None
            if isinstance(token, str):
                wanted.append(("m.room.third_party_invite", token))
        if membership == "join" and version.restricted_join_rule:
            authoriser = content.get("join_authorised_via_users_server")
            if isinstance(authoriser, str):
                wanted.append(("m.room.member", authoriser))
    return list(dict.fromkeys(wanted))  # dedupe, keep order


def auth_event_selection(
    room_version: RoomVersion | str,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[StateKey]:
    """What goes in a new event's ``auth_events``: :func:`auth_types_for_event`
    without m.room.create from v12, where the room id stands for it (rule 3.2)."""
    version = get_room_version(room_version)
    wanted = auth_types_for_event(version, event_type, sender, state_key, content)
    if version.room_id_is_create_hash:
        return [k for k in wanted if k != CREATE_KEY]
    return wanted


def auth_references(room_version: RoomVersion | str, auth_events: Sequence[Event]) -> list[Any]:
    """``auth_events``/``prev_events`` as the PDU carries them: ids, or in rooms of
    versions 1-2 ``[id, {"sha256": ...}]`` pairs (rooms/v1 event format)."""
    version = get_room_version(room_version)
    if version.event_format is not EventFormat.V1:
        return [e.event_id for e in auth_events]
    return [[e.event_id, dict(e.pdu.get("hashes") or {})] for e in auth_events]


def create_event_id_for_room(room_id: str) -> str:
    """rooms/v12: the create event's id is the room id with the sigil ``$``."""
    return "$" + room_id[1:]


def _auth_types_of(version: RoomVersion, event: Event) -> list[StateKey]:
    return auth_event_selection(version, event.type, event.sender, event.state_key, event.content)


def auth_state_from_events(auth_events: Sequence[Event]) -> dict[StateKey, Event]:
    """Key a list of auth events by (type, state_key) (non-state entries dropped)."""
    return {e.state_tuple: e for e in auth_events if e.is_state}


def check_auth_events(
    room_version: RoomVersion | str, event: Event, auth_events: Sequence[Event]
) -> None:
    """Rule 2: the shape of the event's own ``auth_events`` (checked on receipt only)."""
    version = get_room_version(room_version)
    if event.type == "m.room.create":
        return  # rule 1 decides create events alone
    expected = set(_auth_types_of(version, event))
    seen: set[StateKey] = set()
    for ae in auth_events:
        key = ae.state_tuple if ae.is_state else (ae.type, "<not a state event>")
        if key in seen:
            raise AuthError(f"Duplicate auth event for {key}")  # 2.1
        seen.add(key)
        if key not in expected:
            raise AuthError(f"Unexpected auth event {ae.event_id} for {key}")  # 2.2
        if ae.rejected:
            raise AuthError(f"Auth event {ae.event_id} was rejected")  # 2.3
        if ae.room_id != event.room_id:
            raise AuthError(f"Auth event {ae.event_id} is from another room")  # 2.5
    if CREATE_KEY not in seen and not version.room_id_is_create_hash:
        raise AuthError("No m.room.create event in auth events")  # 2.4


def check_event_auth(
    room_version: RoomVersion | str,
    event: Event,
    auth_events: Sequence[Event],
    *,
    create_event: Event | None = None,
    verify_authoriser: AuthoriserCheck | None = None,
) -> None:
    """Check (a) on receipt: rule 2 and then rules 1, 3-10 against the auth events.

    From v12 the create event is not among the auth events: pass it as
    ``create_event`` (the event whose id is the room id, rule 2)."""
    check_auth_events(room_version, event, auth_events)
    state = auth_state_from_events(auth_events)
    if create_event is not None:
        state.setdefault(CREATE_KEY, create_event)
    check_auth_rules(room_version, event, state, verify_authoriser=verify_authoriser)


def check_auth_rules(
    room_version: RoomVersion | str,
    event: Event,
    auth_state: AuthState,
    *,
    verify_authoriser: AuthoriserCheck | None = None,
) -> None:
    """Rules 1 and 3-10 of the room version, against ``auth_state``.

    ``auth_state`` is whatever state the check runs against (the event's auth
    events, the state before it, or the current state). Raises AuthError.

    ``verify_authoriser(event, server)`` checks rule 4.2 (the event is validly
    signed by the ``join_authorised_via_users_server`` user's server). By
    default only the presence of a signature from that server is checked: real
    signature verification belongs to the federation layer, which must run
    before auth.
    """
    version = get_room_version(room_version)
    if event.type == "m.room.create":
        _check_create(version, event)
        return
    create = auth_state.get(CREATE_KEY)
    if create is None:
        raise AuthError("No m.room.create event in the auth state")
    if version.room_id_is_create_hash:
        # v12 rule 2: the room id names an accepted create event.
        if create.rejected or event.room_id != "!" + create.event_id[1:]:
            raise AuthError("The room id is not the id of an accepted m.room.create event")
    # Rule 3: m.federate = false keeps other servers out.
    if create.content.get("m.federate", True) is False and domain_of(event.sender) != domain_of(
        create.sender
    ):
        raise AuthError("This room does not federate with the sender's server")
    # v1-v5 rule 4: m.room.aliases belongs to the server named by its state key.
    if event.type == "m.room.aliases" and version.special_case_aliases_auth:
        if event.state_key is None:
            raise AuthError("m.room.aliases needs a state_key")
        if event.state_key != domain_of(event.sender):
            raise AuthError("m.room.aliases state_key must be the sender's server")
        return
    if event.type == "m.room.member":
        _check_membership(version, event, auth_state, verify_authoriser)
        return
    # Rule 5.
    if membership_of(auth_state, event.sender) != "join":
        raise AuthError(f"{event.sender} is not joined to the room")
    sender_level = user_power_level(auth_state, event.sender, version)
    # Rule 6.
    if event.type == "m.room.third_party_invite":
        if sender_level < named_power_level(auth_state, "invite"):
            raise AuthError("Insufficient power level to invite")
        return
    # Rule 7.
    needed = required_power_level(auth_state, event.type, event.is_state)
    if sender_level < needed:
        raise AuthError(f"{event.type} needs power level {needed}; sender has {sender_level}")
    # Rule 8.
    state_key = event.state_key
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != event.sender:
        raise AuthError("A state_key starting with '@' must be the sender's user id")
    # Rule 9.
    if event.type == "m.room.power_levels":
        check_power_levels_change(version, event, auth_state, sender_level)
    # v1-v2 rule 11: redactions need the redact level or the same event-id domain.
    if event.type == "m.room.redaction" and version.redaction_auth_rule:
        if sender_level >= named_power_level(auth_state, "redact"):
            return
        target = event.redacts
        if target is None or domain_of(target) != domain_of(event.event_id):
            raise AuthError("Insufficient power level to redact")
    # Rule 10: allow.


def _check_create(version: RoomVersion, event: Event) -> None:
    if event.prev_event_ids:
        raise AuthError("m.room.create must not have prev_events")  # 1.1
    if version.room_id_is_create_hash:
        if "room_id" in event.pdu:
            raise AuthError("m.room.create must not have a room_id")  # 1.2 (v12)
    elif domain_of(event.room_id) != domain_of(event.sender) or not domain_of(event.sender):
        raise AuthError("m.room.create: room id and sender are on different servers")  # 1.2
    # 1.3: an absent room_version means "1".
    if event.content.get("room_version", "1") not in KNOWN_ROOM_VERSIONS:
        raise AuthError("m.room.create: unknown room version")
    if version.privileged_creators and "additional_creators" in event.content:  # 1.4 (v12)
        extra = event.content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("m.room.create: additional_creators must be a list of user ids")
    if version.creator_in_content and not isinstance(event.content.get("creator"), str):
        raise AuthError("m.room.create: content.creator is required")  # 1.4 (v1-v10)


def _check_membership(
    version: RoomVersion,
    event: Event,
    state: AuthState,
    verify_authoriser: AuthoriserCheck | None,
) -> None:
    target = event.state_key
    membership = event.content.get("membership")
    # 4.1
    if not isinstance(target, str) or not isinstance(membership, str):
        raise AuthError("m.room.member needs a state_key and content.membership")
    # 4.2 (v8+, with restricted joins)
    authoriser = event.content.get("join_authorised_via_users_server")
    if authoriser is not None and version.restricted_join_rule:
        server = domain_of(authoriser) if isinstance(authoriser, str) else ""
        check = verify_authoriser or _has_signature_from
        if not server or not check(event, server):
            raise AuthError("Join authorisation is not signed by the authorising server")

    sender = event.sender
    sender_membership = membership_of(state, sender)
    target_membership = membership_of(state, target)
    if membership == "join":
        _check_join(version, event, state, sender_membership)
        return
    sender_level = user_power_level(state, sender, version)
    target_level = user_power_level(state, target, version)
    if membership == "invite":
        if "third_party_invite" in event.content:  # 4.4.1
            if target_membership == "ban":
                raise AuthError(f"{target} is banned")
            _check_third_party_invite(event, state)
            return
        if sender_membership != "join":
            raise AuthError(f"{sender} is not joined to the room")  # 4.4.2
        if target_membership in ("join", "ban"):
            raise AuthError(f"{target} is already {target_membership}")  # 4.4.3
        if sender_level < named_power_level(state, "invite"):
            raise AuthError("Insufficient power level to invite")  # 4.4.5
        return
    if membership == "leave":
        if sender == target:  # 4.5.1 (knock is a membership from v7)
            leavable = (
                ("invite", "join", "knock") if version.knock_join_rule else ("invite", "join")
            )
            if target_membership not in leavable:
                raise AuthError(f"{target} cannot leave: membership is {target_membership}")
            return
        if sender_membership != "join":
            raise AuthError(f"{sender} is not joined to the room")  # 4.5.2
        if target_membership == "ban" and sender_level < named_power_level(state, "ban"):
            raise AuthError("Insufficient power level to unban")  # 4.5.3
        if sender_level >= named_power_level(state, "kick") and target_level < sender_level:
            return  # 4.5.4
        raise AuthError("Insufficient power level to kick")  # 4.5.5
    if membership == "ban":
        if sender_membership != "join":
            raise AuthError(f"{sender} is not joined to the room")  # 4.6.1
        if sender_level >= named_power_level(state, "ban") and target_level < sender_level:
            return  # 4.6.2
        raise AuthError("Insufficient power level to ban")  # 4.6.3
    if membership == "knock" and version.knock_join_rule:
        if join_rule_of(state) not in _knock_rules(version):
            raise AuthError("This room does not allow knocking")  # 4.7.1
        if sender != target:
            raise AuthError("Cannot knock on behalf of another user")  # 4.7.2
        if sender_membership in ("ban", "invite", "join"):
            raise AuthError(f"Cannot knock while {sender_membership}")  # 4.7.4
        return
    raise AuthError(f"Unknown membership {membership!r}")  # 4.8


def _knock_rules(version: RoomVersion) -> tuple[str, ...]:
    """Join rules that admit knocks in this room version (rule 4.7.1)."""
    rules = ("knock",) if version.knock_join_rule else ()
    return rules + (("knock_restricted",) if version.knock_restricted_join_rule else ())


def _has_signature_from(event: Event, server: str) -> bool:
    sigs = event.pdu.get("signatures")
    return isinstance(sigs, dict) and bool(sigs.get(server))


def _check_join(
    version: RoomVersion, event: Event, state: AuthState, sender_membership: str | None
) -> None:
    sender, target = event.sender, event.state_key
    create = state[CREATE_KEY]
    # 4.3.1: the creator's own first join, straight after the create event.
    prevs = event.prev_event_ids
    if len(prevs) == 1 and prevs[0] == create.event_id and target == room_creator(state, version):
        return
    if sender != target:
        raise AuthError("Cannot join on behalf of another user")  # 4.3.2
    if sender_membership == "ban":
        raise AuthError(f"{sender} is banned from the room")  # 4.3.3
    rule = join_rule_of(state)
    if rule == "invite" or (rule == "knock" and version.knock_join_rule):  # 4.3.4
        if sender_membership in ("invite", "join"):
            return
        raise AuthError("You are not invited to this room")
    if (rule == "restricted" and version.restricted_join_rule) or (
        rule == "knock_restricted" and version.knock_restricted_join_rule
    ):  # 4.3.5
        if sender_membership in ("invite", "join"):
            return
        authoriser = event.content.get("join_authorised_via_users_server")
        if (
            not isinstance(authoriser, str)
            or membership_of(state, authoriser) != "join"
            or user_power_level(state, authoriser, version) < named_power_level(state, "invite")
        ):
            raise AuthError("Join is not authorised by a joined user who may invite")
        return
    if rule == "public":
        return  # 4.3.6
    raise AuthError(f"Cannot join a room with join rule {rule!r}")  # 4.3.7


def _check_third_party_invite(event: Event, state: AuthState) -> None:
    """4.4.1: a signed third-party invite must match an m.room.third_party_invite."""
    tpi = event.content.get("third_party_invite")
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict):
        raise AuthError("third_party_invite.signed is missing")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third_party_invite.signed needs mxid and token")
    if mxid != event.state_key:
        raise AuthError("third_party_invite mxid does not match the target")
    invite = state.get(("m.room.third_party_invite", token))
    if invite is None:
        raise AuthError("No matching m.room.third_party_invite")
    if invite.sender != event.sender:
        raise AuthError("Only the third-party inviter can complete the invite")
    keys = [invite.content.get("public_key")]
    public_keys = invite.content.get("public_keys")
    if isinstance(public_keys, list):
        keys += [k.get("public_key") for k in public_keys if isinstance(k, dict)]
    sigs = signed.get("signatures")
    for server in sigs if isinstance(sigs, dict) else ():
        for key_id in signature_key_ids(signed, server):
            for key in keys:
                if not isinstance(key, str):
                    continue
                try:
                    verify_json_signature(signed, server, key_id, decode_base64(key))
                except (ValueError, SignatureError):
                    continue
                return
    raise AuthError("No valid signature on the third-party invite")
