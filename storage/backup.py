"""Online backup and restore of what a server keeps on disk: the database, the media
store and the two key files.

A backup directory holds ``manifest.json``, the database (``homeserver.db`` made with
SQLite's online backup API, or ``database.sql`` made by ``mariadb-dump
--single-transaction``), ``media/`` and ``keys/``. Both database copies are one
consistent snapshot taken while the server keeps running: SQLite's backup reads inside
one read transaction (WAL readers do not block the writer), and InnoDB's consistent
read does the same for MariaDB. The database is copied before the media: media files
are written (atomically, never changed) before the row that names them is committed,
so every file the copied database refers to is on disk when the media copy starts.

Restore writes into a stopped server's paths: it refuses to overwrite an existing
database unless told to, and never leaves a stale SQLite WAL beside a restored file.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import attrs
from sqlalchemy.engine import URL, make_url

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "homeserver.db"
MYSQL_FILE = "database.sql"


class BackupError(Exception):
    """One line for the operator: what could not be done and why."""


@attrs.frozen
class ServerFiles:
    """Where a server keeps its state (from its config)."""

    server_name: str
    database_url: str
    media_store_path: Path
    signing_key_path: Path
    token_secret_path: Path


@attrs.frozen
class BackupReport:
    database: str
    media_files: int
    path: Path


def backup(files: ServerFiles, dest: Path) -> BackupReport:
    """Copy a running server's state into the new directory ``dest``."""
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} exists and is not empty")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    url = make_url(files.database_url)
    if url.get_backend_name() == "sqlite":
        _backup_sqlite(_sqlite_path(url), partial / SQLITE_FILE)
        kind = "sqlite"
    else:
        _backup_mysql(url, partial / MYSQL_FILE)
        kind = "mysql"
    media = _copy_media(files.media_store_path, partial / "media")
    keys = partial / "keys"
    keys.mkdir()
    for src in (files.signing_key_path, files.token_secret_path):
        shutil.copy2(src, keys / src.name)
    manifest = {
        "format": FORMAT, "server_name": files.server_name, "database": kind,
        "created_ts": int(time.time() * 1000), "media_files": media,
        "keys": {"signing_key": files.signing_key_path.name,
                 "token_secret": files.token_secret_path.name},
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if dest.exists():
        dest.rmdir()
    partial.rename(dest)  # a backup directory is whole or absent
    return BackupReport(kind, media, dest)


def restore(files: ServerFiles, src: Path, force: bool = False) -> BackupReport:
    """Bring the backup at ``src`` back into a stopped server's paths."""
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src}: not a Tricolor backup ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src}: backup format {manifest.get('format')!r} is not {FORMAT}")
    if manifest["server_name"] != files.server_name:
        # Every user, room and event id carries the server name: it cannot change.
        raise BackupError(
            f"the backup is of {manifest['server_name']}, the config is for {files.server_name}"
        )
    url = make_url(files.database_url)
    kind = "sqlite" if url.get_backend_name() == "sqlite" else "mysql"
    if manifest["database"] != kind:
        raise BackupError(f"the backup holds a {manifest['database']} database, the config uses {kind}")
    keys = ((src / "keys" / manifest["keys"]["signing_key"], files.signing_key_path),
            (src / "keys" / manifest["keys"]["token_secret"], files.token_secret_path))
    # Every refusal comes before the first write: a refused restore changes nothing.
    for saved, target in keys:
        if target.exists() and target.read_bytes() != saved.read_bytes() and not force:
            raise BackupError(f"{target} exists and differs from the backup's (use --force)")
    if kind == "sqlite":
        _restore_sqlite(src / SQLITE_FILE, _sqlite_path(url), force)
    else:
        _restore_mysql(src / MYSQL_FILE, url, force)
    media = _copy_media(src / "media", files.media_store_path)
    for saved, target in keys:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(saved, target)
    return BackupReport(kind, media, src)


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory database has nothing to back up")
    return Path(url.database)


def _backup_sqlite(db: Path, out: Path) -> None:
    if not db.exists():
        raise BackupError(f"{db}: no such database file")
    source = sqlite3.connect(db, timeout=30)
    target = sqlite3.connect(out)
    try:
        # All pages in one step: one read transaction, so one consistent snapshot even
        # while the server commits (a stepwise copy restarts on every write).
        source.backup(target)
        problems = target.execute("PRAGMA integrity_check").fetchall()
        if problems != [("ok",)]:
            raise BackupError(f"the copy of {db} fails its integrity check: {problems[:3]}")
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        target.close()
        source.close()


def _restore_sqlite(copy: Path, db: Path, force: bool) -> None:
    if db.exists() and not force:
        raise BackupError(f"{db} exists (stop the server; --force replaces it)")
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(db.name + ".restoring")
    shutil.copyfile(copy, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    # A WAL or shared-memory file of the replaced database would be replayed onto the
    # restored one: remove them before the new file takes the name.
    for suffix in ("-wal", "-shm", "-journal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    os.replace(tmp, db)


def _mysql_args(url: URL) -> tuple[list[str], dict[str, str]]:
    args = [f"--host={url.host or '127.0.0.1'}", f"--port={url.port or 3306}",
            f"--user={url.username or 'root'}"]
    env = dict(os.environ)
    if url.password:
        env["MYSQL_PWD"] = str(url.password)  # not on the command line, where ps shows it
    return args, env


def _tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise BackupError(f"{names[0]} is not installed (the MariaDB client tools are needed)")


def _backup_mysql(url: URL, out: Path) -> None:
    args, env = _mysql_args(url)
    dump = _tool("mariadb-dump", "mysqldump")
    with open(out, "wb") as f:
        # --single-transaction: an InnoDB consistent read, no table locks, the server keeps writing.
        done = subprocess.run(
            [dump, *args, "--single-transaction", "--routines", "--triggers", "--hex-blob",
             "--default-character-set=utf8mb4", str(url.database)],
            stdout=f, stderr=subprocess.PIPE, env=env, check=False,
        )
    if done.returncode != 0:
        raise BackupError(f"{dump} failed: {done.stderr.decode(errors='replace').strip()}")


def _restore_mysql(dump: Path, url: URL, force: bool) -> None:
    args, env = _mysql_args(url)
    client = _tool("mariadb", "mysql")
    probe = subprocess.run(
        [client, *args, "-N", "-e",
         "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()",
         str(url.database)],
        capture_output=True, env=env, check=False,
    )
    if probe.returncode != 0:
        raise BackupError(f"cannot open {url.database}: {probe.stderr.decode(errors='replace').strip()}")
    if int(probe.stdout.strip() or 0) and not force:
        raise BackupError(f"database {url.database} is not empty (stop the server; --force replaces it)")
    with open(dump, "rb") as f:
        done = subprocess.run([client, *args, str(url.database)], stdin=f, capture_output=True,
                              env=env, check=False)
    if done.returncode != 0:
        raise BackupError(f"{client} failed: {done.stderr.decode(errors='replace').strip()}")


def _copy_media(src: Path, dst: Path) -> int:
    """Copy every finished media file (never the writer's temporary files); returns the count."""
    count = 0
    if not src.exists():
        return 0
    for root, _dirs, names in os.walk(src):
        rel = Path(root).relative_to(src)
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                continue
            target = dst / rel / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copy2(Path(root) / name, target)
            count += 1
    return count
