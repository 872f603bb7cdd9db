"""docker-compose.federation.yml, checked offline: no Docker engine runs here (or in CI).

`docker-compose config -q` (Debian's docker-compose) validates the file against the Compose
schema and resolves anchors and paths; the rest checks what the file is for: two servers,
each with its own broker carrying the shovel and management plugins, MariaDB and Redis, and
homeserver configs that load and point each server at its own broker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from config.loader import load_config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.federation.yml"


def _compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is required in CI (.ci/run installs it)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return binary


def test_compose_file_is_valid() -> None:
    done = subprocess.run(
        [_compose(), "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_compose_file_describes_two_amqp_federating_servers() -> None:
    done = subprocess.run(
        [_compose(), "-f", str(COMPOSE), "config"], cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert {"hs1", "hs2", "rabbitmq1", "rabbitmq2", "mariadb", "redis"} <= set(services)
    plugins = (ROOT / "deploy/federation/enabled_plugins").read_text()
    for plugin in ("rabbitmq_management", "rabbitmq_shovel", "rabbitmq_shovel_management"):
        assert plugin in plugins
    for i in (1, 2):
        hs, rabbit = services[f"hs{i}"], services[f"rabbitmq{i}"]
        assert any(str(v).endswith("/etc/rabbitmq/enabled_plugins:ro") or
                   (isinstance(v, dict) and v.get("target") == "/etc/rabbitmq/enabled_plugins")
                   for v in rabbit["volumes"])
        assert f"rabbitmq{i}" in hs["depends_on"]
        cfg = load_config(str(ROOT / f"deploy/federation/hs{i}.yaml"), env={})
        assert cfg.server_name == f"hs{i}.example"
        assert cfg.federation.transport == "amqp"
        for url in (cfg.rabbitmq.url, cfg.rabbitmq.management_url, cfg.rabbitmq.advertise_url):
            assert url is not None and f"@rabbitmq{i}:" in url  # its own broker
        assert cfg.database.url.startswith("mysql+asyncmy://") and cfg.database.url.endswith(f"/hs{i}")
