"""sytest-lite: a black-box Matrix Client-Server conformance suite.

Everything here talks plain HTTP to a homeserver given with ``--hs-url URL`` (or the
``SYTEST_HS_URL`` environment variable). Nothing imports homeserver code.

Fixtures:
  hs       -> ``HS``: an aiohttp session bound to the base URL, with helpers:
                 ``await hs.request(method, path, ...)`` -> ``Resp``
                 ``await hs.register(...)``               -> ``User`` (fresh random user)
                 ``hs.server_name``                       (learned from the first registration)
  user     -> a freshly registered ``User`` (function scope).

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


def _hs_url(config: pytest.Config) -> str | None:
    url = config.getoption("--hs-url", default=None) or os.environ.get("SYTEST_HS_URL")
    return url.rstrip("/") if url else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _hs_url(config):
        return
    skip = pytest.mark.skip(reason="sytest-lite needs --hs-url URL or SYTEST_HS_URL")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


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
