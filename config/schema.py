"""Typed, frozen configuration sections.

The loader (``config.loader``) fills these from YAML and the environment; the rest
of the server only ever reads them. Each field's value check lives in its
metadata so that the loader can report it with the exact key path
(``listeners[0].port``) and attrs can enforce the same rule when code builds a
config directly (tests, ``attrs.evolve``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from config.paths import resolve_database_url, resolve_path
from homeserver.core.ids import is_valid_server_name
from homeserver.core.ip_ranges import DEFAULT_IP_RANGE_BLACKLIST, parse_network

# Metadata keys read by the loader.
CHECK = "tricolor.check"  # Callable[[value], str | None]: the problem, or None when fine
RESOLVE = "tricolor.resolve"  # Callable[[value, base_dir], value]: make paths absolute
FROM_FILE = "tricolor.from_file"  # False: set by the loader, not accepted as a YAML key
CHECK_ITEM = "tricolor.check_item"  # Check for each item of a list, or each value of a mapping
CHECK_KEY = "tricolor.check_key"  # Check for each key of a mapping

# Every stable room version (homeserver.core.room_versions.KNOWN_ROOM_VERSIONS).
SUPPORTED_ROOM_VERSIONS = tuple(str(n) for n in range(1, 13))
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
LOG_FORMATS = ("text", "json")
# What a listener may serve; extend this when a new sub-app appears.
KNOWN_RESOURCES = ("client", "federation", "media", "keys", "metrics")
FEDERATION_TRANSPORTS = ("https", "amqp")
THUMBNAIL_METHODS = ("crop", "scale")

Check = Callable[[Any], str | None]


def item_path(name: str, key: int | str) -> str:
    """``trusted_key_servers[0]``, ``static_map['hs2.test']``: how one item is named in errors."""
    return f"{name}[{key}]" if isinstance(key, int) else f"{name}[{key!r}]"


def _validator(
    check: Check | None, check_item: Check | None, check_key: Check | None
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def run(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        name = attribute.name
        if isinstance(value, Mapping):
            for key, item in value.items():
                for item_check, checked in ((check_key, key), (check_item, item)):
                    problem = item_check(checked) if item_check is not None else None
                    if problem is not None:
                        raise ValueError(f"{item_path(name, key)}: {problem}")
        elif isinstance(value, tuple) and check_item is not None:
            for index, item in enumerate(value):
                problem = check_item(item)
                if problem is not None:
                    raise ValueError(f"{item_path(name, index)}: {problem}")
        problem = check(value) if check is not None else None
        if problem is not None:
            raise ValueError(f"{name}: {problem}")

    return run


def setting(
    default: Any = attrs.NOTHING,
    *,
    factory: Callable[[], Any] | None = None,
    check: Check | None = None,
    check_item: Check | None = None,
    check_key: Check | None = None,
    resolve: Callable[[Any, str], Any] | None = None,
    converter: Callable[[Any], Any] | None = None,
    from_file: bool = True,
) -> Any:
    """An ``attrs.field`` that also records how the loader validates and resolves it.

    ``check`` judges the whole value; ``check_item`` each list item or mapping value and
    ``check_key`` each mapping key, so errors can name the item (``static_map['hs2.test']``).
    """
    metadata = {
        CHECK: check,
        CHECK_ITEM: check_item,
        CHECK_KEY: check_key,
        RESOLVE: resolve,
        FROM_FILE: from_file,
    }
    validator = None
    if check is not None or check_item is not None or check_key is not None:
        validator = _validator(check, check_item, check_key)
    if factory is not None:
        return attrs.field(
            factory=factory, validator=validator, converter=converter, metadata=metadata
        )
    return attrs.field(default=default, validator=validator, converter=converter, metadata=metadata)


# ---- checks: each returns a short problem description, or None -------------------------


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"must be a port number from 1 to 65535, got {value}"


def _positive(value: int) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value}"


def _event_bytes(value: int) -> str | None:
    if 1 <= value <= 65_536:
        return None
    return f"must be from 1 to 65536 (the spec's event size limit), got {value}"


def _ip_range(value: str) -> str | None:
    try:
        parse_network(value)
    except ValueError:
        return f"{value!r} is not an IP address or CIDR range"
    return None


def _non_negative(value: int) -> str | None:
    return None if value >= 0 else f"must not be negative, got {value}"


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _server_name(value: str) -> str | None:
    if not is_valid_server_name(value):
        return (
            f"{value!r} is not a valid server name "
            "(expected a hostname or IP literal with an optional :port, e.g. 'hs1.example:8448')"
        )
    # The core regex accepts up to five digits; a port must also fit in 16 bits.
    host_end = value.rfind("]") if value.startswith("[") else -1
    _, colon, port = value[host_end + 1 :].rpartition(":")
    if colon and not 1 <= int(port) <= 65535:
        return f"{value!r} has port {port}, which is outside 1-65535"
    return None


def _host_port(value: str) -> str | None:
    """``host:port`` where a peer is reached: a hostname or IP literal and a required port."""
    if not is_valid_server_name(value):
        return (
            f"{value!r} is not host:port "
            "(expected a hostname or IP literal and a port, e.g. '127.0.0.1:8448')"
        )
    host_end = value.rfind("]") if value.startswith("[") else -1
    _, colon, port = value[host_end + 1 :].rpartition(":")
    if not colon:
        return f"{value!r} has no port (expected host:port, e.g. '127.0.0.1:8448')"
    if not 1 <= int(port) <= 65535:
        return f"{value!r} has port {port}, which is outside 1-65535"
    return None


def _transport(value: str) -> str | None:
    if value in FEDERATION_TRANSPORTS:
        return None
    return f"unknown transport {value!r} (use one of {', '.join(FEDERATION_TRANSPORTS)})"


def _room_version(value: str) -> str | None:
    if value in SUPPORTED_ROOM_VERSIONS:
        return None
    return f"unsupported room version {value!r} (supported: {', '.join(SUPPORTED_ROOM_VERSIONS)})"


def _log_level(value: str) -> str | None:
    if value.upper() in LOG_LEVELS:
        return None
    return f"unknown log level {value!r} (use one of {', '.join(LOG_LEVELS)})"


def _url(*schemes: str) -> Check:
    def check(value: str) -> str | None:
        scheme, sep, rest = value.partition("://")
        if sep and rest and scheme.lower() in schemes:
            return None
        return f"{value!r} is not a URL starting with {' or '.join(s + '://' for s in schemes)}"

    return check


_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


# The engines Tricolor ships drivers for; anything else would fail only when first used.
DATABASE_SCHEMES = ("sqlite+aiosqlite", "mysql+asyncmy")
_DATABASE_FORMS = "sqlite+aiosqlite:///FILE or mysql+asyncmy://USER:PASSWORD@HOST:PORT/DATABASE"


def _database_url(value: str) -> str | None:
    if not _URL_RE.match(value):
        return f"{value!r} is not a database URL (e.g. 'sqlite+aiosqlite:///./data/homeserver.db')"
    scheme, _, rest = value.partition("://")
    # Only the scheme is quoted back: the rest of the URL may hold a password.
    if scheme.lower() not in DATABASE_SCHEMES:
        return f"unsupported database {scheme + '://'!r}; use {_DATABASE_FORMS}"
    if scheme.lower().startswith("mysql") and not rest.partition("?")[0].partition("/")[2]:
        return f"names no database; use {_DATABASE_FORMS}"
    return None


def _resources(value: tuple[str, ...]) -> str | None:
    if not value:
        return "must name at least one resource"
    unknown = [r for r in value if r not in KNOWN_RESOURCES]
    if unknown:
        return f"unknown resource {unknown[0]!r} (known: {', '.join(KNOWN_RESOURCES)})"
    if len(set(value)) != len(value):
        return "lists a resource twice"
    if "metrics" in value and len(value) > 1:
        # /metrics says how busy the server is: its own port, kept off the public listener.
        return "metrics must be the only resource of its listener"
    return None


def _listeners(value: tuple[ListenerConfig, ...]) -> str | None:
    if not value:
        return "at least one listener is required"
    seen: set[tuple[str, int]] = set()
    for listener in value:
        if (listener.host, listener.port) in seen:
            return f"two listeners bind {listener.host}:{listener.port}"
        seen.add((listener.host, listener.port))
    return None


def _thumbnail_method(value: str) -> str | None:
    if value in THUMBNAIL_METHODS:
        return None
    return f"unknown thumbnail method {value!r} (use one of {', '.join(THUMBNAIL_METHODS)})"


def _thumbnail_sizes(value: tuple[ThumbnailSize, ...]) -> str | None:
    seen = {(s.width, s.height, s.method) for s in value}
    return None if len(seen) == len(value) else "lists a size twice"


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


# ---- sections ---------------------------------------------------------------------------


@attrs.frozen
class ListenerConfig:
    """One HTTP(S) socket and the sub-apps mounted on it."""

    host: str = setting("127.0.0.1", check=_non_empty)
    port: int = setting(8008, check=_port)
    resources: tuple[str, ...] = setting(("client", "federation"), check=_resources)
    tls: bool = setting(False)
    tls_certificate_path: str | None = setting(None, resolve=resolve_path)
    tls_private_key_path: str | None = setting(None, resolve=resolve_path)

    def __attrs_post_init__(self) -> None:
        if self.tls and not (self.tls_certificate_path and self.tls_private_key_path):
            raise ValueError(
                "tls is true, so tls_certificate_path and tls_private_key_path are required"
            )


@attrs.frozen
class DatabaseConfig:
    # Relative sqlite paths are made absolute by the loader; MariaDB URLs pass unchanged.
    url: str = setting(
        "sqlite+aiosqlite:///./data/homeserver.db",
        check=_database_url,
        resolve=resolve_database_url,
    )
    pool_size: int = setting(10, check=_positive)
    echo: bool = setting(False)


@attrs.frozen
class RegistrationConfig:
    enabled: bool = setting(True)
    # Lets admin tooling register users (Synapse's shared-secret registration) when set.
    shared_secret: str | None = setting(None, check=_non_empty)
    # Spec "Token-authenticated registration": registration needs a token admins issued.
    requires_token: bool = setting(False)
    # register?kind=guest (spec "Guest access"); on by default, as in Synapse.
    allow_guests: bool = setting(True)


@attrs.frozen
class VoipConfig:
    """Spec "Voice over IP": what GET /voip/turnServer hands out."""

    # e.g. "turn:turn.example.org:3478?transport=udp"; () = no TURN server (an empty answer).
    turn_uris: tuple[str, ...] = setting(())
    # coturn's `static-auth-secret` (its REST API): time-limited credentials are derived from it.
    turn_shared_secret: str | None = setting(None, check=_non_empty)
    # Fixed credentials instead, when the TURN server has no shared secret.
    turn_username: str | None = setting(None, check=_non_empty)
    turn_password: str | None = setting(None, check=_non_empty)
    turn_user_lifetime_ms: int = setting(86_400_000, check=_positive)
    turn_allow_guests: bool = setting(True)


@attrs.frozen
class WellKnownConfig:
    """Spec "Server Discovery" and "/.well-known/matrix/support"."""

    # m.homeserver.base_url in /.well-known/matrix/client; null: public_baseurl, else the request's host.
    client_base_url: str | None = setting(None, check=_url("http", "https"))
    identity_server: str | None = setting(None, check=_url("http", "https"))
    # /.well-known/matrix/support: a page and admin contacts (Matrix id and/or email).
    # Neither set: that path answers 404 as the spec says.
    support_page: str | None = setting(None, check=_url("http", "https"))
    admin_matrix_ids: tuple[str, ...] = setting(())
    admin_emails: tuple[str, ...] = setting(())


@attrs.frozen
class UserDirectoryConfig:
    # False: a search finds only users who share a room with the searcher or sit in a
    # public room. True: every local user as well (Synapse's `search_all_users`).
    search_all_users: bool = setting(False)


@attrs.frozen
class LoginViaExistingSessionConfig:
    """Spec "POST /_matrix/client/v1/login/get_token" (MSC3882): a signed-in device mints a
    short-lived, single-use `m.login.token` for another device (QR sign-in). Off by
    default, as in Synapse."""

    enabled: bool = setting(False)
    # The request must pass user-interactive auth (the account password) first.
    require_ui_auth: bool = setting(True)
    token_timeout_ms: int = setting(300_000, check=_positive)


@attrs.frozen
class LimitsConfig:
    max_request_bytes: int = setting(1_048_576, check=_positive)
    # Client requests for a bigger event are refused before any work; the spec caps
    # every PDU at 65536 bytes, so this may only be lowered.
    max_event_bytes: int = setting(65_536, check=_event_bytes)
    max_upload_bytes: int = setting(52_428_800, check=_positive)
    # An incremental /sync reads at most this many of the newest events of all the user's
    # rooms at once; rooms the read did not cover are then read one by one.
    incremental_sync_scan: int = setting(2000, check=_positive)


@attrs.frozen
class RedisConfig:
    # None: presence, typing and wake-ups stay in process (single-worker mode).
    url: str | None = setting(None, check=_url("redis", "rediss", "unix"))


def _worker_name(value: str | None) -> str | None:
    if value is None or re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
        return None
    return f"{value!r} is not a worker name (1-64 letters, digits, '.', '_', '-')"


@attrs.frozen
class WorkersConfig:
    """Several processes of one homeserver (docs/workers.md); needs redis.url."""

    # This process's name among the workers (give each process its own, e.g. with
    # TRICOLOR_WORKER_NAME or `run --worker-name`); None: a single process, not a worker.
    name: str | None = setting(None, check=_worker_name)
    # A worker silent this long (crashed) no longer holds back stream positions.
    lease_ms: int = setting(15_000, check=_positive)
    # Where this worker takes room writes forwarded by the others (a port of its own,
    # chosen at start and announced in Redis): an address the other workers can reach.
    internal_host: str = setting("127.0.0.1", check=_non_empty)


def _amqp_name(value: str) -> str | None:
    if value and len(value) <= 200 and re.fullmatch(r"[A-Za-z0-9._:-]+", value):
        return None
    return f"{value!r} is not a queue/exchange name (letters, digits, '.', '_', ':', '-')"


@attrs.frozen
class RabbitMQConfig:
    """Our own broker: outgoing federation queues per destination, shovels, our inbound queue."""

    # None: federation is sent over HTTPS only.
    url: str | None = setting(None, check=_url("amqp", "amqps"))
    # The management HTTP API of the same broker (shovels are made through it), credentials
    # in the URL, e.g. http://guest:guest@127.0.0.1:15672. Required when any peer uses amqp.
    management_url: str | None = setting(None, check=_url("http", "https"))
    # Where peers' shovels publish to reach us (the URI as *their* brokers can reach ours).
    # Advertised in our signed key response; None: we neither advertise nor consume.
    advertise_url: str | None = setting(None, check=_url("amqp", "amqps"))
    # The exchange peers' shovels publish into; our inbound queue is bound to it.
    inbound_exchange: str = setting("tricolor.fed.in", check=_amqp_name)
    # Messages a shovel has in flight to a peer: a backlog drains without flooding it.
    shovel_prefetch: int = setting(50, check=_positive)


def _bindings(value: tuple[str, ...]) -> str | None:
    if not value:
        return "needs at least one binding key (e.g. 'room.#')"
    for key in value:
        if not key or len(key) > 255 or re.search(r"\s", key):
            return f"{key!r} is not an AMQP topic binding key (e.g. 'room.#' or 'user.@bot:example.org')"
    return None


def _log_format(value: str) -> str | None:
    return None if value in LOG_FORMATS else f"must be one of {', '.join(LOG_FORMATS)}, got {value!r}"


@attrs.frozen
class EventBusConfig:
    """Every persisted event published to a RabbitMQ topic exchange for other services
    (bots, analytics, the AI assistant): README "Event bus". Uses ``rabbitmq.url``."""

    enabled: bool = setting(False)
    exchange: str = setting("tricolor.events", check=_amqp_name)
    # One durable queue per consumer group (``tricolor.events.<group>``), bound with these
    # topic keys, declared at start so nothing published is missed before a consumer connects.
    consumer_groups: Mapping[str, tuple[str, ...]] = setting(
        factory=dict, check_key=_amqp_name, check_item=_bindings,
    )
    # Messages waiting for the broker; beyond this the oldest are dropped (and counted)
    # rather than slowing sends down.
    buffer_size: int = setting(10_000, check=_positive)


@attrs.frozen
class PeerConfig:
    """How one peer is reached; static config overrides what the peer advertises."""

    transport: str = setting("https", check=_transport)
    # The peer's broker as our broker's shovel reaches it, and its inbound exchange. None:
    # taken from the peer's signed key response.
    amqp_uri: str | None = setting(None, check=_url("amqp", "amqps"))
    exchange: str | None = setting(None, check=_amqp_name)


@attrs.frozen
class FederationConfig:
    """Talking to other homeservers."""

    # False: no federation listener is served and nothing is sent to peers.
    enabled: bool = setting(True)
    # Check peers' TLS certificates on outgoing requests; only an explicit false turns it off.
    verify_tls: bool = setting(True)
    # A PEM bundle of extra CAs trusted for peers (a test network's CA), on top of the system's.
    ca_file: str | None = setting(None, check=_non_empty, resolve=resolve_path)
    # server_name -> "host:port": skips discovery (.well-known, SRV, DNS) for these names.
    static_map: Mapping[str, str] = setting(
        factory=dict, check_key=_server_name, check_item=_host_port
    )
    # Notary servers asked for keys of servers that cannot be reached; () = ask each origin.
    trusted_key_servers: tuple[str, ...] = setting((), check_item=_server_name)
    # How transactions travel by default: "https" (the Matrix standard) or "amqp": through
    # our broker and a shovel to every peer that advertises an AMQP inbound endpoint (or is
    # configured under `peers`); HTTPS for the others and whenever our broker is down.
    transport: str = setting("https", check=_transport)
    # Per-peer overrides of the above: {server_name: {transport, amqp_uri, exchange}}.
    peers: Mapping[str, PeerConfig] = setting(factory=dict, check_key=_server_name)
    # Servers we federate with, by exact name; unset (null) = every server not denied,
    # an empty list = no server at all. Checked on every request in and out.
    domain_whitelist: tuple[str, ...] | None = setting(None, check_item=_server_name)
    # Servers we never federate with (checked before the allow list).
    domain_blacklist: tuple[str, ...] = setting((), check_item=_server_name)


@attrs.frozen
class ThumbnailSize:
    """One thumbnail made for every uploaded image (content repository: Thumbnails)."""

    width: int = setting(check=_positive)
    height: int = setting(check=_positive)
    method: str = setting("scale", check=_thumbnail_method)


# The sizes the spec says servers SHOULD produce (client-server API, Thumbnails).
DEFAULT_THUMBNAIL_SIZES = (
    ThumbnailSize(32, 32, "crop"),
    ThumbnailSize(96, 96, "crop"),
    ThumbnailSize(320, 240, "scale"),
    ThumbnailSize(640, 480, "scale"),
    ThumbnailSize(800, 600, "scale"),
)


def _accel_prefix(value: str) -> str | None:
    if value.startswith("/") and value.endswith("/") and not re.search(r"[\s?#]", value):
        return None
    return f"must be a URI path starting and ending with '/' (e.g. /_tricolor_media/), got {value!r}"


@attrs.frozen
class MediaConfig:
    """The content repository; uploads are capped by limits.max_upload_bytes, files live
    under media_store_path."""

    # Images with more pixels are never decoded (decompression bombs): no thumbnail.
    max_image_pixels: int = setting(32_000_000, check=_positive)
    thumbnail_sizes: tuple[ThumbnailSize, ...] = setting(
        DEFAULT_THUMBNAIL_SIZES, check=_thumbnail_sizes
    )
    # POST /media/v1/create ids a user may hold before uploading to them (then 429).
    max_pending_uploads: int = setting(10, check=_positive)
    # How long an id from /create waits for its upload (the spec recommends 24 hours).
    unused_expiry_ms: int = setting(86_400_000, check=_positive)
    # How long a failed fetch of another server's media is answered from memory (the same
    # error) before the origin is asked again; 0: ask every time.
    remote_failure_cache_ms: int = setting(30_000, check=_non_negative)
    # The spec v1.11 "freeze" (Synapse's enable_authenticated_media): media stored while this
    # is on is not served by the legacy unauthenticated /_matrix/media/v3/download|thumbnail
    # (404), only by /_matrix/client/v1/media and to peers; media from before stays served.
    enable_authenticated_media: bool = setting(True)
    # GET /media/preview_url: off by default, as in Synapse (404 M_UNRECOGNIZED). Pages are
    # fetched only from addresses ip_range_blacklist/whitelist allow.
    url_preview_enabled: bool = setting(False)
    # The most of a page (or image) read for a preview (Synapse's max_spider_size).
    url_preview_max_bytes: int = setting(10_000_000, check=_positive)
    # Previews are kept per (URL, ts rounded down to this) and for this long.
    url_preview_cache_ms: int = setting(3_600_000, check=_positive)
    # Behind nginx: answer downloads with `X-Accel-Redirect: <prefix><key>` and no body, and
    # let nginx send the file from media_store_path (an `internal` location with
    # `alias <media_store_path>/`, see contrib/nginx/). null: the server sends the bytes.
    x_accel_redirect_prefix: str | None = setting(None, check=_accel_prefix)


@attrs.frozen
class EmailConfig:
    """Email notifications (pushers of kind "email"): a digest of unread messages."""

    # None: email pushers can be set but no mail is sent.
    smtp_host: str | None = setting(None, check=_non_empty)
    smtp_port: int = setting(25, check=_port)
    smtp_user: str | None = setting(None, check=_non_empty)
    smtp_password: str | None = setting(None, check=_non_empty)
    smtp_starttls: bool = setting(False)
    notif_from: str = setting("Tricolor <noreply@localhost>", check=_non_empty)
    # A digest is sent this long after the first unread notification, unless read meanwhile.
    notif_delay_ms: int = setting(600_000, check=_non_negative)


def _resolve_paths(value: tuple[str, ...], base_dir: str) -> tuple[str, ...]:
    return tuple(resolve_path(v, base_dir) for v in value)


@attrs.frozen
class AppServicesConfig:
    """Application services (spec: "Application Service API"): their registration files,
    checked at start-up, and how transactions to them are retried."""

    config_files: tuple[str, ...] = setting((), check_item=_non_empty, resolve=_resolve_paths)
    # Exponential backoff between attempts at a transaction: min, doubling up to max
    # (Synapse: 2^n s capped at 512 s). Tests lower both.
    retry_min_ms: int = setting(1_000, check=_positive)
    retry_max_ms: int = setting(512_000, check=_positive)
    # How long one transaction (and one query) may take before it counts as failed.
    request_timeout_ms: int = setting(30_000, check=_positive)


@attrs.frozen
class AiAssistantConfig:
    """The AI assistant run inside the homeserver process (``tricolor ai-assistant``
    runs it on its own instead): the assistant's own config file, or None for off."""

    config_file: str | None = setting(None, check=_non_empty, resolve=resolve_path)
    # The assistant's user (its registration's sender_localpart). When an application
    # service with that sender is registered (embedded or its own process), a group that
    # opts in (`tricolor.ai`) gets it invited and given the AI_ASSISTANT role.
    user_localpart: str = setting("ai-assistant", check=_non_empty)


@attrs.frozen
class WebClientConfig:
    """The browser client (web/, issue 16), served on a port of its own: a page on the
    client API's origin could read every token through one XSS, so it never shares it."""

    # null: not served.
    port: int | None = setting(None, check=_port)
    host: str = setting("127.0.0.1", check=_non_empty)
    # The built client (index.html and assets/); null: web/dist of this checkout.
    dist_path: str | None = setting(None, check=_non_empty, resolve=resolve_path)
    # The homeserver URL the login form starts with; null: public_baseurl, else this
    # server's first client listener.
    server_url: str | None = setting(None, check=_url("http", "https"))
    # Extra Content-Security-Policy connect-src sources besides this server's own URL:
    # the defaults let a user sign in to any server over TLS; [] pins the client to ours.
    connect_src: tuple[str, ...] = setting(("https:", "wss:"), check_item=_non_empty)


@attrs.frozen
class WebSocketConfig:
    """The WebSocket sync transport (docs/websocket.md)."""

    # Advertised to clients: they send a frame (a ping) at least this often.
    heartbeat_interval_ms: int = setting(30_000, check=_positive)
    # No frame from the client for this long: the socket is closed (code 4002).
    dead_after_ms: int = setting(60_000, check=_positive)
    # Unacknowledged frames after which typing and presence are dropped...
    coalesce_after: int = setting(32, check=_positive)
    # ...and after which the socket is closed (code 4008) to resume from its acknowledged position.
    max_unacked: int = setting(256, check=_positive)
    # Bigger client frames close the socket (1009).
    max_frame_bytes: int = setting(69_632, check=_positive)
def _non_negative_float(value: float) -> str | None:
    return None if value >= 0 else f"must not be negative, got {value}"


@attrs.frozen
class RateLimit:
    """A token bucket, named as Synapse names it: `burst_count` actions at once, refilled
    at `per_second`. per_second 0 turns the limit off."""

    per_second: float = setting(0.2, check=_non_negative_float)
    burst_count: int = setting(10, check=_non_negative)


@attrs.frozen
class LoginRateLimits:
    address: RateLimit = attrs.field(factory=lambda: RateLimit(0.17, 3))
    account: RateLimit = attrs.field(factory=lambda: RateLimit(0.17, 3))
    failed_attempts: RateLimit = attrs.field(factory=lambda: RateLimit(0.17, 3))


@attrs.frozen
class JoinRateLimits:
    local: RateLimit = attrs.field(factory=lambda: RateLimit(0.1, 10))
    remote: RateLimit = attrs.field(factory=lambda: RateLimit(0.01, 10))


@attrs.frozen
class InviteRateLimits:
    per_room: RateLimit = attrs.field(factory=lambda: RateLimit(0.3, 10))
    per_user: RateLimit = attrs.field(factory=lambda: RateLimit(0.003, 5))


@attrs.frozen
class HomeserverConfig:
    server_name: str = setting(check=_server_name)
    listeners: tuple[ListenerConfig, ...] = setting(
        factory=lambda: (ListenerConfig(),), check=_listeners
    )
    database: DatabaseConfig = attrs.field(factory=DatabaseConfig)
    registration: RegistrationConfig = attrs.field(factory=RegistrationConfig)
    user_directory: UserDirectoryConfig = attrs.field(factory=UserDirectoryConfig)
    login_via_existing_session: LoginViaExistingSessionConfig = attrs.field(
        factory=LoginViaExistingSessionConfig,
    )
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    redis: RedisConfig = attrs.field(factory=RedisConfig)
    workers: WorkersConfig = attrs.field(factory=WorkersConfig)
    rabbitmq: RabbitMQConfig = attrs.field(factory=RabbitMQConfig)
    event_bus: EventBusConfig = attrs.field(factory=EventBusConfig)
    federation: FederationConfig = attrs.field(factory=FederationConfig)
    media: MediaConfig = attrs.field(factory=MediaConfig)
    email: EmailConfig = attrs.field(factory=EmailConfig)
    app_services: AppServicesConfig = attrs.field(factory=AppServicesConfig)
    ai_assistant: AiAssistantConfig = attrs.field(factory=AiAssistantConfig)
    websocket: WebSocketConfig = attrs.field(factory=WebSocketConfig)
    web_client: WebClientConfig = attrs.field(factory=WebClientConfig)
    voip: VoipConfig = attrs.field(factory=VoipConfig)
    well_known: WellKnownConfig = attrs.field(factory=WellKnownConfig)
    signing_key_path: str = setting("./data/signing.key", check=_non_empty, resolve=resolve_path)
    token_secret_path: str = setting("./data/token.secret", check=_non_empty, resolve=resolve_path)
    media_store_path: str = setting("./data/media", check=_non_empty, resolve=resolve_path)
    default_room_version: str = setting("12", check=_room_version)
    recall_window_ms: int = setting(120_000, check=_non_negative)
    # msgtype -> its own recall window (files may be recalled longer, as WeChat allows).
    recall_windows_ms: Mapping[str, int] = setting(
        factory=lambda: {"m.file": 10_800_000, "m.video": 10_800_000}, check_item=_non_negative,
    )
    # How long a recalled (redacted) event's original content is kept: 0 = gone at once.
    recall_content_retention_ms: int = setting(0, check=_non_negative)
    # Rate limits (Synapse's names and defaults); admins are never limited. false: none at all.
    rc_enabled: bool = setting(True)
    rc_message: RateLimit = attrs.field(factory=lambda: RateLimit(0.2, 10))
    rc_registration: RateLimit = attrs.field(factory=lambda: RateLimit(0.17, 3))
    rc_login: LoginRateLimits = attrs.field(factory=LoginRateLimits)
    rc_joins: JoinRateLimits = attrs.field(factory=JoinRateLimits)
    rc_invites: InviteRateLimits = attrs.field(factory=InviteRateLimits)
    rc_room_creation: RateLimit = attrs.field(factory=lambda: RateLimit(0.05, 10))
    rc_media_create: RateLimit = attrs.field(factory=lambda: RateLimit(10.0, 50))
    rc_client_events: RateLimit = attrs.field(factory=lambda: RateLimit(5.0, 50))
    rc_registration_token_validity: RateLimit = attrs.field(factory=lambda: RateLimit(0.1, 5))
    rc_3pid_validation: RateLimit = attrs.field(factory=lambda: RateLimit(0.003, 5))
    # How long a worker keeps a user's rate-limit override before reading it again: a
    # change through the admin API applies on every worker within this time.
    ratelimit_override_ttl_ms: int = setting(10_000, check=_non_negative)
    # The user that owns every server-notices room (Synapse's server_notices.system_mxid_localpart).
    server_notices_localpart: str = setting("notices", check=_non_empty)
    # bcrypt cost; tests lower it so registering a user takes milliseconds.
    bcrypt_rounds: int = setting(12, check=_positive)
    log_level: str = setting("INFO", check=_log_level, converter=_upper)
    # text: readable lines; json: one JSON object per line (for log shippers). Both carry
    # the request id.
    log_format: str = setting("text", check=_log_format)
    # One INFO line per request (remote, method, path, status, time, a peer's request id).
    # About 35 µs of CPU a request; false drops it (ids stay on every other line).
    access_log: bool = setting(True)
    public_baseurl: str | None = setting(None, check=_url("http", "https"))
    # Addresses no outbound request connects to (federation incl. discovery and media
    # redirects, push gateways, URL previews), checked on the address connected to:
    # Synapse's names and defaults. The whitelist wins over the blacklist.
    ip_range_blacklist: tuple[str, ...] = setting(DEFAULT_IP_RANGE_BLACKLIST, check_item=_ip_range)
    ip_range_whitelist: tuple[str, ...] = setting((), check_item=_ip_range)
    # Where this config was loaded from (absolute); set by the loader, never read from YAML.
    config_path: str | None = setting(None, from_file=False)


# Resolve string annotations once so the loader can walk field types directly.
for _cls in (
    ListenerConfig,
    DatabaseConfig,
    RegistrationConfig,
    UserDirectoryConfig,
    LoginViaExistingSessionConfig,
    LimitsConfig,
    RedisConfig,
    WorkersConfig,
    RabbitMQConfig,
    EventBusConfig,
    PeerConfig,
    FederationConfig,
    ThumbnailSize,
    MediaConfig,
    EmailConfig,
    AppServicesConfig,
    AiAssistantConfig,
    WebSocketConfig,
    WebClientConfig,
    VoipConfig,
    WellKnownConfig,
    RateLimit,
    LoginRateLimits,
    JoinRateLimits,
    InviteRateLimits,
    HomeserverConfig,
):
    attrs.resolve_types(_cls)
del _cls
