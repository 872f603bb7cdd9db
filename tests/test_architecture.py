"""The import rules (contracts in pyproject.toml, checked by import-linter): layers
(CLI -> composition root -> adapters -> shared HTTP -> services -> storage -> config ->
core), adapters without storage, a pure core, transport-free services, and SQL only in
storage."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("homeserver", "client_api", "federation", "storage", "config", "ai_assistant")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    # The tree in `root`, not the installed one; wide output keeps each contract on one line.
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "500"}
    return subprocess.run(
        [exe, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120, env=env,
    )


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("client_api/rooms.py", "import storage.stores.events", "Adapters call services, never storage"),
    ("federation/inbound/rooms.py", "import storage.stores.rooms", "Adapters call services, never storage"),
    ("homeserver/http/responses.py", "import storage.stores.users", "Adapters call services, never storage"),
    ("client_api/sync.py", "import federation.inbound.auth", "Layers"),
    ("homeserver/http/middleware.py", "import client_api.http", "Layers"),
    ("homeserver/services/rooms.py", "import homeserver.http.responses", "Layers"),
    ("homeserver/app.py", "import homeserver.__main__", "Layers"),
    ("homeserver/testnet/cli.py", "import homeserver.app", "Layers"),
    ("homeserver/services/push.py", "import storage.schema", "Services reach storage only through its stores"),
    ("federation/outbound/sender.py", "import storage.engine", "Services reach storage only through its stores"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as f:
        f.write(f"\n{line}\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    broken = [ln for ln in result.stdout.splitlines() if " BROKEN" in ln]
    assert len(broken) == 1 and broken[0].startswith(contract), broken


def test_services_take_only_store_classes_from_storage() -> None:
    """What services and outbound adapters import from storage is a store class (handed to
    them at construction); the records they exchange with stores are core types
    (homeserver/core/records.py), so no service depends on storage's own definitions."""
    import ast

    offenders = []
    for folder in ("homeserver/services", "homeserver/outbound", "federation/outbound"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("storage"):
                    offenders += [
                        f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                        for a in node.names if not a.name.endswith("Store")
                    ]
                elif isinstance(node, ast.Import):
                    offenders += [
                        f"{path.relative_to(ROOT)}: import {a.name}" for a in node.names if a.name.startswith("storage")
                    ]
    assert offenders == []
