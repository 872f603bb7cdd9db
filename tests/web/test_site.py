"""The web client's listener, over plain HTTP: a strict Content-Security-Policy on every
answer, hashed assets served compressed and cached, nothing outside dist/, where the API
is, the first-load budget, and a clear error when the client was never built."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import attrs
import pytest

from client_api.web_client import content_security_policy, web_client_site
from config.errors import ConfigError
from config.schema import HomeserverConfig, WebClientConfig
from tests.web.harness import REPO

FIRST_LOAD_BUDGET = 150 * 1024  # compressed JavaScript + CSS + HTML (issue 16)


def fetch(url: str, encoding: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding} if encoding else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_first_load_is_under_150_kb_compressed(web_dist: Path) -> None:
    size = json.loads((web_dist / "size.json").read_text())
    assert size["gzip_bytes"] < FIRST_LOAD_BUDGET, size
    assert size["brotli_bytes"] < size["gzip_bytes"] < size["raw_bytes"]


def test_pages_carry_a_strict_policy_and_assets_come_compressed(server_factory: Any) -> None:
    hs = server_factory()
    status, headers, body = fetch(hs.web_url)
    assert status == 200 and b'<div id="app"' in body
    csp = headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"  # no inline, no eval
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    connect = directives["connect-src"].split()
    assert hs.base_url in connect and hs.base_url.replace("http", "ws") in connect
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    assert not re.search(rb"<script(?![^>]*\bsrc=)", body), "inline script in index.html"

    # The hashed bundle: gzip on the wire, cached for good, with the same policy.
    total = len(body)
    for name in re.findall(rb'/assets/(app\.[0-9a-f]+\.(?:js|css))', body):
        status, headers, data = fetch(f"{hs.web_url}assets/{name.decode()}", encoding="gzip")
        assert status == 200 and headers.get("Content-Encoding") == "gzip"
        assert "immutable" in headers["Cache-Control"] and "Content-Security-Policy" in headers
        total += len(data)
    assert total < FIRST_LOAD_BUDGET

    status, _, data = fetch(hs.web_url + "config.json")
    assert status == 200 and json.loads(data) == {"default_server_url": hs.base_url}

    for path in ("assets/..%2Findex.html", "assets/../../pyproject.toml", "assets/nothing.js", "_matrix/client/versions"):
        status, _, _ = fetch(hs.web_url + path)
        assert status == 404, path
    # ...and the client API is not served on this origin (tokens never meet this page's origin).
    status, _, _ = fetch(hs.base_url + "/assets/" + re.findall(rb'app\.[0-9a-f]+\.js', body)[0].decode())
    assert status == 404


def test_the_policy_allows_only_the_api_and_the_configured_sources() -> None:
    csp = content_security_policy("https://matrix.example.org", ())
    connect = dict(d.strip().split(" ", 1) for d in csp.split(";"))["connect-src"].split()
    assert connect == ["'self'", "https://matrix.example.org", "wss://matrix.example.org"]


def test_a_client_that_was_never_built_is_a_config_error(tmp_path: Path) -> None:
    cfg = HomeserverConfig(server_name="web.test", web_client=WebClientConfig(port=8099, dist_path=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"no index\.html; build the client first"):
        web_client_site(cfg)
    (tmp_path / "index.html").write_text("<!doctype html>")
    site = web_client_site(attrs.evolve(cfg, public_baseurl="https://matrix.example.org/"))
    assert site.server_url == "https://matrix.example.org/"


def test_the_repository_builds_the_client_instead_of_committing_it() -> None:
    ignored = (REPO / ".gitignore").read_text()
    assert "/web/dist/" in ignored and "/web/node_modules/" in ignored
