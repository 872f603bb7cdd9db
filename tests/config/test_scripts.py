from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["scripts/services.sh", "scripts/test", ".ci/run"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_bash(script: str) -> None:
    path = REPO_ROOT / script
    assert os.access(path, os.X_OK)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert "set -euo pipefail" in path.read_text()


def test_services_rejects_unknown_service() -> None:
    result = subprocess.run(
        [str(REPO_ROOT / "scripts/services.sh"), "postgres"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "unknown service 'postgres'" in result.stderr
