from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from config.loader import ConfigError, env_override_names, load_config
from config.schema import ListenerConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
WriteConfig = Callable[..., str]


def test_embedded_default_loads() -> None:
    cfg = load_config(str(REPO_ROOT / "homeserver.yaml"), env={})
    data = REPO_ROOT / "data"
    assert cfg.server_name == "localhost:8008"
    assert cfg.listeners == (ListenerConfig(host="127.0.0.1", port=8008),)
    assert cfg.database.url == f"sqlite+aiosqlite:///{data / 'homeserver.db'}"
    assert cfg.signing_key_path == str(data / "signing.key")
    assert cfg.token_secret_path == str(data / "token.secret")
    assert cfg.media_store_path == str(data / "media")
    assert cfg.registration.enabled is True
    assert cfg.redis.url is None and cfg.rabbitmq.url is None
    assert cfg.default_room_version == "12"
    assert cfg.config_path == str(REPO_ROOT / "homeserver.yaml")


def test_embedded_default_matches_schema_defaults(write_config: WriteConfig) -> None:
    # The file spells every default out; it must not drift from the schema.
    spelled_out = write_config((REPO_ROOT / "homeserver.yaml").read_text(), name="full.yaml")
    minimal = write_config('server_name: "localhost:8008"\n', name="minimal.yaml")
    full_cfg = load_config(spelled_out, env={})
    assert attrs.evolve(full_cfg, config_path=None) == attrs.evolve(
        load_config(minimal, env={}), config_path=None
    )


def test_minimal_file_uses_defaults(write_config: WriteConfig) -> None:
    path = write_config("server_name: hs1.example\n")
    cfg = load_config(path, env={})
    base = os.path.dirname(path)
    assert cfg.listeners == (ListenerConfig(),)
    assert cfg.database.url == f"sqlite+aiosqlite:///{base}/data/homeserver.db"
    assert cfg.signing_key_path == f"{base}/data/signing.key"
    assert cfg.log_level == "INFO"


def test_empty_sections_mean_defaults(write_config: WriteConfig) -> None:
    cfg = load_config(write_config("server_name: hs1\nredis:\nlimits: {}\n"), env={})
    assert cfg.redis.url is None
    assert cfg.limits.max_event_bytes == 65_536


def test_unquoted_room_version_is_read_as_text(write_config: WriteConfig) -> None:
    cfg = load_config(write_config("server_name: hs1\ndefault_room_version: 11\n"), env={})
    assert cfg.default_room_version == "11"


def test_log_level_is_case_insensitive(write_config: WriteConfig) -> None:
    cfg = load_config(write_config("server_name: hs1\nlog_level: debug\n"), env={})
    assert cfg.log_level == "DEBUG"


def test_several_listeners(write_config: WriteConfig) -> None:
    cfg = load_config(
        write_config(
            "server_name: hs1\n"
            "listeners:\n"
            "  - {port: 8008, resources: [client]}\n"
            "  - {host: 0.0.0.0, port: 8448, resources: [federation, keys]}\n"
        ),
        env={},
    )
    assert [(li.host, li.port, li.resources) for li in cfg.listeners] == [
        ("127.0.0.1", 8008, ("client",)),
        ("0.0.0.0", 8448, ("federation", "keys")),
    ]


# ---- relative paths ---------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        "server_name: hs1\n"
        "database: {url: 'sqlite+aiosqlite:///./db/x.db?timeout=5'}\n"
        "signing_key_path: keys/signing.key\n"
        "token_secret_path: ../shared/token.secret\n"
        "media_store_path: /var/media\n"
        "listeners:\n"
        "  - {tls: true, tls_certificate_path: tls/cert.pem, tls_private_key_path: tls/key.pem}\n",
        name="etc/hs1.yaml",
    )
    etc = tmp_path / "etc"
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    cfg = load_config(os.path.relpath(path), env={})
    assert cfg.config_path == str(etc / "hs1.yaml")
    assert cfg.database.url == f"sqlite+aiosqlite:///{etc}/db/x.db?timeout=5"
    assert cfg.signing_key_path == str(etc / "keys" / "signing.key")
    assert cfg.token_secret_path == str(tmp_path / "shared" / "token.secret")
    assert cfg.media_store_path == "/var/media"
    assert cfg.listeners[0].tls_certificate_path == str(etc / "tls" / "cert.pem")
    assert cfg.listeners[0].tls_private_key_path == str(etc / "tls" / "key.pem")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////abs/x.db",
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite://",
        "mysql+asyncmy://root@127.0.0.1:3306/test",
    ],
)
def test_database_urls_without_relative_paths_are_unchanged(
    write_config: WriteConfig, url: str
) -> None:
    cfg = load_config(write_config(f"server_name: hs1\ndatabase: {{url: '{url}'}}\n"), env={})
    assert cfg.database.url == url


# ---- environment overrides --------------------------------------------------------------


def test_env_overrides(write_config: WriteConfig) -> None:
    path = write_config(str((REPO_ROOT / "homeserver.yaml").read_text()))
    env = {
        "TRICOLOR_SERVER_NAME": "hs2.example",
        "TRICOLOR_DATABASE_URL": "mysql+asyncmy://root@127.0.0.1:3306/hs2",
        "TRICOLOR_REDIS_URL": "redis://127.0.0.1:6379/1",
        "TRICOLOR_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/",
        "TRICOLOR_LOG_LEVEL": "debug",
        "TRICOLOR_REGISTRATION_ENABLED": "false",
        "TRICOLOR_PORT": "8009",
        "TRICOLOR_LIMITS__MAX_UPLOAD_BYTES": "1000",
        "TRICOLOR_DATABASE__POOL_SIZE": "3",
        "TRICOLOR_MEDIA_STORE_PATH": "media2",
        # Not config overrides: other TRICOLOR_* variables are ignored.
        "TRICOLOR_TEST_MYSQL_URL": "mysql+asyncmy://root@127.0.0.1:3306/test",
        "TRICOLOR_REQUIRE_MYSQL": "1",
    }
    cfg = load_config(path, env=env)
    assert cfg.server_name == "hs2.example"
    assert cfg.database.url == "mysql+asyncmy://root@127.0.0.1:3306/hs2"
    assert cfg.database.pool_size == 3
    assert cfg.redis.url == "redis://127.0.0.1:6379/1"
    assert cfg.rabbitmq.url == "amqp://guest:guest@127.0.0.1:5672/"
    assert cfg.log_level == "DEBUG"
    assert cfg.registration.enabled is False
    assert cfg.listeners[0].port == 8009
    assert cfg.limits.max_upload_bytes == 1000
    assert cfg.media_store_path == os.path.join(os.path.dirname(path), "media2")


def test_env_defaults_to_os_environ(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRICOLOR_SERVER_NAME", "from-env.example")
    assert load_config(write_config("server_name: hs1\n")).server_name == "from-env.example"


def test_env_can_supply_everything(write_config: WriteConfig) -> None:
    cfg = load_config(
        write_config(""), env={"TRICOLOR_SERVER_NAME": "hs1", "TRICOLOR_PORT": "9000"}
    )
    assert cfg.server_name == "hs1"
    assert cfg.listeners == (ListenerConfig(port=9000),)


def test_empty_env_url_disables_service(write_config: WriteConfig) -> None:
    path = write_config("server_name: hs1\nredis: {url: 'redis://127.0.0.1:6379'}\n")
    assert load_config(path, env={"TRICOLOR_REDIS_URL": ""}).redis.url is None


def test_alias_wins_over_generic_form(write_config: WriteConfig) -> None:
    env = {"TRICOLOR_REDIS__URL": "redis://a:6379", "TRICOLOR_REDIS_URL": "redis://b:6379"}
    assert load_config(write_config("server_name: hs1\n"), env=env).redis.url == "redis://b:6379"


def test_bad_env_value_names_the_variable(write_config: WriteConfig) -> None:
    path = write_config("server_name: hs1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"TRICOLOR_PORT": "eighty"})
    assert err.value.key == "listeners[0].port (from $TRICOLOR_PORT)"
    assert "expected an integer" in err.value.problem
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"TRICOLOR_PORT": "0"})
    assert "TRICOLOR_PORT" in str(err.value) and "1 to 65535" in str(err.value)
    with pytest.raises(ConfigError, match=r"registration\.enabled .*expected true or false"):
        load_config(path, env={"TRICOLOR_REGISTRATION_ENABLED": "maybe"})


def test_misspelled_override_variable_is_an_error(write_config: WriteConfig) -> None:
    with pytest.raises(
        ConfigError, match=r"TRICOLOR_DATABSE__URL.*did you mean TRICOLOR_DATABASE__URL"
    ):
        load_config(write_config("server_name: hs1\n"), env={"TRICOLOR_DATABSE__URL": "x"})


def test_override_names_are_listed() -> None:
    names = env_override_names()
    assert names["TRICOLOR_PORT"] == "listeners[0].port"
    assert names["TRICOLOR_LIMITS__MAX_EVENT_BYTES"] == "limits.max_event_bytes"
    assert names["TRICOLOR_SERVER_NAME"] == "server_name"
    assert "TRICOLOR_CONFIG_PATH" not in names


# ---- errors name the file, the key and the problem ------------------------------------


def _error(path: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env or {})
    message = str(err.value)
    assert message.startswith(path), message
    return err.value


def test_unknown_key(write_config: WriteConfig) -> None:
    err = _error(write_config("server_name: hs1\nlisteners:\n  - {prot: 8008}\n"))
    assert err.key == "listeners[0].prot"
    assert "unknown key" in err.problem and "'port'" in err.problem
    assert str(err) == f"{err.file}: listeners[0].prot: {err.problem}"


def test_unknown_top_level_key(write_config: WriteConfig) -> None:
    err = _error(write_config("server_name: hs1\nsigning_key: x\n"))
    assert err.key == "signing_key"
    assert "did you mean 'signing_key_path'" in err.problem


def test_config_path_is_not_a_file_key(write_config: WriteConfig) -> None:
    assert _error(write_config("server_name: hs1\nconfig_path: /x\n")).key == "config_path"


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        (
            "listeners:\n  - {port: '8008'}\n",
            "listeners[0].port",
            "expected an integer, got the string '8008'",
        ),
        ("listeners:\n  - {port: 80.5}\n", "listeners[0].port", "expected an integer"),
        ("listeners: 5\n", "listeners", "expected a list"),
        ("listeners:\n  - {resources: client}\n", "listeners[0].resources", "expected a list"),
        ("registration: {enabled: 'yes'}\n", "registration.enabled", "expected true or false"),
        ("database: []\n", "database", "expected a mapping"),
        (
            "limits: {max_event_bytes: true}\n",
            "limits.max_event_bytes",
            "expected an integer, got true",
        ),
        ("redis: {url: 5.5}\n", "redis.url", "expected a string or null"),
    ],
)
def test_wrong_type(write_config: WriteConfig, body: str, key: str, problem: str) -> None:
    err = _error(write_config("server_name: hs1\n" + body))
    assert err.key == key
    assert problem in err.problem


@pytest.mark.parametrize("port", [0, 70000, -1])
def test_bad_port(write_config: WriteConfig, port: int) -> None:
    err = _error(
        write_config(f"server_name: hs1\nlisteners:\n  - {{port: 8008}}\n  - {{port: {port}}}\n")
    )
    assert err.key == "listeners[1].port"
    assert err.problem == f"must be a port number from 1 to 65535, got {port}"


@pytest.mark.parametrize("name", ["not a name", "hs1.example:99999", "hs1:", "", "@alice:hs1"])
def test_bad_server_name(write_config: WriteConfig, name: str) -> None:
    err = _error(write_config(f"server_name: '{name}'\n"))
    assert err.key == "server_name"
    assert "server name" in err.problem or "port" in err.problem


def test_missing_server_name(write_config: WriteConfig) -> None:
    err = _error(write_config("log_level: INFO\n"))
    assert err.key == "server_name" and err.problem == "required setting is missing"


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ("default_room_version: '13'\n", "default_room_version", "unsupported room version '13'"),
        ("log_level: LOUD\n", "log_level", "unknown log level 'LOUD'"),
        ("redis: {url: 'http://x'}\n", "redis.url", "redis://"),
        ("rabbitmq: {url: 'redis://x'}\n", "rabbitmq.url", "amqp://"),
        ("database: {url: 'homeserver.db'}\n", "database.url", "not a database URL"),
        ("database: {pool_size: 0}\n", "database.pool_size", "greater than 0"),
        ("listeners: []\n", "listeners", "at least one listener"),
        (
            "listeners:\n  - {resources: [client, irc]}\n",
            "listeners[0].resources",
            "unknown resource 'irc'",
        ),
        (
            "listeners:\n  - {port: 8008}\n  - {port: 8008}\n",
            "listeners",
            "two listeners bind 127.0.0.1:8008",
        ),
        ("listeners:\n  - {tls: true}\n", "listeners[0]", "tls_certificate_path"),
        ("public_baseurl: example.org\n", "public_baseurl", "https://"),
        ("recall_window_ms: -5\n", "recall_window_ms", "must not be negative"),
    ],
)
def test_bad_value(write_config: WriteConfig, body: str, key: str, problem: str) -> None:
    err = _error(write_config("server_name: hs1\n" + body))
    assert err.key == key
    assert problem in err.problem


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == f"config file not found: {path}"


def test_yaml_syntax_error(write_config: WriteConfig) -> None:
    err = _error(write_config("server_name: hs1\nlisteners:\n  - port: 8008\n   host: x\n"))
    assert err.key is None
    assert err.problem.startswith("YAML syntax error at line 4, column ")


def test_duplicate_key(write_config: WriteConfig) -> None:
    err = _error(write_config("server_name: hs1\nlisteners:\n  - port: 8008\n    port: 8009\n"))
    assert "line 4" in err.problem and "duplicate key 'port'" in err.problem


def test_top_level_must_be_a_mapping(write_config: WriteConfig) -> None:
    err = _error(write_config("- server_name: hs1\n"))
    assert "expected a mapping of settings at the top level, got a list" in err.problem


def test_max_event_bytes_cannot_exceed_the_spec_limit(tmp_path: Path) -> None:
    path = tmp_path / "hs.yaml"
    path.write_text('server_name: "a.test"\nlimits:\n  max_event_bytes: 70000\n')
    with pytest.raises(ConfigError) as e:
        load_config(str(path), env={})
    assert "limits.max_event_bytes" in str(e.value) and "65536" in str(e.value)
