"""Only federation.outbound opens connections to peers (the transport seam).

The import-linter contract in pyproject.toml covers aio-pika; it cannot tell aiohttp's
client from aiohttp.web (it sees whole external packages only), and the adapters rightly
use aiohttp.web. This test reads the source and finds any use of the aiohttp client
outside federation/outbound.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("homeserver", "client_api", "federation", "storage", "config")
# federation/outbound talks to peers; homeserver/outbound/push_gateway.py to push gateways.
ALLOWED = ROOT / "federation" / "outbound"
# homeserver/outbound/appservice.py to application services (spec: Application Service API).
ALLOWED_FILES = (
    ROOT / "homeserver" / "outbound" / "push_gateway.py",
    ROOT / "homeserver" / "outbound" / "appservice.py",
    # homeserver/outbound/internal_rpc.py to the other workers of this server (docs/workers.md).
    ROOT / "homeserver" / "outbound" / "internal_rpc.py",
)
# What aiohttp exports for making requests (aiohttp.client and its re-exports).
CLIENT_NAMES = {
    "ClientSession", "ClientTimeout", "ClientResponse", "ClientRequest", "ClientError",
    "TCPConnector", "UnixConnector", "BaseConnector", "request", "client",
}


def client_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every use of the aiohttp client in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("aiohttp.client")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiohttp"):
            if node.module.startswith("aiohttp.client"):
                found.append((node.lineno, node.module))
            else:
                found += [(node.lineno, f"aiohttp.{a.name}") for a in node.names if a.name in CLIENT_NAMES]
        elif (
            isinstance(node, ast.Attribute) and node.attr in CLIENT_NAMES
            and isinstance(node.value, ast.Name) and node.value.id == "aiohttp"
        ):
            found.append((node.lineno, f"aiohttp.{node.attr}"))
    return found


def test_the_check_sees_client_uses() -> None:
    assert client_uses("from aiohttp import web\nweb.json_response({})\n") == []
    assert [what for _, what in client_uses(
        "import aiohttp\nimport aiohttp.client\nfrom aiohttp import ClientSession, web\n"
        "from aiohttp.client import ClientTimeout\naiohttp.TCPConnector()\n"
    )] == ["aiohttp.client", "aiohttp.ClientSession", "aiohttp.client", "aiohttp.TCPConnector"]


def test_only_federation_outbound_uses_the_aiohttp_client() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if ALLOWED not in path.parents and path not in ALLOWED_FILES
        for line, what in client_uses(path.read_text())
    ]
    assert offenders == []
