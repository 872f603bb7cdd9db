"""Every table, in one MetaData. Migrations (alembic) create exactly these.

Ids are case-sensitive in Matrix, so MySQL tables use a binary collation.
MariaDB gets utf8mb4_nopad_bin (see migrations/collation.py). Composite keys stay under InnoDB's 3072-byte index limit (utf8mb4).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

_MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_nopad_bin", "mysql_engine": "InnoDB"}

Id = sa.String(255)
# Event JSON can reach 64 KiB before `unsigned`; MySQL TEXT stops at 64 KiB.
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
Ts = sa.BigInteger


users = sa.Table(
    "users", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("password_hash", sa.String(128)),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("displayname", sa.String(512)),
    sa.Column("avatar_url", sa.String(512)),
    sa.Column("created_ts", Ts, nullable=False),
    sa.Column("deactivated", sa.Boolean, nullable=False, default=False),
    # Spec "Guest access": a guest account (register?kind=guest) until it is upgraded.
    sa.Column("is_guest", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    **_MYSQL,
)

devices = sa.Table(
    "devices", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("display_name", sa.String(512)),
    sa.Column("last_seen_ts", Ts),
    sa.Column("last_seen_ip", sa.String(64)),
    **_MYSQL,
)

# One row per live access token (the JWT's `jti`); deleting it revokes the JWT.
access_tokens = sa.Table(
    "access_tokens", metadata,
    sa.Column("token_id", sa.String(64), primary_key=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("created_ts", Ts, nullable=False),
    sa.Column("expires_ts", Ts),
    sa.Column("refresh_token", sa.String(128), unique=True),
    # A token made by /refresh keeps the token it replaces alive until it is first used
    # (spec "Refreshing access tokens"); then the old one goes to refresh_tokens_spent.
    sa.Column("previous_token_id", sa.String(64)),
    sa.Index("access_tokens_user", "user_id", "device_id"),
    **_MYSQL,
)

# Refresh tokens that were replaced and are no longer valid, by SHA-256: one presented
# again is a stolen copy or a replay, and revokes its device's session (issue 18).
refresh_tokens_spent = sa.Table(
    "refresh_tokens_spent", metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("spent_ts", Ts, nullable=False),
    sa.Index("refresh_tokens_spent_device", "user_id", "device_id", "spent_ts"),
    **_MYSQL,
)

rooms = sa.Table(
    "rooms", metadata,
    sa.Column("room_id", Id, primary_key=True),
    sa.Column("room_version", sa.String(32), nullable=False),
    sa.Column("creator", Id),
    sa.Column("is_public", sa.Boolean, nullable=False, default=False),
    sa.Column("created_ts", Ts, nullable=False),
    **_MYSQL,
)

# Events are stored once. stream_ordering is the global sync position
# (assigned in commit order); depth is the topological position in the room.
events = sa.Table(
    "events", metadata,
    sa.Column("stream_ordering", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", Id, nullable=False, unique=True),
    sa.Column("room_id", Id, nullable=False),
    sa.Column("type", Id, nullable=False),
    sa.Column("state_key", Id),
    sa.Column("sender", Id, nullable=False),
    sa.Column("depth", sa.BigInteger, nullable=False),
    sa.Column("origin_server_ts", Ts, nullable=False),
    sa.Column("received_ts", Ts, nullable=False),
    sa.Column("json", LongText, nullable=False),
    sa.Column("state_before", sa.BigInteger),
    sa.Column("state_after", sa.BigInteger),
    # The state event this one replaced (for unsigned.prev_content).
    sa.Column("replaces_state", Id),
    sa.Column("rejected", sa.Boolean, nullable=False, default=False),
    sa.Column("outlier", sa.Boolean, nullable=False, default=False),
    sa.Column("soft_failed", sa.Boolean, nullable=False, default=False),
    sa.Column("txn_id", sa.String(255)),
    sa.Column("txn_device", sa.String(128)),
    sa.Index("events_room_stream", "room_id", "stream_ordering"),
    sa.Index("events_room_topo", "room_id", "depth", "stream_ordering"),
    # A client's txn id maps to one event: the database enforces it, so a retry
    # after a restart can never store a second copy.
    sa.Index("events_txn", "sender", "txn_device", "txn_id", unique=True),
    **_MYSQL,
)

# State groups: a group is either a full snapshot (prev_group NULL) or a delta
# on top of prev_group. Chains are capped (see StateStore) so a lookup reads
# at most a bounded number of groups, and no event copies the full state.
state_groups = sa.Table(
    "state_groups", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("room_id", Id, nullable=False),
    sa.Column("prev_group", sa.BigInteger),
    sa.Column("chain_length", sa.Integer, nullable=False, default=0),
    **_MYSQL,
)

state_group_entries = sa.Table(
    "state_group_entries", metadata,
    sa.Column("group_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("type", Id, primary_key=True),
    sa.Column("state_key", Id, primary_key=True),
    # NULL marks a key removed by this delta (state resolution can drop keys).
    sa.Column("event_id", Id),
    **_MYSQL,
)

current_state = sa.Table(
    "current_state", metadata,
    sa.Column("room_id", Id, primary_key=True),
    sa.Column("type", Id, primary_key=True),
    sa.Column("state_key", Id, primary_key=True),
    sa.Column("event_id", Id, nullable=False),
    **_MYSQL,
)

# Current membership of every user (local or remote) in every room, with the
# stream position of the last change: joined_rooms and /sync read this.
room_members = sa.Table(
    "room_members", metadata,
    sa.Column("room_id", Id, primary_key=True),
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("membership", sa.String(32), nullable=False),
    sa.Column("event_id", Id, nullable=False),
    sa.Column("sender", Id, nullable=False),
    sa.Column("stream_ordering", sa.BigInteger, nullable=False),
    sa.Column("forgotten", sa.Boolean, nullable=False, default=False),
    sa.Index("room_members_user", "user_id", "stream_ordering"),
    **_MYSQL,
)

# The head of each room we take part in: current state group, depth, and the
# forward extremities (a JSON list; at most 20). One row, one UPDATE per event.
room_state_meta = sa.Table(
    "room_state_meta", metadata,
    sa.Column("room_id", Id, primary_key=True),
    sa.Column("current_group", sa.BigInteger, nullable=False),
    sa.Column("max_depth", sa.BigInteger, nullable=False),
    sa.Column("extremities", sa.Text, nullable=False),
    **_MYSQL,
)

# The DAG's edges from events received over federation (child -> each prev event),
# so an older event that arrives late is recognised as history, not a new head.
event_edges = sa.Table(
    "event_edges", metadata,
    sa.Column("event_id", Id, primary_key=True),
    sa.Column("prev_event_id", Id, primary_key=True),
    sa.Index("event_edges_prev", "prev_event_id"),
    **_MYSQL,
)

# Applied redactions (redaction event -> target), so serving is one lookup.
redactions = sa.Table(
    "redactions", metadata,
    sa.Column("event_id", Id, primary_key=True),
    sa.Column("redacts", Id, nullable=False),
    sa.Index("redactions_redacts", "redacts"),
    **_MYSQL,
)

# Event relationships (content.m.relates_to), written in the event's own commit so a
# relation is never visible before (or without) its event; removed when the child is
# redacted. Serves /relations, /threads and the bundled aggregations.
event_relations = sa.Table(
    "event_relations", metadata,
    sa.Column("event_id", Id, primary_key=True),
    sa.Column("relates_to_id", Id, nullable=False),
    sa.Column("rel_type", Id, nullable=False),
    sa.Column("type", Id, nullable=False),
    sa.Column("sender", Id, nullable=False),
    sa.Column("room_id", Id, nullable=False),
    sa.Column("stream_ordering", sa.BigInteger, nullable=False),
    sa.Index("event_relations_parent", "relates_to_id", "rel_type", "stream_ordering"),
    sa.Index("event_relations_room", "room_id", "rel_type", "stream_ordering"),
    **_MYSQL,
)

filters = sa.Table(
    "filters", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("filter_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("json", sa.Text, nullable=False),
    **_MYSQL,
)

account_data = sa.Table(
    "account_data", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("room_id", Id, primary_key=True),  # "" for global account data
    sa.Column("type", Id, primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("stream_id", sa.BigInteger, nullable=False),
    **_MYSQL,
)

room_aliases = sa.Table(
    "room_aliases", metadata,
    sa.Column("alias", Id, primary_key=True),
    sa.Column("room_id", Id, nullable=False),
    sa.Column("creator", Id),
    sa.Index("room_aliases_room", "room_id"),
    **_MYSQL,
)

receipts = sa.Table(
    "receipts", metadata,
    sa.Column("room_id", Id, primary_key=True),
    sa.Column("receipt_type", sa.String(64), primary_key=True),
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("thread_id", sa.String(128), primary_key=True),  # "" for unthreaded
    sa.Column("event_id", Id, nullable=False),
    sa.Column("ts", Ts, nullable=False),
    sa.Column("stream_id", sa.BigInteger, nullable=False),
    sa.Index("receipts_stream", "stream_id"),
    **_MYSQL,
)

# -- end-to-end encryption (the server stores and routes keys; it never decrypts) ---

# Spec "Key management API": a device's identity keys, as uploaded (signed JSON).
e2e_device_keys = sa.Table(
    "e2e_device_keys", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("json", sa.Text, nullable=False),
    **_MYSQL,
)

# One-time keys: each is handed out once by /keys/claim, then deleted.
e2e_one_time_keys = sa.Table(
    "e2e_one_time_keys", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("algorithm", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(128), primary_key=True),
    sa.Column("json", sa.Text, nullable=False),
    **_MYSQL,
)

# Fallback keys: one per algorithm, handed out when one-time keys run out, kept until replaced.
e2e_fallback_keys = sa.Table(
    "e2e_fallback_keys", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("algorithm", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(128), nullable=False),
    sa.Column("json", sa.Text, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False, default=False),
    **_MYSQL,
)

# Cross-signing keys (master, self_signing, user_signing), signatures merged in.
e2e_cross_signing_keys = sa.Table(
    "e2e_cross_signing_keys", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("key_type", sa.String(32), primary_key=True),
    sa.Column("json", sa.Text, nullable=False),
    **_MYSQL,
)

# Signatures a local user's user-signing key made of other users' master keys (local or
# remote). Spec "Cross-signing": only the signer sees them, so they are kept apart from
# the key and merged into /keys/query answers to the signer alone.
e2e_user_signatures = sa.Table(
    "e2e_user_signatures", metadata,
    sa.Column("signer", Id, primary_key=True),
    sa.Column("target_user_id", Id, primary_key=True),
    sa.Column("target_key_id", sa.String(128), primary_key=True),  # the master key's "ed25519:<key>"
    sa.Column("signing_key_id", sa.String(128), primary_key=True),  # the signer's user-signing key
    sa.Column("signature", sa.Text, nullable=False),
    **_MYSQL,
)

# To-device messages waiting for a device's next /sync; deleted once a later `since`
# acknowledges them (spec "Send-to-Device messaging").
device_inbox = sa.Table(
    "device_inbox", metadata,
    sa.Column("stream_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("json", sa.Text, nullable=False),
    sa.Index("device_inbox_device", "user_id", "device_id", "stream_id"),
    **_MYSQL,
)

# A row each time a user's device list or device keys changed (local or remote user):
# what /sync's device_lists.changed and /keys/changes read.
device_list_changes = sa.Table(
    "device_list_changes", metadata,
    sa.Column("stream_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", Id, nullable=False),
    sa.Index("device_list_changes_user", "user_id", "stream_id"),
    **_MYSQL,
)

# Server-side key backup (spec "Server-side key backups"): versions per user, the newest
# undeleted one current; `etag` moves whenever its keys change.
e2e_room_keys_versions = sa.Table(
    "e2e_room_keys_versions", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("algorithm", sa.String(255), nullable=False),
    sa.Column("auth_data", sa.Text, nullable=False),
    sa.Column("etag", sa.BigInteger, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    **_MYSQL,
)

e2e_room_keys = sa.Table(
    "e2e_room_keys", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("room_id", Id, primary_key=True),
    sa.Column("session_id", sa.String(255), primary_key=True),
    sa.Column("first_message_index", sa.BigInteger, nullable=False),
    sa.Column("forwarded_count", sa.BigInteger, nullable=False),
    sa.Column("is_verified", sa.Boolean, nullable=False),
    sa.Column("session_data", sa.Text, nullable=False),
    **_MYSQL,
)

# -- federation -----------------------------------------------------------------

# Verify keys of other servers (and old keys of our own), cached until valid_until_ts.
server_keys = sa.Table(
    "server_keys", metadata,
    sa.Column("server_name", Id, primary_key=True),
    sa.Column("key_id", sa.String(128), primary_key=True),
    sa.Column("verify_key", sa.String(128), nullable=False),  # unpadded base64
    sa.Column("valid_until_ts", Ts, nullable=False),
    sa.Column("expired_ts", Ts),  # set for old_verify_keys
    sa.Column("fetched_ts", Ts, nullable=False),
    **_MYSQL,
)

# The last signed key response of each server, re-served by the notary API.
server_key_responses = sa.Table(
    "server_key_responses", metadata,
    sa.Column("server_name", Id, primary_key=True),
    sa.Column("json", LongText, nullable=False),
    sa.Column("valid_until_ts", Ts, nullable=False),
    **_MYSQL,
)

# PDUs accepted for sending, per destination, until the destination acknowledges them.
federation_outbox = sa.Table(
    "federation_outbox", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("destination", Id, nullable=False),
    sa.Column("pdu_json", LongText, nullable=False),
    sa.Column("created_ts", Ts, nullable=False),
    sa.Index("federation_outbox_destination", "destination", "id"),
    **_MYSQL,
)

# EDUs that must not be lost (to-device messages, spec "Send-to-Device messaging"): kept
# like PDUs until a transaction carrying them was acknowledged.
federation_edu_outbox = sa.Table(
    "federation_edu_outbox", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("destination", Id, nullable=False),
    sa.Column("edu_json", LongText, nullable=False),
    sa.Column("created_ts", Ts, nullable=False),
    sa.Index("federation_edu_outbox_destination", "destination", "id"),
    **_MYSQL,
)

# Retry state per destination (backoff survives restarts).
federation_destinations = sa.Table(
    "federation_destinations", metadata,
    sa.Column("destination", Id, primary_key=True),
    sa.Column("failure_count", sa.Integer, nullable=False, default=0),
    sa.Column("retry_after_ts", Ts, nullable=False, default=0),
    sa.Column("last_success_ts", Ts),
    **_MYSQL,
)

# Transactions received, so a replay (or an AMQP redelivery) gets the same answer.
federation_inbound_txns = sa.Table(
    "federation_inbound_txns", metadata,
    sa.Column("origin", Id, primary_key=True),
    sa.Column("txn_id", Id, primary_key=True),
    sa.Column("response_json", sa.Text, nullable=False),
    sa.Column("received_ts", Ts, nullable=False),
    **_MYSQL,
)

# -- media ----------------------------------------------------------------------

# The content repository: our uploads and the cached media of other servers, keyed by
# their mxc:// URI. The bytes live in the media storage (storage/media_files.py).
media = sa.Table(
    "media", metadata,
    sa.Column("server_name", Id, primary_key=True),
    sa.Column("media_id", sa.String(255), primary_key=True),
    sa.Column("user_id", Id),  # the uploader, for our own media
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("upload_name", sa.String(512)),
    sa.Column("size", sa.BigInteger),  # null while pending (created, not yet uploaded)
    sa.Column("created_ts", Ts, nullable=False),
    sa.Column("uploaded_ts", Ts),  # null while pending
    sa.Column("expires_ts", Ts),  # a pending id's unused_expires_at
    # Stored after the legacy unauthenticated endpoints were frozen: not served there.
    sa.Column("authenticated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("media_pending", "user_id", "uploaded_ts"),
    **_MYSQL,
)

# -- push rules and notifications -----------------------------------------------

# One JSON document per user: their rules and edits to the defaults (core.push_rules.UserRules).
push_rules = sa.Table(
    "push_rules", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("rules", LongText, nullable=False),
    **_MYSQL,
)

# What push-rule evaluation decided for one local user and one event that notifies.
notifications = sa.Table(
    "notifications", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("event_id", Id, primary_key=True),
    sa.Column("room_id", Id, nullable=False),
    sa.Column("stream_ordering", sa.BigInteger, nullable=False),
    sa.Column("thread_id", Id, nullable=False),  # "main" outside threads
    sa.Column("actions", sa.Text, nullable=False),
    sa.Column("highlight", sa.Boolean, nullable=False),
    sa.Column("ts", Ts, nullable=False),
    sa.Index("notifications_user_room", "user_id", "room_id", "stream_ordering"),
    sa.Index("notifications_user_stream", "user_id", "stream_ordering"),
    **_MYSQL,
)

# How far the evaluator got: events after this position are evaluated again on start.
push_progress = sa.Table(
    "push_progress", metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("stream_ordering", sa.BigInteger, nullable=False),
    **_MYSQL,
)

# Push-gateway deliveries waiting for an http pusher (spec "Push Gateway API"): written
# after evaluation, off the send path, deleted once the gateway took them; `due_ts` is the
# next attempt (exponential backoff), so a restart resumes where the last process was.
push_queue = sa.Table(
    "push_queue", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("app_id", sa.String(64), nullable=False),
    sa.Column("pushkey_sha256", sa.String(64), nullable=False),
    sa.Column("event_id", Id, nullable=False),
    sa.Column("room_id", Id, nullable=False),
    sa.Column("stream_ordering", sa.BigInteger, nullable=False),
    sa.Column("due_ts", Ts, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Index("push_queue_due", "due_ts", "id"),
    sa.Index("push_queue_event", "event_id"),
    **_MYSQL,
)

# One row per user with an email pusher: the digest due (NULL: none pending) and the
# newest notification already mailed, so a restart neither loses nor repeats a digest.
email_digests = sa.Table(
    "email_digests", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("due_ts", Ts),
    sa.Column("mailed_upto", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Index("email_digests_due", "due_ts"),
    **_MYSQL,
)

# Spec "Pushers": unique per (app_id, pushkey, user). A pushkey may take 512 bytes, too
# long for InnoDB's key limit next to the others, so the key holds its SHA-256.
pushers = sa.Table(
    "pushers", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("app_id", sa.String(64), primary_key=True),
    sa.Column("pushkey_sha256", sa.String(64), primary_key=True),
    sa.Column("pushkey", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the pusher as GET /pushers shows it
    sa.Column("created_ts", Ts, nullable=False),
    **_MYSQL,
)

# -- administration and the IM features (issue 12) ------------------------------

AutoId = sa.BigInteger().with_variant(sa.Integer, "sqlite")

# Per-user rate-limit overrides set through the admin API (0/0 = not limited).
ratelimit_overrides = sa.Table(
    "ratelimit_overrides", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("messages_per_second", sa.Float, nullable=False),
    sa.Column("burst_count", sa.Integer, nullable=False),
    **_MYSQL,
)

# -- application services (spec: "Application Service API") --------------------------

# Per service: events up to stream_position are in a transaction (sent or waiting in
# appservice_txns); last_txn_id numbers the next one. Catch-up after a restart starts here.
appservice_state = sa.Table(
    "appservice_state", metadata,
    sa.Column("as_id", Id, primary_key=True),
    sa.Column("stream_position", sa.BigInteger, nullable=False),
    sa.Column("last_txn_id", sa.BigInteger, nullable=False),
    **_MYSQL,
)

# Transactions built but not yet acknowledged: resent with the same txn id until the
# service answers 200 (spec: the txn id is how the service deduplicates).
appservice_txns = sa.Table(
    "appservice_txns", metadata,
    sa.Column("as_id", Id, primary_key=True),
    sa.Column("txn_id", sa.BigInteger, primary_key=True),
    sa.Column("body", LongText, nullable=False),  # the JSON body, serialised once
    **_MYSQL,
)

# Rooms an application service published in its own network's directory
# (spec: PUT /directory/list/appservice/{networkId}/{roomId}).
appservice_room_list = sa.Table(
    "appservice_room_list", metadata,
    sa.Column("as_id", Id, primary_key=True),
    sa.Column("network_id", Id, primary_key=True),
    sa.Column("room_id", Id, primary_key=True),
    **_MYSQL,
)

# -- the AI assistant: one row per patient message handed to an AI service ----------
ai_interaction_records = sa.Table(
    "ai_interaction_records", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("room_id", Id, nullable=False),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("user_event_id", Id, nullable=False),
    sa.Column("reply_event_id", Id, nullable=True),
    sa.Column("provider", sa.String(255), nullable=False),
    sa.Column("request", LongText, nullable=False),
    sa.Column("response", LongText, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending | success | failed
    sa.Column("duration_ms", sa.BigInteger, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_ts", Ts, nullable=False),
    sa.Column("updated_ts", Ts, nullable=False),
    sa.UniqueConstraint("room_id", "user_event_id", name="ai_records_message"),
    sa.Index("ai_records_room", "room_id", "id"),
    sa.Index("ai_records_status", "status", "id"),
    **_MYSQL,
)

# The last sync position each device acknowledged over the WebSocket transport: a
# reconnect without `since` resumes here, so what was sent but not acknowledged is sent
# again (docs/websocket.md).
sync_acks = sa.Table(
    "sync_acks", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("position", sa.String(255), nullable=False),
    sa.Column("updated_ts", Ts, nullable=False),
    **_MYSQL,
)

# Simplified sliding sync (MSC4186) connection states, named by the `pos` a client sends
# back: rooms already given to the connection and the lists' last windows. A state is
# written only when these change; the newest few per connection are kept.
sliding_sync_states = sa.Table(
    "sliding_sync_states", metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("conn_id", sa.String(255), nullable=False),
    sa.Column("state_id", sa.String(32), nullable=False),
    sa.Column("sent", LongText, nullable=False),
    sa.Column("lists", LongText, nullable=False),
    sa.Column("created_ts", Ts, nullable=False),
    sa.Index("sliding_sync_states_conn", "user_id", "device_id", "conn_id", "state_id", unique=True),
    **_MYSQL,
)

# Server-side search (spec "Server Side Search"): one row per searchable timeline event
# (m.room.message body, m.room.name name, m.room.topic topic), written after commit by the
# search indexer; `tokens` is homeserver/core/search_text.py's form. The full-text index
# itself is dialect-specific and made by migration 0014_search only: a FULLTEXT index on
# `tokens` (MariaDB), or the FTS5 table `event_search_fts` kept in step by triggers (SQLite).
# The indexer's progress mark is the "search" row of push_progress.
event_search = sa.Table(
    "event_search", metadata,
    sa.Column("stream_ordering", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", Id, nullable=False),
    sa.Column("room_id", Id, nullable=False),
    sa.Column("sender", Id, nullable=False),
    sa.Column("key", sa.String(32), nullable=False),
    sa.Column("origin_server_ts", Ts, nullable=False),
    sa.Column("tokens", LongText, nullable=False),
    sa.Index("event_search_room", "room_id", "stream_ordering"),
    sa.Index("event_search_event", "event_id"),
    **_MYSQL,
)

# Spec "Reporting content": reports of events, rooms and users, kept for the server's admins.
reports = sa.Table(
    "reports", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "event" | "room" | "user"
    sa.Column("reporter", Id, nullable=False),
    sa.Column("room_id", Id),
    sa.Column("event_id", Id),
    sa.Column("target_user_id", Id),
    sa.Column("reason", sa.Text),
    # -100 (most offensive) to 0: dropped from the spec in v1.18, still sent by some clients
    sa.Column("score", sa.Integer),
    sa.Column("received_ts", Ts, nullable=False),
    sa.Index("reports_received", "received_ts"),
    **_MYSQL,
)

# Spec "Token-authenticated registration": tokens admins issue (the admin API manages them);
# `completed` counts registrations that used one, `uses_allowed` NULL is unlimited.
# Single-use login tokens minted by POST /login/get_token (stored as their SHA-256).
login_tokens = sa.Table(
    "login_tokens", metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("expires_ts", Ts, nullable=False),
    sa.Index("login_tokens_expiry", "expires_ts"),
    **_MYSQL,
)

registration_tokens = sa.Table(
    "registration_tokens", metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("uses_allowed", sa.Integer),
    sa.Column("pending", sa.Integer, nullable=False, default=0),
    sa.Column("completed", sa.Integer, nullable=False, default=0),
    sa.Column("expiry_time", Ts),
    **_MYSQL,
)

# Each user's server-notices room (created on first notice).
server_notice_rooms = sa.Table(
    "server_notice_rooms", metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("room_id", Id, nullable=False),
    **_MYSQL,
)

# Admin broadcasts: the notice, and how far it got (the last user id done, in id order),
# so a restart resumes where the previous process stopped.
broadcasts = sa.Table(
    "broadcasts", metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column("sender", Id, nullable=False),
    sa.Column("content", LongText, nullable=False),
    sa.Column("admins_only", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("sent", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("cursor", Id),
    sa.Column("created_ts", Ts, nullable=False),
    sa.Column("finished_ts", Ts),
    **_MYSQL,
)

# Custom events reported by clients (POST /_tricolor/client/v1/events).
client_events = sa.Table(
    "client_events", metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("type", Id, nullable=False),
    sa.Column("payload", LongText, nullable=False),
    sa.Column("client_ts", Ts),
    sa.Column("received_ts", Ts, nullable=False),
    sa.Index("client_events_user", "user_id", "id"),
    sa.Index("client_events_type", "type", "id"),
    **_MYSQL,
)

# Rooms an admin blocked: nobody local may join them again.
blocked_rooms = sa.Table(
    "blocked_rooms", metadata,
    sa.Column("room_id", Id, primary_key=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("ts", Ts, nullable=False),
    **_MYSQL,
)

# Room deletions / dissolutions and their progress (GET .../delete_status).
room_deletions = sa.Table(
    "room_deletions", metadata,
    sa.Column("delete_id", sa.String(64), primary_key=True),
    sa.Column("room_id", Id, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("result", LongText),
    sa.Column("error", sa.Text),
    sa.Column("created_ts", Ts, nullable=False),
    sa.Index("room_deletions_room", "room_id"),
    **_MYSQL,
)

# Media an admin quarantined: never served again.
quarantined_media = sa.Table(
    "quarantined_media", metadata,
    sa.Column("server_name", Id, primary_key=True),
    sa.Column("media_id", sa.String(255), primary_key=True),
    sa.Column("quarantined_by", Id, nullable=False),
    **_MYSQL,
)

# Redacted events whose original content is still stored, and when it is to go
# (`recall.content_retention_ms` > 0); with the default 0 it goes in the redaction's commit.
pending_purges = sa.Table(
    "pending_purges", metadata,
    sa.Column("event_id", Id, primary_key=True),
    sa.Column("purge_ts", Ts, nullable=False),
    sa.Index("pending_purges_ts", "purge_ts"),
    **_MYSQL,
)
