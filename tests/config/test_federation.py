"""The ``federation:`` section, and the loader's support for mappings and per-item checks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import attrs
import pytest

from config.loader import ConfigError, env_override_names, load_config
from config.schema import FederationConfig

WriteConfig = Callable[..., str]


def _error(path: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env or {})
    assert str(err.value).startswith(path), str(err.value)
    return err.value


def test_defaults(write_config: WriteConfig) -> None:
    cfg = load_config(write_config("server_name: hs1\n"), env={})
    assert cfg.federation == FederationConfig()
    assert cfg.federation.enabled is True
    assert cfg.federation.verify_tls is True
    assert cfg.federation.ca_file is None
    assert cfg.federation.static_map == {}
    assert cfg.federation.trusted_key_servers == ()
    assert cfg.federation.transport == "https"


def test_full_section(write_config: WriteConfig) -> None:
    path = write_config(
        "server_name: hs1.test\n"
        "federation:\n"
        "  enabled: false\n"
        "  verify_tls: false\n"
        "  ca_file: tls/ca.crt\n"
        "  static_map:\n"
        "    hs2.test: 127.0.0.1:8449\n"
        "    '127.0.0.1:8451': '127.0.0.1:8451'\n"
        "    '[::1]:8453': '[::1]:8453'\n"
        "  trusted_key_servers: [matrix.org, 'keys.example:8448']\n"
        "  transport: amqp\n",
        name="etc/hs1.yaml",
    )
    fed = load_config(path, env={}).federation
    assert fed.enabled is False and fed.verify_tls is False
    assert fed.ca_file == os.path.join(os.path.dirname(path), "tls", "ca.crt")
    assert fed.static_map == {
        "hs2.test": "127.0.0.1:8449",
        "127.0.0.1:8451": "127.0.0.1:8451",
        "[::1]:8453": "[::1]:8453",
    }
    assert fed.trusted_key_servers == ("matrix.org", "keys.example:8448")
    assert fed.transport == "amqp"


def test_federation_listener_with_tls_validates(write_config: WriteConfig) -> None:
    cfg = load_config(
        write_config(
            "server_name: hs1.test\n"
            "listeners:\n"
            "  - {port: 8008, resources: [client]}\n"
            "  - {port: 8448, resources: [federation], tls: true,\n"
            "     tls_certificate_path: tls/server.crt, tls_private_key_path: tls/server.key}\n"
        ),
        env={},
    )
    federation = cfg.listeners[1]
    assert federation.resources == ("federation",) and federation.tls is True
    assert federation.tls_certificate_path is not None
    assert federation.tls_certificate_path.endswith("/tls/server.crt")


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ("verify_tls: null", "federation.verify_tls", "expected true or false, got null"),
        ("verify_tls: 'no'", "federation.verify_tls", "expected true or false"),
        ("verify_tls: 0", "federation.verify_tls", "expected true or false, got the number 0"),
        ("static_map: [a]", "federation.static_map", "expected a mapping, got a list"),
        ("static_map: x", "federation.static_map", "expected a mapping"),
        (
            "static_map: {hs2.test: 8449}",
            "federation.static_map['hs2.test']",
            "'8449' has no port",
        ),
        (
            "static_map: {hs2.test: 127.0.0.1}",
            "federation.static_map['hs2.test']",
            "'127.0.0.1' has no port",
        ),
        (
            "static_map: {hs2.test: '127.0.0.1:0'}",
            "federation.static_map['hs2.test']",
            "outside 1-65535",
        ),
        (
            "static_map: {hs2.test: 'not a host:1'}",
            "federation.static_map['hs2.test']",
            "is not host:port",
        ),
        (
            "static_map: {'bad name': '127.0.0.1:1'}",
            "federation.static_map['bad name']",
            "not a valid server name",
        ),
        ("static_map: {5: '127.0.0.1:1'}", "federation.static_map['5']", "expected a string key"),
        (
            "trusted_key_servers: [matrix.org, 'no good']",
            "federation.trusted_key_servers[1]",
            "not a valid server name",
        ),
        (
            "transport: smtp",
            "federation.transport",
            "unknown transport 'smtp' (use one of https, amqp)",
        ),
        ("ca_file: ''", "federation.ca_file", "must not be empty"),
        ("verify: false", "federation.verify", "did you mean 'verify_tls'"),
    ],
)
def test_bad_values_name_the_key(
    write_config: WriteConfig, body: str, key: str, problem: str
) -> None:
    err = _error(write_config(f"server_name: hs1\nfederation:\n  {body}\n"))
    assert err.key == key
    assert problem in err.problem


def test_error_message_shows_the_map_key(write_config: WriteConfig) -> None:
    path = write_config("server_name: hs1\nfederation: {static_map: {hs2.test: nowhere}}\n")
    err = _error(path)
    assert str(err).startswith(f"{path}: federation.static_map['hs2.test']: 'nowhere' has no port")


def test_old_top_level_key_points_to_the_new_one(write_config: WriteConfig) -> None:
    err = _error(write_config("server_name: hs1\nfederation_verify_tls: false\n"))
    assert err.key == "federation_verify_tls"
    assert "federation.verify_tls" in err.problem


# ---- environment ------------------------------------------------------------------------


def test_env_overrides(write_config: WriteConfig) -> None:
    path = write_config("server_name: hs1\nfederation: {static_map: {hs9.test: '127.0.0.1:9'}}\n")
    cfg = load_config(
        path,
        env={
            "TRICOLOR_FEDERATION__VERIFY_TLS": "false",
            "TRICOLOR_FEDERATION__ENABLED": "off",
            "TRICOLOR_FEDERATION__CA_FILE": "ca.crt",
            "TRICOLOR_FEDERATION__STATIC_MAP": "hs2.test=127.0.0.1:8449, 127.0.0.1:8451=127.0.0.1:8451",
            "TRICOLOR_FEDERATION__TRUSTED_KEY_SERVERS": "matrix.org,keys.example",
            "TRICOLOR_FEDERATION__TRANSPORT": "amqp",
        },
    )
    fed = cfg.federation
    assert fed.verify_tls is False and fed.enabled is False
    assert fed.ca_file == os.path.join(os.path.dirname(path), "ca.crt")
    # The variable replaces the whole map.
    assert fed.static_map == {"hs2.test": "127.0.0.1:8449", "127.0.0.1:8451": "127.0.0.1:8451"}
    assert fed.trusted_key_servers == ("matrix.org", "keys.example")
    assert fed.transport == "amqp"


def test_env_empty_map_and_null_ca_file(write_config: WriteConfig) -> None:
    path = write_config(
        "server_name: hs1\nfederation: {ca_file: x.crt, static_map: {hs2.test: 'h:1'}}\n"
    )
    fed = load_config(
        path, env={"TRICOLOR_FEDERATION__STATIC_MAP": "", "TRICOLOR_FEDERATION__CA_FILE": "null"}
    ).federation
    assert fed.static_map == {} and fed.ca_file is None


@pytest.mark.parametrize(
    ("name", "text", "key", "problem"),
    [
        (
            "TRICOLOR_FEDERATION__VERIFY_TLS",
            "",
            "federation.verify_tls (from $TRICOLOR_FEDERATION__VERIFY_TLS)",
            "expected true or false",
        ),
        (
            "TRICOLOR_FEDERATION__STATIC_MAP",
            "hs2.test",
            "federation.static_map (from $TRICOLOR_FEDERATION__STATIC_MAP)",
            "expected NAME=VALUE pairs",
        ),
        (
            "TRICOLOR_FEDERATION__STATIC_MAP",
            "hs2.test=nowhere",
            "federation.static_map['hs2.test'] (from $TRICOLOR_FEDERATION__STATIC_MAP)",
            "has no port",
        ),
    ],
)
def test_bad_env_values(
    write_config: WriteConfig, name: str, text: str, key: str, problem: str
) -> None:
    err = _error(write_config("server_name: hs1\n"), env={name: text})
    assert err.key == key
    assert problem in err.problem


def test_override_names_include_the_section() -> None:
    names = env_override_names()
    assert names["TRICOLOR_FEDERATION__VERIFY_TLS"] == "federation.verify_tls"
    assert names["TRICOLOR_FEDERATION__STATIC_MAP"] == "federation.static_map"
    assert "TRICOLOR_FEDERATION_VERIFY_TLS" not in names


# ---- built in code --------------------------------------------------------------------


def test_attrs_validates_items_too() -> None:
    with pytest.raises(ValueError, match=r"static_map\['hs2.test'\]: 'x' has no port"):
        FederationConfig(static_map={"hs2.test": "x"})
    with pytest.raises(ValueError, match=r"static_map\['bad name'\]: .*not a valid server name"):
        FederationConfig(static_map={"bad name": "127.0.0.1:1"})
    with pytest.raises(ValueError, match=r"trusted_key_servers\[0\]"):
        FederationConfig(trusted_key_servers=("no good",))
    with pytest.raises(ValueError, match=r"transport: unknown transport"):
        FederationConfig(transport="smtp")
    fed = FederationConfig(static_map={"hs2.test": "127.0.0.1:8449"})
    assert attrs.evolve(fed, verify_tls=False).static_map == {"hs2.test": "127.0.0.1:8449"}


# ---- federation.transport at start-up -------------------------------------------------------


def test_amqp_transport_without_a_broker_is_refused(write_config: WriteConfig) -> None:
    """The config loads (the value is known), but the server will not run AMQP without its
    broker: a one-line config error naming the file and the key, not silence."""
    from federation.outbound.client import FederationClient
    from federation.outbound.resolver import ServerResolver
    from federation.outbound.transport import HttpsTransport, TransportRouter, from_config
    from homeserver.core.signing import generate_signing_key

    client = FederationClient("hs1", generate_signing_key("k1"), ServerResolver({}), None)
    path = write_config("server_name: hs1\nfederation:\n  transport: amqp\n")
    with pytest.raises(ConfigError) as err:
        from_config(load_config(path, env={}), client)
    assert str(err.value) == (f"{path}: rabbitmq.url: transport amqp needs rabbitmq.url")
    path = write_config(
        "server_name: hs1\nfederation:\n  peers: {hs2: {transport: amqp}}\n"
        "rabbitmq: {url: 'amqp://127.0.0.1/'}\n"
    )
    with pytest.raises(ConfigError, match=r"transport amqp needs rabbitmq\.management_url"):
        from_config(load_config(path, env={}), client)
    https = from_config(load_config(write_config("server_name: hs1\n"), env={}), client)
    assert isinstance(https, TransportRouter) and isinstance(https.default, HttpsTransport)


def test_server_with_amqp_transport_exits_with_a_config_error(
    write_config: WriteConfig,
    unused_tcp_port: int,
) -> None:
    path = write_config(
        "server_name: hs1.test\n"
        f"listeners: [{{port: {unused_tcp_port}}}]\n"
        "database: {url: 'sqlite+aiosqlite:///./data/hs.db'}\n"
        "federation: {transport: amqp}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "homeserver", "run", "-c", path],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(path),
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"config error: {path}: rabbitmq.url: transport amqp needs rabbitmq.url"
    )
