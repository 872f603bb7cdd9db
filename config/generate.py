"""``generate-config``: write a complete, commented config for a new server.

Every server generated here gets its own data directory (keys, sqlite file,
media, TLS certificate) named after it, so several can be generated next to each
other and run side by side as long as their ports differ.

With ``federation_port`` the server gets two sockets: the client API on plain
HTTP and federation on HTTPS (Matrix peers, Synapse included, only federate over
TLS). Its certificate comes from a shared test CA (``ca_dir``) that every member
of a test network trusts through ``federation.ca_file``, or is self-signed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence

import attrs

from config.errors import ConfigError
from config.keys import ensure_signing_key, ensure_token_secret
from config.loader import load_config
from config.schema import (
    KNOWN_RESOURCES,
    DatabaseConfig,
    FederationConfig,
    HomeserverConfig,
    LimitsConfig,
    ListenerConfig,
    MediaConfig,
)
from config.tls import CA_CERT_NAME, create_self_signed, ensure_ca, issue_server_cert, split_host

_UNSAFE_DIR_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def generate_config(
    server_name: str,
    output: str,
    port: int = 8008,
    data_dir: str | None = None,
    database_url: str | None = None,
    host: str = "127.0.0.1",
    force: bool = False,
    *,
    federation_port: int | None = None,
    tls: bool = False,
    ca_dir: str | None = None,
    static_map: Mapping[str, str] | None = None,
    amqp: Mapping[str, str] | None = None,
    ip_range_whitelist: Sequence[str] = (),
) -> str:
    """Write a config for a new server to ``output`` and create its secrets; return the path.

    ``data_dir`` defaults to ``<dir of output>/data-<server name>``; the database
    defaults to sqlite inside it. An existing ``output`` is only replaced with
    ``force=True``; existing key files are always kept (losing a signing key
    breaks federation with every server that has seen it).

    Listeners: without ``federation_port``, one socket on ``port`` serves client and
    federation (over TLS when ``tls``). With it, ``port`` serves the client API over
    plain HTTP and ``federation_port`` serves federation over TLS (``tls`` is implied).
    The certificate (``<data_dir>/tls/server.crt``, reissued on every call) is signed
    by the CA in ``ca_dir`` (created there if absent; ``federation.ca_file`` then
    names it) or self-signed without ``ca_dir``. ``static_map`` (server name ->
    ``host:port``) becomes ``federation.static_map``. ``amqp`` (``url``,
    ``management_url``, ``advertise_url``) fills ``rabbitmq`` and sets
    ``federation.transport: amqp``. ``ip_range_whitelist`` (CIDRs) is written as is: a
    test network on one machine passes loopback, which the blacklist denies by default.
    """
    output = os.path.abspath(os.path.expanduser(output))
    if os.path.exists(output) and not force:
        raise ConfigError("already exists; choose another path or pass --force", file=output)
    config_dir = os.path.dirname(output)
    if data_dir is None:
        data_dir = os.path.join(config_dir, "data-" + _UNSAFE_DIR_CHARS.sub("_", server_name))
    data_dir = os.path.normpath(os.path.join(config_dir, os.path.expanduser(data_dir)))
    if ca_dir is not None:
        ca_dir = os.path.normpath(os.path.join(config_dir, os.path.expanduser(ca_dir)))

    def shown(path: str) -> str:
        # Paths inside the config's directory are written relative, so the pair can be moved.
        rel = os.path.relpath(path, config_dir)
        return path if rel.startswith("..") else "./" + rel

    if database_url is None:
        database_url = f"sqlite+aiosqlite:///{shown(os.path.join(data_dir, 'homeserver.db'))}"
    use_tls = tls or federation_port is not None
    cert_path = os.path.join(data_dir, "tls", "server.crt")
    key_path = os.path.join(data_dir, "tls", "server.key")
    ca_cert = os.path.join(ca_dir, CA_CERT_NAME) if ca_dir is not None else None
    tls_paths = (shown(cert_path), shown(key_path)) if use_tls else None
    if federation_port is None:
        listeners = [_Listener(host, port, ListenerConfig().resources, tls_paths)]
    else:
        listeners = [
            _Listener(host, port, ("client",), None),
            _Listener(host, federation_port, ("federation",), tls_paths),
        ]
    text = _render(
        server_name=server_name,
        listeners=listeners,
        database_url=database_url,
        signing_key_path=shown(os.path.join(data_dir, "signing.key")),
        token_secret_path=shown(os.path.join(data_dir, "token.secret")),
        media_store_path=shown(os.path.join(data_dir, "media")),
        shared_secret=secrets.token_urlsafe(32),
        ca_file=shown(ca_cert) if ca_cert is not None else None,
        static_map=dict(static_map or {}),
        amqp=dict(amqp or {}),
        ip_range_whitelist=tuple(ip_range_whitelist),
    )

    os.makedirs(config_dir, exist_ok=True)
    tmp = os.path.join(config_dir, f".{os.path.basename(output)}.{secrets.token_hex(6)}.tmp")
    # 0600: the file holds the registration shared secret.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # Validate before anything is created: bad arguments surface as the loader's
        # precise errors (e.g. "listeners[0].port: must be a port number ...").
        config = load_config(tmp, env={})
        ensure_signing_key(config.signing_key_path)
        ensure_token_secret(config.token_secret_path)
        if use_tls:
            _make_certificate(config.server_name, ca_dir, cert_path, key_path)
        if force:
            os.replace(tmp, output)
        else:
            os.link(tmp, output)  # fails instead of overwriting a file created meanwhile
    except ConfigError as exc:
        file = output if exc.file in (None, tmp) else exc.file  # a CA or key file: name it
        raise ConfigError(exc.problem, file=file, key=exc.key) from None
    except FileExistsError:
        raise ConfigError(
            "already exists; choose another path or pass --force", file=output
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


def _make_certificate(server_name: str, ca_dir: str | None, cert: str, key: str) -> None:
    host = split_host(server_name)
    if ca_dir is None:
        create_self_signed(host, cert, key)
    else:
        ca_cert, ca_key = ensure_ca(ca_dir)
        issue_server_cert(ca_cert, ca_key, host, cert, key)


@attrs.frozen
class _Listener:
    host: str
    port: int
    resources: tuple[str, ...]
    tls: tuple[str, str] | None  # (certificate, private key) when the socket serves TLS


def _q(value: str | None) -> str:
    # JSON strings are valid YAML double-quoted scalars; this quotes anything safely.
    return "null" if value is None else json.dumps(value)


def _render(
    *,
    server_name: str,
    listeners: list[_Listener],
    database_url: str,
    signing_key_path: str,
    token_secret_path: str,
    media_store_path: str,
    shared_secret: str,
    ca_file: str | None,
    static_map: dict[str, str],
    amqp: dict[str, str],
    ip_range_whitelist: tuple[str, ...] = (),
) -> str:
    database = DatabaseConfig()
    limits = LimitsConfig()
    federation = FederationConfig()
    media = MediaConfig()
    top = {f.name: f.default for f in attrs.fields(HomeserverConfig)}
    return f"""\
# Tricolor homeserver configuration for {server_name}.
#
# Relative paths are resolved against the directory of this file. Any setting
# can be overridden from the environment: TRICOLOR_<KEY> for top-level keys,
# TRICOLOR_<SECTION>__<KEY> for keys in a section (TRICOLOR_LIMITS__MAX_UPLOAD_BYTES),
# and the short forms TRICOLOR_PORT, TRICOLOR_HOST, TRICOLOR_DATABASE_URL,
# TRICOLOR_REDIS_URL, TRICOLOR_RABBITMQ_URL, TRICOLOR_REGISTRATION_ENABLED.

# The name in every user, room and alias id (@alice:{server_name}). Peers reach
# this server by it, so it cannot change once users and rooms exist.
server_name: {_q(server_name)}

# The URL clients use for the client API, if it differs from http(s)://server_name
# (e.g. behind a reverse proxy). null: not advertised.
public_baseurl: null

# Addresses never connected to by any outbound request: federation (servers, their
# .well-known, media redirects), push gateways, URL previews; checked on the address
# actually connected to, after DNS and on every redirect (protection against server-side
# request forgery). The blacklist defaults to Synapse's (private, loopback, link-local,
# CGNAT, multicast, IPv6 unique-local...); the whitelist wins over it. A test network on
# one machine must allow loopback here (testnet does): ['127.0.0.0/8', '::1/128'].
ip_range_whitelist: {_render_list(ip_range_whitelist)}

# HTTP sockets. Resources choose the APIs mounted on each socket:
# {", ".join(KNOWN_RESOURCES)}.
# Peers only federate over HTTPS: the socket serving federation needs TLS here
# or in a reverse proxy in front of it.
listeners:
{"".join(_render_listener(listener) for listener in listeners)}
database:
  # sqlite+aiosqlite:///<file> (embedded, one process) or
  # mysql+asyncmy://user:password@host:3306/dbname (MariaDB, needed for several workers).
  url: {_q(database_url)}
  pool_size: {database.pool_size}
  # Log every SQL statement (debugging only).
  echo: {_yaml_bool(database.echo)}

registration:
  # Anyone may create an account through the client API when true.
  enabled: true
  # Lets `tricolor register-user` create accounts (admins included) even when
  # registration is closed. Keep it secret; null disables it.
  shared_secret: {_q(shared_secret)}
  # Registration needs a token from an admin (m.login.registration_token).
  requires_token: false
  # register?kind=guest: guest accounts with the spec's limited API.
  allow_guests: true

login_via_existing_session:
  # POST /login/get_token: a signed-in device gets a single-use login token for a new
  # device (sign in by QR code); the m.get_login_token capability says whether it is on.
  enabled: false
  require_ui_auth: true
  token_timeout_ms: 300000

user_directory:
  # false: a search finds only users who share a room with the searcher or are in a
  # public room; true: every local user too.
  search_all_users: false

limits:
  max_request_bytes: {limits.max_request_bytes}
  # 65536 is the Matrix limit for a whole event; peers reject larger ones.
  max_event_bytes: {limits.max_event_bytes}
  # The largest file a user may upload, and a remote file we will fetch, in bytes.
  max_upload_bytes: {limits.max_upload_bytes}
  # Events an incremental /sync reads at once across all of a user's rooms.
  incremental_sync_scan: {limits.incremental_sync_scan}

redis:
  # e.g. redis://127.0.0.1:6379/0 — shares presence, typing, rate limits and
  # sync wake-ups between worker processes. null: everything stays in process.
  url: null

workers:
  # With redis.url: `run --workers N`, or one `run --worker-name NAME` per process
  # (docs/workers.md). How long a crashed worker still holds its rooms, in ms:
  lease_ms: 15000
  # Where this worker takes room writes the others forward (reachable by them).
  internal_host: 127.0.0.1

rabbitmq:
  # e.g. amqp://guest:guest@127.0.0.1:5672/ — queues outgoing federation per
  # destination on a broker (and receives from peers' shovels). null: HTTPS only.
  url: {_q(amqp.get("url"))}
  # The broker's management API (shovels are made through it), credentials in the URL.
  management_url: {_q(amqp.get("management_url"))}
  # How peers' brokers reach ours; advertised in our signed key response. null: not advertised.
  advertise_url: {_q(amqp.get("advertise_url"))}
  # The exchange peers' shovels deliver into.
  inbound_exchange: tricolor.fed.in
  # Messages a shovel has in flight to a peer at once.
  shovel_prefetch: 50

federation:
  # Talk to other homeservers (false: a closed, single-server installation).
  enabled: {_yaml_bool(federation.enabled)}
  # Check peers' TLS certificates on outgoing federation. Only an explicit false
  # turns this off (local experiments only); prefer ca_file for a test CA.
  verify_tls: {_yaml_bool(federation.verify_tls)}
  # A PEM file of extra CAs to trust for peers (a test network's CA). null: system CAs only.
  ca_file: {_q(ca_file)}
  # server_name -> "host:port", skipping .well-known/SRV/DNS discovery for those
  # names (test networks).
  static_map:{_render_map(static_map)}
  # Notary servers to ask for keys of unreachable servers; [] fetches from each origin.
  trusted_key_servers: []
  # https (the Matrix standard) or amqp: through our broker and a shovel to every peer that
  # advertises AMQP (HTTPS for the others, and while our broker is down).
  transport: {_q("amqp" if amqp.get("url") else federation.transport)}
  # Per peer: {{hs2.example: {{transport: amqp, amqp_uri: "amqp://...", exchange: tricolor.fed.in}}}}
  peers: {{}}
  # Servers we federate with (exact names). null: everyone not denied; []: nobody.
  domain_whitelist: null
  # Servers we never federate with.
  domain_blacklist: []

voip:
  # TURN servers for calls (GET /voip/turnServer); [] answers with no server.
  turn_uris: []
  # coturn's static-auth-secret: clients get time-limited credentials derived from it.
  turn_shared_secret: null
  # Fixed credentials instead, for a TURN server without a shared secret.
  turn_username: null
  turn_password: null
  turn_user_lifetime_ms: 86400000
  turn_allow_guests: true

well_known:
  # m.homeserver.base_url in /.well-known/matrix/client (null: public_baseurl, else the request's host).
  client_base_url: null
  identity_server: null
  # /.well-known/matrix/support: a help page and admin contacts; none set answers 404.
  support_page: null
  admin_matrix_ids: []
  admin_emails: []

# Ed25519 key that signs events and federation requests; created if missing.
# Back it up: peers remember it.
signing_key_path: {_q(signing_key_path)}
# Secret for signing access tokens; created if missing.
token_secret_path: {_q(token_secret_path)}
# Uploaded files, thumbnails and the cache of other servers' media.
media_store_path: {_q(media_store_path)}

media:
  # Images with more pixels are not thumbnailed (protects against decompression bombs).
  max_image_pixels: {media.max_image_pixels}
  # Made for every uploaded image; other sizes are made on request. method: crop or scale.
  thumbnail_sizes:
{_render_thumbnail_sizes(media)}
  # Media ids from POST /_matrix/media/v1/create a user may hold before uploading to them.
  max_pending_uploads: {media.max_pending_uploads}
  # How long such an id waits for its upload, in milliseconds.
  unused_expiry_ms: {media.unused_expiry_ms}
  # A failed fetch of another server's media is answered from memory this long (ms).
  remote_failure_cache_ms: {media.remote_failure_cache_ms}
  # Freeze the legacy unauthenticated downloads (spec v1.11): media stored while this is
  # true is served only on /_matrix/client/v1/media (access token) and to other servers.
  enable_authenticated_media: {str(media.enable_authenticated_media).lower()}
  # GET /_matrix/client/v1/media/preview_url; pages come only from addresses that
  # ip_range_blacklist (default: private, loopback, link-local...) does not forbid.
  url_preview_enabled: {str(media.url_preview_enabled).lower()}
  url_preview_max_bytes: {media.url_preview_max_bytes}
  url_preview_cache_ms: {media.url_preview_cache_ms}

# Room version for new rooms: any stable version, "1" to "12".
default_room_version: {_q(top["default_room_version"])}
# How long after sending a message it may still be recalled (unsent), in milliseconds.
recall_window_ms: {top["recall_window_ms"]}
# Longer windows for some msgtypes (WeChat lets files be recalled for 3 hours).
recall_windows_ms:
  m.file: 10800000
  m.video: 10800000
# How long a recalled message's original content stays in the database (0: gone at once).
recall_content_retention_ms: {top["recall_content_retention_ms"]}
# The user that owns every user's server-notices room (admin broadcasts come from it).
server_notices_localpart: {_q(top["server_notices_localpart"])}

# Rate limits (token buckets, Synapse's names): burst_count actions at once, refilled at
# per_second. Admins are never limited; per-user overrides through the admin API. Held in
# Redis when redis.url is set (shared by all workers). rc_enabled: false turns all off.
rc_enabled: true
rc_message: {{per_second: 0.2, burst_count: 10}}
rc_registration: {{per_second: 0.17, burst_count: 3}}
rc_login:
  address: {{per_second: 0.17, burst_count: 3}}
  account: {{per_second: 0.17, burst_count: 3}}
  failed_attempts: {{per_second: 0.17, burst_count: 3}}
rc_joins:
  local: {{per_second: 0.1, burst_count: 10}}
  remote: {{per_second: 0.01, burst_count: 10}}
rc_invites:
  per_room: {{per_second: 0.3, burst_count: 10}}
  per_user: {{per_second: 0.003, burst_count: 5}}
rc_room_creation: {{per_second: 0.05, burst_count: 10}}
rc_media_create: {{per_second: 10.0, burst_count: 50}}
rc_client_events: {{per_second: 5.0, burst_count: 50}}
rc_registration_token_validity: {{per_second: 0.1, burst_count: 5}}
rc_3pid_validation: {{per_second: 0.003, burst_count: 5}}
# A user's override is read again after this long, so a change applies on every worker.
ratelimit_override_ttl_ms: 10000
# CRITICAL, ERROR, WARNING, INFO or DEBUG.
log_level: {top["log_level"]}
"""


def _render_listener(listener: _Listener) -> str:
    cert, key = listener.tls if listener.tls is not None else (None, None)
    tls_comment = (
        "    # Terminate TLS here instead of in a reverse proxy (both paths are then required).\n"
        if listener.tls is None
        else ""
    )
    return (
        f"  - host: {_q(listener.host)}\n"
        f"    port: {listener.port}\n"
        f"    resources: [{', '.join(listener.resources)}]\n"
        f"{tls_comment}"
        f"    tls: {_yaml_bool(listener.tls is not None)}\n"
        f"    tls_certificate_path: {_q(cert)}\n"
        f"    tls_private_key_path: {_q(key)}\n"
    )


def _render_thumbnail_sizes(media: MediaConfig) -> str:
    return "\n".join(
        f"    - {{width: {s.width}, height: {s.height}, method: {s.method}}}"
        for s in media.thumbnail_sizes
    )


def _render_map(mapping: dict[str, str]) -> str:
    if not mapping:
        return " {}"
    return "".join(f"\n    {_q(key)}: {_q(value)}" for key, value in mapping.items())


def _render_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(_q(item) for item in items) + "]"


def _yaml_bool(value: bool) -> str:
    return "true" if value else "false"
