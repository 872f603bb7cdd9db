"""``python -m homeserver`` subcommands, run as a user runs them: as processes.

Each test starts the real command line on a config that ``generate-config``
wrote (SQLite under tmp_path) and checks what the operator sees: the output,
the exit status and what changed on disk or in the database.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from tests.conftest import MYSQL_DEFAULT_URL

REPO = Path(__file__).resolve().parents[2]
SERVER_NAME = "cli.test"


def tricolor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m homeserver ARGS`` with the environment a user would have."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRICOLOR_")}
    base.update(PYTHONPATH=str(REPO), TRICOLOR_BCRYPT_ROUNDS="4")
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args],
        cwd=REPO, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "hs.yaml"
    result = tricolor("generate-config", "--server-name", SERVER_NAME, "--port", "18999", "-o", str(path))
    assert result.returncode == 0, result.stderr
    return path


def test_register_user_creates_the_user(config: Path) -> None:
    made = tricolor("register-user", "-c", str(config), "--user", "bob", "--password", "pw-bob")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == f"@bob:{SERVER_NAME}"
    admin = tricolor("register-user", "-c", str(config), "--user", "root", "--password", "pw", "--admin")
    assert admin.returncode == 0, admin.stderr
    # The user now exists: a second registration of the same name is refused.
    again = tricolor("register-user", "-c", str(config), "--user", "bob", "--password", "other")
    assert again.returncode == 1
    assert again.stderr.strip() == "M_USER_IN_USE: User ID already taken."


def test_migrate_brings_a_new_database_up_to_date(config: Path) -> None:
    for _ in range(2):  # the second run finds nothing to do
        result = tricolor("migrate", "-c", str(config))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "database is up to date"


def test_rotate_key_retires_the_key_and_writes_a_new_one(config: Path) -> None:
    key_file = config.parent / f"data-{SERVER_NAME}" / "signing.key"
    old_version = key_file.read_text().split()[1]
    result = tricolor("rotate-key", "-c", str(config))
    assert result.returncode == 0, result.stderr
    new_version = key_file.read_text().split()[1]
    assert new_version != old_version
    assert result.stdout.strip() == (
        f"retired ed25519:{old_version}; now signing with ed25519:{new_version} "
        "(restart the server to use it)"
    )
    assert old_version in (key_file.parent / "signing.key.old").read_text()


def test_generate_config_refuses_to_overwrite_and_names_the_flag(config: Path) -> None:
    before = config.read_text()
    again = tricolor("generate-config", "--server-name", "other.test", "-o", str(config))
    assert again.returncode == 2
    assert again.stderr.strip() == f"config error: {config}: already exists; choose another path or pass --force"
    assert config.read_text() == before
    forced = tricolor("generate-config", "--server-name", "other.test", "-o", str(config), "--force")
    assert forced.returncode == 0, forced.stderr
    assert 'server_name: "other.test"' in config.read_text()


# ---- operator mistakes: one line naming the setting, exit status 2 -----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mysql_server() -> URL:
    """The test MariaDB (host, port, user); skips when it is down, unless CI requires it."""
    url = make_url(os.environ.get("TRICOLOR_TEST_MYSQL_URL", MYSQL_DEFAULT_URL))
    try:
        socket.create_connection((url.host or "127.0.0.1", url.port or 3306), timeout=3).close()
    except OSError as exc:
        if os.environ.get("TRICOLOR_REQUIRE_MYSQL") == "1":
            raise
        pytest.skip(f"MariaDB unreachable: {exc}")
    return url


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["run", "migrate", "register-user"])
def test_closed_database_port_is_one_line(config: Path, command: str) -> None:
    port = _free_port()
    url = f"mysql+asyncmy://tri:s3cret-pw@127.0.0.1:{port}/hs2"
    extra = ["--user", "bob", "--password", "pw"] if command == "register-user" else []
    line = _one_line(tricolor(command, "-c", str(config), *extra, env={"TRICOLOR_DATABASE_URL": url}))
    assert line.startswith(
        f"database error: $TRICOLOR_DATABASE_URL: cannot open 127.0.0.1:{port}/hs2: "
        "nothing answers at that address and port"
    )
    assert "s3cret-pw" not in line


def test_wrong_database_password_is_one_line(config: Path) -> None:
    server = _mysql_server()
    url = server.set(password="not-the-password", database="test").render_as_string(hide_password=False)
    text = config.read_text().replace(_sqlite_url(config), url)
    config.write_text(text)
    for command in ("migrate", "run"):
        line = _one_line(tricolor(command, "-c", str(config)))
        assert line.startswith(
            f"database error: {config}: database.url: cannot open {server.host}:{server.port or 3306}/test: "
            "wrong user name or password"
        )
        assert "not-the-password" not in line


def test_missing_database_is_one_line(config: Path) -> None:
    server = _mysql_server()
    name = f"tri_missing_{secrets.token_hex(4)}"
    url = server.set(database=name).render_as_string(hide_password=False)
    for command in ("migrate", "run"):
        line = _one_line(tricolor(command, "-c", str(config), env={"TRICOLOR_DATABASE_URL": url}))
        assert line.startswith(
            f"database error: $TRICOLOR_DATABASE_URL: cannot open {server.host}:{server.port or 3306}/{name}: "
            "no such database; create it first"
        )


def _sqlite_url(config: Path) -> str:
    return f"sqlite+aiosqlite:///./data-{SERVER_NAME}/homeserver.db"


@pytest.mark.parametrize("url", ["postgres://tri:s3cret-pw@db.example/hs2", "foo://bar"])
def test_unsupported_database_is_refused_by_every_command(config: Path, tmp_path: Path, url: str) -> None:
    scheme = url.partition("://")[0] + "://"
    expected = (
        f"database.url: unsupported database {scheme!r}; use sqlite+aiosqlite:///FILE or "
        "mysql+asyncmy://USER:PASSWORD@HOST:PORT/DATABASE"
    )
    for command in ("run", "migrate"):
        line = _one_line(tricolor(command, "-c", str(config), env={"TRICOLOR_DATABASE_URL": url}))
        assert line == f"config error: {config}: {expected.replace(': ', ' (from $TRICOLOR_DATABASE_URL): ', 1)}"
    out = tmp_path / "new.yaml"
    line = _one_line(
        tricolor("generate-config", "--server-name", "hs2.test", "--database-url", url, "-o", str(out))
    )
    assert line == f"config error: {out}: {expected}"
    assert "s3cret-pw" not in line
    assert not out.exists() and not (tmp_path / "data-hs2.test").exists()


def test_bad_signing_key_names_the_setting_and_the_file(config: Path) -> None:
    key_file = config.parent / f"data-{SERVER_NAME}" / "signing.key"
    key_file.write_text("not a key\n")
    for command in (["run"], ["register-user", "--user", "bob", "--password", "pw"]):
        line = _one_line(tricolor(command[0], "-c", str(config), *command[1:]))
        assert line == (
            f"config error: {config}: signing_key_path: {key_file}: not a signing key file: "
            "signing key line must be 'ed25519 <version> <seed>'"
        )
    key_file.unlink()
    key_file.mkdir()
    line = _one_line(tricolor("run", "-c", str(config)))
    assert line == f"config error: {config}: signing_key_path: {key_file}: cannot read secret file: Is a directory"
