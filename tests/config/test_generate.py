from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from config.generate import generate_config
from config.loader import ConfigError, load_config
from tests.config.test_keys import seed_of


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
    for section in ("listeners:", "database:", "registration:", "limits:", "redis:", "rabbitmq:"):
        assert f"\n{section}\n" in text
    for key in (
        "signing_key_path",
        "token_secret_path",
        "media_store_path",
        "default_room_version",
        "recall_window_ms",
        "log_level",
        "public_baseurl",
        "federation_verify_tls",
    ):
        assert f"\n{key}: " in text
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
