"""The in-memory event: the original PDU object plus its derived id.

The PDU dict is kept exactly as signed (unknown keys included) because the
content hash and signatures cover every key; nothing here re-serialises it
through a lossy model.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import attrs

from homeserver.core.canonical_json import MAX_SAFE_INTEGER, encode_canonical_json
from homeserver.core.errors import MatrixError
from homeserver.core.redaction import redact_pdu
from homeserver.core.room_versions import EventFormat, RoomVersion, get_room_version
from homeserver.core.signing import SigningKey, decode_base64, encode_base64, sign_json

StateKey = tuple[str, str]


@attrs.frozen(slots=True)
class Event:
    event_id: str
    pdu: dict[str, Any]
    room_version: str = "10"
    rejected: bool = False

    @property
    def type(self) -> str:
        return self.pdu["type"]

    @property
    def room_id(self) -> str:
        room_id = self.pdu.get("room_id")
        if room_id is None and self.pdu.get("type") == "m.room.create":
            return room_id_for_create(self.event_id)  # v12: the create event names the room
        return self.pdu["room_id"]

    @property
    def sender(self) -> str:
        return self.pdu["sender"]

    @property
    def content(self) -> dict[str, Any]:
        return self.pdu.get("content") or {}

    @property
    def state_key(self) -> str | None:
        return self.pdu.get("state_key")

    @property
    def is_state(self) -> bool:
        return "state_key" in self.pdu

    @property
    def state_tuple(self) -> StateKey:
        return (self.pdu["type"], self.pdu["state_key"])

    @property
    def depth(self) -> int:
        return self.pdu.get("depth", 0)

    @property
    def origin_server_ts(self) -> int:
        return self.pdu.get("origin_server_ts", 0)

    @property
    def prev_event_ids(self) -> list[str]:
        return reference_ids(self.pdu.get("prev_events"))

    @property
    def auth_event_ids(self) -> list[str]:
        return reference_ids(self.pdu.get("auth_events"))

    @property
    def membership(self) -> str | None:
        m = self.content.get("membership")
        return m if isinstance(m, str) else None

    @property
    def redacts(self) -> str | None:
        """The redaction target: top level in v10, ``content.redacts`` from v11."""
        target = self.pdu.get("redacts") or self.content.get("redacts")
        return target if isinstance(target, str) else None


def reference_ids(refs: Any) -> list[str]:
    """Event ids of prev_events/auth_events: plain ids (v3+) or, in rooms of versions
    1-2, ``[event_id, {"sha256": ...}]`` pairs (rooms/v1 event format)."""
    out: list[str] = []
    for ref in refs or ():
        if isinstance(ref, list | tuple) and ref and isinstance(ref[0], str):
            out.append(ref[0])
        elif isinstance(ref, str):
            out.append(ref)
    return out


def room_id_for_create(create_event_id: str) -> str:
    """rooms/v12: the room id is the create event's id with the sigil ``!``."""
    return "!" + create_event_id[1:]


# ---------------------------------------------------------------------------
# Hashes, signatures, ids and format checks (https://spec.matrix.org/v1.19/server-server-api/#signing-events,
# https://spec.matrix.org/v1.19/rooms/v10/#event-format).

# Legacy internal keys Synapse strips before hashing; never in well-formed PDUs.
_NOT_HASHED = frozenset({"unsigned", "signatures", "hashes", "age_ts", "outlier", "destinations"})

MAX_PDU_BYTES = 65536
MAX_ID_BYTES = 255
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10


def _content_hash_bytes(pdu: dict[str, Any]) -> bytes:
    stripped = {k: v for k, v in pdu.items() if k not in _NOT_HASHED}
    # Floats only reach here from rooms of versions 1-5, whose events may hold them.
    return hashlib.sha256(encode_canonical_json(stripped, strict=False)).digest()


def compute_content_hash(pdu: dict[str, Any]) -> str:
    """``hashes.sha256`` for the full (unredacted) PDU, unpadded standard base64."""
    return encode_base64(_content_hash_bytes(pdu))


def check_content_hash(pdu: dict[str, Any]) -> bool:
    """True iff ``hashes.sha256`` is present and matches the PDU's content."""
    hashes = pdu.get("hashes")
    claimed = hashes.get("sha256") if isinstance(hashes, dict) else None
    if not isinstance(claimed, str):
        return False
    try:
        return decode_base64(claimed) == _content_hash_bytes(pdu)
    except ValueError:
        return False


def compute_reference_hash(room_version: RoomVersion | str, pdu: dict[str, Any]) -> bytes:
    """SHA-256 of the redacted PDU without signatures/unsigned (server-server
    "calculating the reference hash for an event")."""
    version = get_room_version(room_version)
    redacted = redact_pdu(version, pdu)
    for key in ("signatures", "unsigned", "age_ts"):
        redacted.pop(key, None)
    encoded = encode_canonical_json(redacted, strict=version.strict_canonical_json)
    return hashlib.sha256(encoded).digest()


def compute_event_id(room_version: RoomVersion | str, pdu: dict[str, Any]) -> str:
    """The event id: ``$`` + base64 of the reference hash (standard alphabet in v3,
    url-safe from v4); in rooms of versions 1-2 the ``event_id`` the sender chose.

    From v3 any ``event_id`` key inside the PDU is ignored for trust purposes (but,
    as the spec's algorithm keeps it through redaction, it is part of the hash).
    """
    version = get_room_version(room_version)
    if version.event_format is EventFormat.V1:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str) or not event_id.startswith("$") or ":" not in event_id:
            raise MatrixError(400, "M_BAD_JSON", "PDU needs an event_id of the form $id:server")
        return event_id
    digest = compute_reference_hash(version, pdu)
    return "$" + encode_base64(digest, urlsafe=version.event_format is EventFormat.V4)


def with_legacy_event_id(
    room_version: RoomVersion | str, pdu: dict[str, Any], server_name: str
) -> dict[str, Any]:
    """Rooms of versions 1-2 carry a sender-chosen ``$opaque:server`` id (rooms/v1
    event ids); later versions derive it, so the PDU is returned unchanged."""
    if get_room_version(room_version).event_format is not EventFormat.V1:
        return pdu
    return {**pdu, "event_id": f"${secrets.token_urlsafe(18)}:{server_name}"}


def hash_and_sign_pdu(
    room_version: RoomVersion | str,
    pdu: dict[str, Any],
    server_name: str,
    key: SigningKey,
) -> dict[str, Any]:
    """Set ``hashes.sha256`` then sign the redacted form; returns a new dict."""
    signed = dict(pdu)
    hashes = dict(pdu.get("hashes") or {})
    hashes["sha256"] = compute_content_hash(pdu)
    signed["hashes"] = hashes
    # The signature covers the redacted form (plus the hash) so that a redacted
    # copy still verifies.
    strict = get_room_version(room_version).strict_canonical_json
    redacted_signed = sign_json(redact_pdu(room_version, signed), server_name, key, strict=strict)
    signed["signatures"] = redacted_signed["signatures"]
    return signed


def countersign_pdu(
    room_version: RoomVersion | str, pdu: dict[str, Any], server_name: str, key: SigningKey,
) -> dict[str, Any]:
    """Add our signature to another server's PDU (an invite we are asked to sign). Like every
    event signature it covers the redacted form: signing the whole event would fail to
    verify as soon as the content holds more than the redaction keeps (a displayname)."""
    redacted_signed = sign_json(redact_pdu(room_version, pdu), server_name, key)
    return {**pdu, "signatures": redacted_signed["signatures"]}


def event_from_pdu(room_version_id: str, pdu: dict[str, Any]) -> Event:
    """Wrap a PDU, deriving its event id (raises for unknown room versions)."""
    return Event(compute_event_id(room_version_id, pdu), pdu, room_version_id)


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def _check_short_string(pdu: dict[str, Any], key: str, *, required: bool = True) -> None:
    if key not in pdu:
        if required:
            raise _bad(f"PDU is missing '{key}'")
        return
    value = pdu[key]
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise _bad(f"'{key}' is longer than {MAX_ID_BYTES} bytes")


def _check_int(pdu: dict[str, Any], key: str, minimum: int = 0) -> None:
    value = pdu.get(key)
    if type(value) is not int:  # bool is not an int here
        raise _bad(f"'{key}' must be an integer")
    if not minimum <= value <= MAX_SAFE_INTEGER:
        raise _bad(f"'{key}' is out of range")


def _is_room_id(version: RoomVersion, room_id: str) -> bool:
    if not room_id.startswith("!"):
        return False
    # v12 room ids are "!" + a reference hash; older ones are "!opaque:server".
    return version.room_id_is_create_hash or ":" in room_id


def _check_id_list(pdu: dict[str, Any], key: str, limit: int | None, legacy: bool) -> None:
    value = pdu.get(key)
    if legacy:  # rooms/v1 event format: [event_id, {"sha256": hash}] pairs
        if not isinstance(value, list) or not all(
            isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and isinstance(r[1], dict)
            for r in value
        ):
            raise _bad(f"'{key}' must be a list of [event_id, hashes] pairs")
        value = [r[0] for r in value]
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise _bad(f"'{key}' must be a list of event ids")
    if limit is not None and len(value) > limit:
        raise _bad(f"'{key}' has more than {limit} entries")
    if any(len(i.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES for i in value):
        raise _bad(f"an entry of '{key}' is longer than {MAX_ID_BYTES} bytes")


def validate_pdu(
    room_version: RoomVersion | str,
    pdu: Any,
    *,
    enforce_list_limits: bool = True,
) -> None:
    """Check a PDU's format and size limits
    (https://spec.matrix.org/v1.19/rooms/v10/#event-format, https://spec.matrix.org/v1.19/client-server-api/#size-limits).

    Raises 400 M_BAD_JSON for a malformed PDU and 413 M_TOO_LARGE when the
    canonical encoding exceeds 65536 bytes. Pass ``enforce_list_limits=False``
    for events fetched through /backfill, which the 20/10 limits do not cover.
    Signatures and hashes are only type-checked here, not verified.
    """
    version = get_room_version(room_version)
    if not isinstance(pdu, dict):
        raise _bad("PDU must be a JSON object")
    v12_create = version.room_id_is_create_hash and pdu.get("type") == "m.room.create"
    # rooms/v12: the create event has no room_id (auth rule 1.2 rejects one).
    for key in ("sender", "type") if v12_create else ("room_id", "sender", "type"):
        _check_short_string(pdu, key)
    _check_short_string(pdu, "state_key", required=False)
    if not v12_create and not _is_room_id(version, pdu["room_id"]):
        raise _bad("'room_id' is not a room id")
    if not pdu["sender"].startswith("@") or ":" not in pdu["sender"]:
        raise _bad("'sender' is not a user id")
    if not isinstance(pdu.get("content"), dict):
        raise _bad("'content' must be an object")
    _check_int(pdu, "origin_server_ts")
    _check_int(pdu, "depth")
    legacy = version.event_format is EventFormat.V1
    if legacy:
        _check_short_string(pdu, "event_id")
        if not pdu["event_id"].startswith("$") or ":" not in pdu["event_id"]:
            raise _bad("'event_id' must be of the form $id:server")
    _check_id_list(pdu, "prev_events", MAX_PREV_EVENTS if enforce_list_limits else None, legacy)
    _check_id_list(pdu, "auth_events", MAX_AUTH_EVENTS if enforce_list_limits else None, legacy)
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        raise _bad("'hashes' must be an object with a 'sha256' string")
    signatures = pdu.get("signatures")
    if not isinstance(signatures, dict) or not all(
        isinstance(v, dict) and all(isinstance(s, str) for s in v.values())
        for v in signatures.values()
    ):
        raise _bad("'signatures' must be an object of objects of strings")
    if "unsigned" in pdu and not isinstance(pdu["unsigned"], dict):
        raise _bad("'unsigned' must be an object")
    if "redacts" in pdu and not isinstance(pdu["redacts"], str):
        raise _bad("'redacts' must be a string")
    if version.redacts_in_content and pdu["type"] == "m.room.redaction":
        redacts = pdu["content"].get("redacts")
        if redacts is not None and not isinstance(redacts, str):
            raise _bad("'content.redacts' must be a string")
    try:
        size = len(encode_canonical_json(pdu, strict=version.strict_canonical_json))
    except (ValueError, UnicodeEncodeError) as e:
        raise _bad(f"PDU is not valid canonical JSON: {e}") from e
    if size > MAX_PDU_BYTES:
        raise MatrixError(413, "M_TOO_LARGE", f"PDU is {size} bytes; the limit is {MAX_PDU_BYTES}")


@attrs.frozen
class StoredEvent:
    """An event as this server holds it: its place in the timeline (stream position,
    topological order), the state groups around it, and how it arrived."""

    event: Event
    stream_ordering: int
    state_before: int | None
    state_after: int | None
    txn_device: str | None = None
    txn_id: str | None = None
    outlier: bool = False
    soft_failed: bool = False
    replaces_state: str | None = None

    @property
    def topo(self) -> tuple[int, int]:
        return (self.event.depth, self.stream_ordering)
