"""Typed, frozen configuration sections.

The loader (``config.loader``) fills these from YAML and the environment; the rest
of the server only ever reads them. Each field's value check lives in its
metadata so that the loader can report it with the exact key path
(``listeners[0].port``) and attrs can enforce the same rule when code builds a
config directly (tests, ``attrs.evolve``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from config.paths import resolve_database_url, resolve_path
from homeserver.core.ids import is_valid_server_name

# Metadata keys read by the loader.
CHECK = "tricolor.check"  # Callable[[value], str | None]: the problem, or None when fine
RESOLVE = "tricolor.resolve"  # Callable[[value, base_dir], value]: make paths absolute
FROM_FILE = "tricolor.from_file"  # False: set by the loader, not accepted as a YAML key

SUPPORTED_ROOM_VERSIONS = ("10", "11")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
# What a listener may serve; extend this when a new sub-app appears.
KNOWN_RESOURCES = ("client", "federation", "media", "keys", "metrics")

Check = Callable[[Any], str | None]


def _validator(check: Check) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def run(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        problem = None if value is None else check(value)
        if problem is not None:
            raise ValueError(f"{attribute.name}: {problem}")

    return run


def setting(
    default: Any = attrs.NOTHING,
    *,
    factory: Callable[[], Any] | None = None,
    check: Check | None = None,
    resolve: Callable[[Any, str], Any] | None = None,
    converter: Callable[[Any], Any] | None = None,
    from_file: bool = True,
) -> Any:
    """An ``attrs.field`` that also records how the loader validates and resolves it."""
    metadata = {CHECK: check, RESOLVE: resolve, FROM_FILE: from_file}
    validator = _validator(check) if check is not None else None
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


def _database_url(value: str) -> str | None:
    if _URL_RE.match(value):
        return None
    return f"{value!r} is not a database URL (e.g. 'sqlite+aiosqlite:///./data/homeserver.db')"


def _resources(value: tuple[str, ...]) -> str | None:
    if not value:
        return "must name at least one resource"
    unknown = [r for r in value if r not in KNOWN_RESOURCES]
    if unknown:
        return f"unknown resource {unknown[0]!r} (known: {', '.join(KNOWN_RESOURCES)})"
    if len(set(value)) != len(value):
        return "lists a resource twice"
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


@attrs.frozen
class LimitsConfig:
    max_request_bytes: int = setting(1_048_576, check=_positive)
    max_event_bytes: int = setting(65_536, check=_positive)
    max_upload_bytes: int = setting(52_428_800, check=_positive)


@attrs.frozen
class RedisConfig:
    # None: presence, typing and wake-ups stay in process (single-worker mode).
    url: str | None = setting(None, check=_url("redis", "rediss", "unix"))


@attrs.frozen
class RabbitMQConfig:
    # None: federation is sent over HTTPS only.
    url: str | None = setting(None, check=_url("amqp", "amqps"))


@attrs.frozen
class HomeserverConfig:
    server_name: str = setting(check=_server_name)
    listeners: tuple[ListenerConfig, ...] = setting(
        factory=lambda: (ListenerConfig(),), check=_listeners
    )
    database: DatabaseConfig = attrs.field(factory=DatabaseConfig)
    registration: RegistrationConfig = attrs.field(factory=RegistrationConfig)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    redis: RedisConfig = attrs.field(factory=RedisConfig)
    rabbitmq: RabbitMQConfig = attrs.field(factory=RabbitMQConfig)
    signing_key_path: str = setting("./data/signing.key", check=_non_empty, resolve=resolve_path)
    token_secret_path: str = setting("./data/token.secret", check=_non_empty, resolve=resolve_path)
    media_store_path: str = setting("./data/media", check=_non_empty, resolve=resolve_path)
    default_room_version: str = setting("10", check=_room_version)
    recall_window_ms: int = setting(120_000, check=_non_negative)
    # bcrypt cost; tests lower it so registering a user takes milliseconds.
    bcrypt_rounds: int = setting(12, check=_positive)
    log_level: str = setting("INFO", check=_log_level, converter=_upper)
    public_baseurl: str | None = setting(None, check=_url("http", "https"))
    federation_verify_tls: bool = setting(True)
    # Where this config was loaded from (absolute); set by the loader, never read from YAML.
    config_path: str | None = setting(None, from_file=False)


# Resolve string annotations once so the loader can walk field types directly.
for _cls in (
    ListenerConfig,
    DatabaseConfig,
    RegistrationConfig,
    LimitsConfig,
    RedisConfig,
    RabbitMQConfig,
    HomeserverConfig,
):
    attrs.resolve_types(_cls)
del _cls
