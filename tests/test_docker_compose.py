"""docker-compose.federation.yml and the Dockerfile, checked offline: no Docker engine runs
here (or in CI).

`docker-compose config -q` (Debian's docker-compose) validates the compose file against the
Compose schema and resolves anchors and paths; the rest checks what the file is for: two
servers of two workers each, each server with its own broker carrying the shovel and
management plugins, MariaDB and Redis, health checks and named volumes everywhere, and
mounted configs (all under config/compose/) that exist and load with our own loader.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.loader import load_config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.federation.yml"
WORKERS = {"hs1": ("hs1", "hs1-worker2"), "hs2": ("hs2", "hs2-worker2")}


def _compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is required in CI (.ci/run installs it)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return binary


def _services() -> dict[str, Any]:
    done = subprocess.run(
        [_compose(), "-f", str(COMPOSE), "config"], cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)["services"]


def _binds(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path for the files the service mounts from the repository."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict) and volume.get("type") == "bind":
            out[volume["target"]] = Path(volume["source"])
        elif isinstance(volume, str) and volume.startswith(("/", ".")):
            source, target = volume.split(":")[:2]
            out[target] = (ROOT / source).resolve()
    return out


def _named(service: dict[str, Any]) -> set[str]:
    """The named volumes the service mounts."""
    out = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict) and volume.get("type") == "volume":
            out.add(volume["source"])
        elif isinstance(volume, str) and not volume.startswith(("/", ".")):
            out.add(volume.split(":")[0])
    return out


def _port_target(port: str | dict[str, Any]) -> str:
    """The container side of a published port (short "ip:host:container" or long form)."""
    target = str(port["target"]) if isinstance(port, dict) else str(port).rsplit(":", 1)[-1]
    return target.split("/")[0]  # "9000/tcp"


def test_compose_file_is_valid() -> None:
    done = subprocess.run(
        [_compose(), "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_two_servers_of_two_workers_federating_over_their_own_brokers() -> None:
    services = _services()
    assert set(services) == {*WORKERS["hs1"], *WORKERS["hs2"], "rabbitmq1", "rabbitmq2", "mariadb", "redis"}
    plugins = (ROOT / "config/compose/enabled_plugins").read_text()
    for plugin in ("rabbitmq_management", "rabbitmq_shovel", "rabbitmq_shovel_management"):
        assert plugin in plugins
    for i, (server, workers) in enumerate(WORKERS.items(), start=1):
        rabbit = services[f"rabbitmq{i}"]
        assert _binds(rabbit)["/etc/rabbitmq/enabled_plugins"] == ROOT / "config/compose/enabled_plugins"
        configs = {_binds(services[w])["/config/homeserver.yaml"] for w in workers}
        assert configs == {ROOT / f"config/compose/{server}.yaml"}  # one config per server
        data = {frozenset(_named(services[w])) for w in workers}
        assert data == {frozenset({"ca", f"{server}-data"})}  # one data volume (key, media)
        names = [services[w]["environment"]["TRICOLOR_WORKER_NAME"] for w in workers]
        assert len(set(names)) == 2
        assert f"rabbitmq{i}" in services[workers[0]]["depends_on"]
        assert workers[0] in services[workers[1]]["depends_on"]
        cfg = load_config(str(ROOT / f"config/compose/{server}.yaml"), env={})
        assert cfg.server_name == f"{server}.example"
        assert cfg.federation.transport == "amqp"
        for url in (cfg.rabbitmq.url, cfg.rabbitmq.management_url, cfg.rabbitmq.advertise_url):
            assert url is not None and f"@rabbitmq{i}:" in url  # its own broker
        assert cfg.database.url.startswith("mysql+asyncmy://") and cfg.database.url.endswith(f"/{server}")
        assert cfg.redis.url is not None and cfg.redis.url.startswith("redis://redis:")
        assert cfg.event_bus.enabled
        metrics = [listener for listener in cfg.listeners if listener.resources == ("metrics",)]
        assert len(metrics) == 1
        for w in workers:  # every worker's metrics port is published to the host
            assert str(metrics[0].port) in {_port_target(p) for p in services[w]["ports"]}


def test_every_service_has_a_health_check_and_persistent_state_is_in_named_volumes() -> None:
    services = _services()
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("rabbitmq1", "rabbitmq2", "mariadb"):
        assert _named(services[name]), f"{name} keeps its data in no named volume"
    for name, service in services.items():
        for condition in service.get("depends_on", {}).values():
            assert condition["condition"] == "service_healthy", name


def test_every_mounted_file_exists_and_every_config_loads() -> None:
    for name, service in _services().items():
        for target, source in _binds(service).items():
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert ROOT / "config/compose" in source.parents, f"{name}: configs live in config/compose/"
            if target == "/config/homeserver.yaml":
                load_config(str(source), env={})


def test_the_dockerfile_builds_a_slim_non_root_image_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip() and not ln.startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    assert froms and all(f.endswith("-slim") for f in froms)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(ln.startswith("HEALTHCHECK ") and "/health" in ln for ln in lines)
    copied = {ln.split()[1] for ln in lines if ln.startswith("COPY ") and "--from" not in ln}
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
    # Every package pyproject installs is copied (a missing one fails only at run time).
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in include:
        assert package.rstrip("*") in copied, f"the image lacks the {package.rstrip('*')} package"
    entrypoint = ROOT / "contrib/docker/entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    assert "tricolor run -c /config/homeserver.yaml" in entrypoint.read_text()
