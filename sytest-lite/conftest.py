"""sytest-lite: a black-box Matrix Client-Server conformance suite.

Everything here talks plain HTTP to a homeserver given with ``--hs-url URL`` (or the
``SYTEST_HS_URL`` environment variable). Nothing imports homeserver code.

Federation tests (``federation/``) also need a second homeserver federating with the
first: ``--hs2-url URL`` (or ``SYTEST_HS2_URL``); without it they are skipped.

Fixtures:
  hs       -> ``HS``: an aiohttp session bound to the base URL, with helpers:
                 ``await hs.request(method, path, ...)`` -> ``Resp``
                 ``await hs.register(...)``               -> ``User`` (fresh random user)
                 ``hs.server_name``                       (learned from the first registration)
  user     -> a freshly registered ``User`` (function scope).
  hs2      -> ``HS`` for the second homeserver (``--hs2-url``); skips the test without it.
  admin    -> a server admin made with ``--shared-secret`` (``SYTEST_SHARED_SECRET``): the
              Synapse-compatible admin API tests (test_80_admin.py); skipped without it.

``User`` wraps authenticated calls (``Authorization: Bearer``) and common steps:
``create_room``, ``join``, ``invite``, ``leave``, ``send_message``, ``put_state``,
``get_state``, ``sync``, ``sync_until``, ``messages`` ...
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # so test modules can `import sltools` in any import mode
    sys.path.insert(0, str(HERE))

from sltools import HS, User  # noqa: E402

# --------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sytest-lite")
    group.addoption(
        "--hs-url",
        action="store",
        default=None,
        help="Base URL of the homeserver under test, e.g. http://127.0.0.1:18008 "
        "(default: $SYTEST_HS_URL)",
    )
    group.addoption(
        "--shared-secret",
        action="store",
        default=None,
        help="The server's registration shared secret, to make an admin for the admin API "
        "tests (default: $SYTEST_SHARED_SECRET; without it those tests are skipped)",
    )
    group.addoption(
        "--hs2-url",
        action="store",
        default=None,
        help="Client API base URL of a second homeserver that federates with the first, "
        "for the tests in federation/ (default: $SYTEST_HS2_URL)",
    )


def _hs_url(config: pytest.Config) -> str | None:
    url = config.getoption("--hs-url", default=None) or os.environ.get("SYTEST_HS_URL")
    return url.rstrip("/") if url else None


def _hs2_url(config: pytest.Config) -> str | None:
    url = config.getoption("--hs2-url", default=None) or os.environ.get("SYTEST_HS2_URL")
    return url.rstrip("/") if url else None


FEDERATION_DIR = HERE / "federation"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "known_bug(impl, reason, on='hs'): a bug of server implementation IMPL ('tricolor', "
        "'synapse'); the test is xfail(strict=True) when the server named by ON ('hs', 'hs2', "
        "'any', or in federation/ 'home'/'away') is that implementation",
    )


_impl_cache: dict[str, str] = {}


def server_impl(url: str, env_name: str | None = None) -> str:
    """Which homeserver implementation serves ``url``: ``$SYTEST_HS_IMPL`` /
    ``$SYTEST_HS2_IMPL`` if set, else a guess from HTTP: a ``Server: Synapse/...`` header
    means ``synapse``; a JSON ``GET /health`` answer ``{"status": "ok"}`` means
    ``tricolor``; anything else ``unknown``. Only used to apply ``known_bug`` markers."""
    if env_name and os.environ.get(env_name):
        return os.environ[env_name].lower()
    if url in _impl_cache:
        return _impl_cache[url]
    import json
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    impl = "unknown"
    try:
        with opener.open(f"{url}/_matrix/client/versions", timeout=5) as r:
            if r.headers.get("Server", "").startswith("Synapse/"):
                impl = "synapse"
        if impl == "unknown":
            with opener.open(f"{url}/health", timeout=5) as r:
                if json.load(r) == {"status": "ok"}:
                    impl = "tricolor"
    except (OSError, ValueError):
        pass
    _impl_cache[url] = impl
    return impl


def _apply_known_bugs(config: pytest.Config, item: pytest.Item) -> None:
    urls = {"hs": (_hs_url(config), "SYTEST_HS_IMPL"), "hs2": (_hs2_url(config), "SYTEST_HS2_IMPL")}
    direction = getattr(item, "callspec", None) and item.callspec.params.get("direction")
    if direction:
        urls["home"] = urls["hs"] if direction == "1to2" else urls["hs2"]
        urls["away"] = urls["hs2"] if direction == "1to2" else urls["hs"]
    for mark in item.iter_markers("known_bug"):
        impl = mark.args[0].lower()
        reason = mark.kwargs.get("reason") or (mark.args[1] if len(mark.args) > 1 else "")
        on = mark.kwargs.get("on", "hs")
        roles = [r for r in (("hs", "hs2") if on == "any" else (on,)) if urls.get(r, (None,))[0]]
        if any(server_impl(*urls[r]) == impl for r in roles):
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"{impl} bug: {reason}"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_hs, has_hs2 = bool(_hs_url(config)), bool(_hs2_url(config))
    skip = pytest.mark.skip(reason="sytest-lite needs --hs-url URL or SYTEST_HS_URL")
    skip_fed = pytest.mark.skip(
        reason="federation tests need a second server: --hs2-url URL or SYTEST_HS2_URL"
    )
    for item in items:
        parents = Path(str(item.fspath)).resolve().parents
        if HERE not in parents:
            continue
        if not has_hs:
            item.add_marker(skip)
        elif FEDERATION_DIR in parents and not has_hs2:
            item.add_marker(skip_fed)
        else:
            _apply_known_bugs(config, item)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def hs_url(request: pytest.FixtureRequest) -> str:
    url = _hs_url(request.config)
    if not url:
        pytest.skip("sytest-lite needs --hs-url URL or SYTEST_HS_URL")
    return url


@pytest.fixture
async def hs(hs_url: str):
    async with aiohttp.ClientSession() as session:
        yield HS(session, hs_url)


@pytest.fixture
async def user(hs: HS) -> User:
    return await hs.register(prefix="a")


@pytest.fixture
def make_user(hs: HS) -> Callable[..., Awaitable[User]]:
    """Factory: ``bob = await make_user()``."""

    async def _make(**kw: Any) -> User:
        return await hs.register(**kw)

    return _make


@pytest.fixture
def shared_secret(request: pytest.FixtureRequest) -> str:
    secret = request.config.getoption("--shared-secret", default=None) or os.environ.get("SYTEST_SHARED_SECRET")
    if not secret:
        pytest.skip("admin API tests need --shared-secret or SYTEST_SHARED_SECRET")
    return secret


@pytest.fixture
async def admin(hs: HS, shared_secret: str) -> User:
    """A server admin, registered through Synapse's shared-secret registration API."""
    return await hs.register_admin(shared_secret)


@pytest.fixture
def hs2_url(request: pytest.FixtureRequest) -> str:
    url = _hs2_url(request.config)
    if not url:
        pytest.skip("federation tests need a second server: --hs2-url URL or SYTEST_HS2_URL")
    return url


@pytest.fixture
async def hs2(hs2_url: str):
    async with aiohttp.ClientSession() as session:
        yield HS(session, hs2_url)
