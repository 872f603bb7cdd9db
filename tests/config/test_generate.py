from __future__ import annotations

import os
import shutil
import ssl
import stat
from pathlib import Path

import pytest

from config.generate import generate_config
from config.loader import ConfigError, load_config
from config.schema import ListenerConfig
from config.tls import listener_ssl_context
from tests.config.test_keys import seed_of
from tests.config.test_tls import assert_tls_handshake


def test_generated_config_loads_and_has_keys(tmp_path: Path) -> None:
    out = generate_config("hs1.example", str(tmp_path / "hs1.yaml"), port=8448)
    assert out == str(tmp_path / "hs1.yaml")
    cfg = load_config(out, env={})
    data = tmp_path / "data-hs1.example"
    assert cfg.server_name == "hs1.example"
    assert cfg.listeners[0].port == 8448
    assert cfg.database.url == f"sqlite+aiosqlite:///{data / 'homeserver.db'}"
    assert cfg.signing_key_path == str(data / "signing.key")
    assert len(seed_of(Path(cfg.signing_key_path).read_text())) == 32
    assert len(bytes.fromhex(Path(cfg.token_secret_path).read_text())) == 32
    assert cfg.registration.shared_secret  # lets register-user work on a new server
    # The shared secret lives in the file, so it is private.
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_generated_config_is_commented_and_complete(tmp_path: Path) -> None:
    text = Path(generate_config("hs1", str(tmp_path / "hs1.yaml"))).read_text()
    for section in (
        "listeners:",
        "database:",
        "registration:",
        "limits:",
        "redis:",
        "rabbitmq:",
        "federation:",
    ):
        assert f"\n{section}\n" in text
    for key in (
        "signing_key_path",
        "token_secret_path",
        "media_store_path",
        "default_room_version",
        "recall_window_ms",
        "recall_content_retention_ms",
        "rc_enabled",
        "rc_message",
        "log_level",
        "public_baseurl",
    ):
        assert f"\n{key}: " in text
    for key in ("enabled", "verify_tls", "ca_file", "static_map", "trusted_key_servers"):
        assert f"\n  {key}:" in text
    assert "federation_verify_tls" not in text
    assert text.count("\n#") > 10


def test_two_generated_servers_do_not_collide(tmp_path: Path) -> None:
    hs1 = load_config(generate_config("localhost:8008", str(tmp_path / "hs1.yaml")), env={})
    hs2 = load_config(
        generate_config("localhost:8009", str(tmp_path / "hs2.yaml"), port=8009), env={}
    )
    assert hs1.listeners[0].port != hs2.listeners[0].port
    for field in ("signing_key_path", "token_secret_path", "media_store_path"):
        assert getattr(hs1, field) != getattr(hs2, field)
    assert hs1.database.url != hs2.database.url
    assert os.path.dirname(hs1.signing_key_path) != os.path.dirname(hs2.signing_key_path)
    key1, key2 = Path(hs1.signing_key_path).read_text(), Path(hs2.signing_key_path).read_text()
    assert seed_of(key1) != seed_of(key2)


def test_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "hs1.yaml"
    out.write_text("mine\n")
    with pytest.raises(ConfigError, match="already exists"):
        generate_config("hs1", str(out))
    assert out.read_text() == "mine\n"
    generate_config("hs1", str(out), force=True)
    assert load_config(str(out), env={}).server_name == "hs1"


def test_force_keeps_existing_keys(tmp_path: Path) -> None:
    out = str(tmp_path / "hs1.yaml")
    key_path = load_config(generate_config("hs1", out), env={}).signing_key_path
    before = Path(key_path).read_text()
    generate_config("hs1", out, port=9000, force=True)
    assert Path(key_path).read_text() == before


def test_custom_data_dir_host_and_database(tmp_path: Path) -> None:
    out = generate_config(
        "hs1",
        str(tmp_path / "etc" / "hs1.yaml"),
        data_dir=str(tmp_path / "var" / "hs1"),
        database_url="mysql+asyncmy://root@127.0.0.1:3306/hs1_test",
        host="0.0.0.0",
    )
    cfg = load_config(out, env={})
    assert cfg.database.url == "mysql+asyncmy://root@127.0.0.1:3306/hs1_test"
    assert cfg.listeners[0].host == "0.0.0.0"
    assert cfg.signing_key_path == str(tmp_path / "var" / "hs1" / "signing.key")
    assert Path(cfg.signing_key_path).exists()


def test_generated_pair_can_be_moved(tmp_path: Path) -> None:
    generate_config("hs1", str(tmp_path / "a" / "hs1.yaml"))
    shutil.move(tmp_path / "a", tmp_path / "b")
    cfg = load_config(str(tmp_path / "b" / "hs1.yaml"), env={})
    assert Path(cfg.signing_key_path).is_relative_to(tmp_path / "b")
    assert Path(cfg.signing_key_path).exists()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"server_name": "bad name"}, "server_name"),
        ({"server_name": "hs1", "port": 70000}, "listeners[0].port"),
    ],
)
def test_bad_arguments_leave_nothing_behind(
    tmp_path: Path, kwargs: dict[str, object], key: str
) -> None:
    out = tmp_path / "hs.yaml"
    with pytest.raises(ConfigError) as err:
        generate_config(output=str(out), **kwargs)  # type: ignore[arg-type]
    assert err.value.file == str(out) and err.value.key == key
    assert list(tmp_path.iterdir()) == []


# ---- federation listener, TLS and the static map ---------------------------------------


def _server_context(cfg_listener: ListenerConfig) -> ssl.SSLContext:
    context = listener_ssl_context(cfg_listener)
    assert context is not None
    return context


def test_federation_port_gives_a_tls_listener_from_the_ca(tmp_path: Path) -> None:
    static_map = {"hs1.test": "127.0.0.1:8449", "hs2.test": "127.0.0.1:8451"}
    out = generate_config(
        "hs1.test",
        str(tmp_path / "hs1" / "homeserver.yaml"),
        port=8448,
        federation_port=8449,
        ca_dir=str(tmp_path / "ca"),
        static_map=static_map,
    )
    cfg = load_config(out, env={})
    client, federation = cfg.listeners
    assert (client.port, client.resources, client.tls) == (8448, ("client",), False)
    assert (federation.port, federation.resources, federation.tls) == (
        8449,
        ("federation",),
        True,
    )
    assert federation.tls_certificate_path == str(
        tmp_path / "hs1" / "data-hs1.test" / "tls" / "server.crt"
    )
    assert cfg.federation.ca_file == str(tmp_path / "ca" / "ca.crt")
    assert cfg.federation.static_map == static_map
    assert cfg.federation.verify_tls is True
    # The certificate verifies against the CA under the server's name.
    assert_tls_handshake(_server_context(federation), cfg.federation.ca_file, "hs1.test")


def test_second_server_reuses_the_ca(tmp_path: Path) -> None:
    kwargs = {"ca_dir": str(tmp_path / "ca")}
    generate_config("hs1.test", str(tmp_path / "hs1.yaml"), federation_port=9001, **kwargs)  # type: ignore[arg-type]
    ca_before = (tmp_path / "ca" / "ca.crt").read_bytes()
    out = generate_config("hs2.test", str(tmp_path / "hs2.yaml"), federation_port=9003, **kwargs)  # type: ignore[arg-type]
    assert (tmp_path / "ca" / "ca.crt").read_bytes() == ca_before
    cfg = load_config(out, env={})
    assert_tls_handshake(
        _server_context(cfg.listeners[1]), str(tmp_path / "ca" / "ca.crt"), "hs2.test"
    )


def test_without_ca_dir_the_certificate_is_self_signed(tmp_path: Path) -> None:
    cfg = load_config(
        generate_config(
            "127.0.0.1:9001", str(tmp_path / "hs.yaml"), port=9000, federation_port=9001
        ),
        env={},
    )
    federation = cfg.listeners[1]
    assert cfg.federation.ca_file is None
    assert federation.tls_certificate_path is not None
    assert_tls_handshake(_server_context(federation), federation.tls_certificate_path, "127.0.0.1")


def test_tls_on_the_single_listener(tmp_path: Path) -> None:
    cfg = load_config(generate_config("hs1", str(tmp_path / "hs.yaml"), tls=True), env={})
    (listener,) = cfg.listeners
    assert listener.tls and listener.resources == ("client", "federation")
    assert listener.tls_private_key_path is not None
    assert stat.S_IMODE(os.stat(listener.tls_private_key_path).st_mode) == 0o600


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"port": 9000, "federation_port": 9000}, "listeners"),
        ({"federation_port": 70000}, "listeners[1].port"),
        ({"static_map": {"hs2.test": "nowhere"}}, "federation.static_map['hs2.test']"),
        ({"static_map": {"bad name": "127.0.0.1:1"}}, "federation.static_map['bad name']"),
    ],
)
def test_bad_federation_arguments_leave_nothing_behind(
    tmp_path: Path, kwargs: dict[str, object], key: str
) -> None:
    out = tmp_path / "hs.yaml"
    with pytest.raises(ConfigError) as err:
        generate_config("hs1", str(out), ca_dir=str(tmp_path / "ca"), **kwargs)  # type: ignore[arg-type]
    assert err.value.file == str(out) and err.value.key == key
    assert list(tmp_path.iterdir()) == []
