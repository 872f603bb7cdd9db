"""``generate-config``: write a complete, commented config for a new server.

Every server generated here gets its own data directory (keys, sqlite file,
media) named after it, so several can be generated next to each other and run
side by side as long as their ports differ.
"""

from __future__ import annotations

import json
import os
import re
import secrets

import attrs

from config.errors import ConfigError
from config.keys import ensure_signing_key, ensure_token_secret
from config.loader import load_config
from config.schema import (
    KNOWN_RESOURCES,
    DatabaseConfig,
    HomeserverConfig,
    LimitsConfig,
    ListenerConfig,
)

_UNSAFE_DIR_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def generate_config(
    server_name: str,
    output: str,
    port: int = 8008,
    data_dir: str | None = None,
    database_url: str | None = None,
    host: str = "127.0.0.1",
    force: bool = False,
) -> str:
    """Write a config for a new server to ``output`` and create its secrets; return the path.

    ``data_dir`` defaults to ``<dir of output>/data-<server name>``; the database
    defaults to sqlite inside it. An existing ``output`` is only replaced with
    ``force=True``; existing key files are always kept (losing a signing key
    breaks federation with every server that has seen it).
    """
    output = os.path.abspath(os.path.expanduser(output))
    if os.path.exists(output) and not force:
        raise ConfigError("already exists; choose another path or pass force=True", file=output)
    config_dir = os.path.dirname(output)
    if data_dir is None:
        data_dir = os.path.join(config_dir, "data-" + _UNSAFE_DIR_CHARS.sub("_", server_name))
    data_dir = os.path.normpath(os.path.join(config_dir, os.path.expanduser(data_dir)))

    def shown(path: str) -> str:
        # Paths inside the config's directory are written relative, so the pair can be moved.
        rel = os.path.relpath(path, config_dir)
        return path if rel.startswith("..") else "./" + rel

    if database_url is None:
        database_url = f"sqlite+aiosqlite:///{shown(os.path.join(data_dir, 'homeserver.db'))}"
    text = _render(
        server_name=server_name,
        host=host,
        port=port,
        database_url=database_url,
        signing_key_path=shown(os.path.join(data_dir, "signing.key")),
        token_secret_path=shown(os.path.join(data_dir, "token.secret")),
        media_store_path=shown(os.path.join(data_dir, "media")),
        shared_secret=secrets.token_urlsafe(32),
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
        if force:
            os.replace(tmp, output)
        else:
            os.link(tmp, output)  # fails instead of overwriting a file created meanwhile
    except ConfigError as exc:
        raise ConfigError(exc.problem, file=output, key=exc.key) from None
    except FileExistsError:
        raise ConfigError(
            "already exists; choose another path or pass force=True", file=output
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


def _q(value: str | None) -> str:
    # JSON strings are valid YAML double-quoted scalars; this quotes anything safely.
    return "null" if value is None else json.dumps(value)


def _render(
    *,
    server_name: str,
    host: str,
    port: int,
    database_url: str,
    signing_key_path: str,
    token_secret_path: str,
    media_store_path: str,
    shared_secret: str,
) -> str:
    listener = ListenerConfig()
    database = DatabaseConfig()
    limits = LimitsConfig()
    top = {f.name: f.default for f in attrs.fields(HomeserverConfig)}
    resources = ", ".join(listener.resources)
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

# HTTP sockets. Resources choose the APIs mounted on each socket:
# {", ".join(KNOWN_RESOURCES)}.
listeners:
  - host: {_q(host)}
    port: {port}
    resources: [{resources}]
    # Terminate TLS here instead of in a reverse proxy (both paths are then required).
    tls: false
    tls_certificate_path: null
    tls_private_key_path: null

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

limits:
  max_request_bytes: {limits.max_request_bytes}
  # 65536 is the Matrix limit for a whole event; peers reject larger ones.
  max_event_bytes: {limits.max_event_bytes}
  max_upload_bytes: {limits.max_upload_bytes}

redis:
  # e.g. redis://127.0.0.1:6379/0 — shares presence, typing, rate limits and
  # sync wake-ups between worker processes. null: everything stays in process.
  url: null

rabbitmq:
  # e.g. amqp://guest:guest@127.0.0.1:5672/ — queues outgoing federation per
  # destination on a broker (and receives from peers' shovels). null: HTTPS only.
  url: null

# Ed25519 key that signs events and federation requests; created if missing.
# Back it up: peers remember it.
signing_key_path: {_q(signing_key_path)}
# Secret for signing access tokens; created if missing.
token_secret_path: {_q(token_secret_path)}
media_store_path: {_q(media_store_path)}

# Room version for new rooms: "10" or "11".
default_room_version: {_q(top["default_room_version"])}
# How long after sending a message it may still be recalled (unsent), in milliseconds.
recall_window_ms: {top["recall_window_ms"]}
# CRITICAL, ERROR, WARNING, INFO or DEBUG.
log_level: {top["log_level"]}
# Check peers' TLS certificates on outgoing federation (turn off only for local tests).
federation_verify_tls: {_yaml_bool(top["federation_verify_tls"])}
"""


def _yaml_bool(value: bool) -> str:
    return "true" if value else "false"
