"""Fixtures for the federation tests: two homeservers, users on each, a shared room.

Every test runs in both directions (``1to2``: the room lives on ``--hs-url`` and a user
of ``--hs2-url`` joins it; ``2to1``: the other way round), so each server is exercised
both as the room's origin and as the remote joiner.

  home, away  -> the ``HS`` whose user creates the room, and the other one
  alice       -> a fresh user on ``home`` (creates rooms)
  bob         -> a fresh user on ``away`` (joins them over federation)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # so test modules can `import fedtools` in any import mode
    sys.path.insert(0, str(HERE))

from sltools import HS, User  # noqa: E402


@pytest.fixture(params=["1to2", "2to1"])
def direction(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def home(direction: str, hs: HS, hs2: HS) -> HS:
    return hs if direction == "1to2" else hs2


@pytest.fixture
def away(direction: str, hs: HS, hs2: HS) -> HS:
    return hs2 if direction == "1to2" else hs


@pytest.fixture
async def alice(home: HS) -> User:
    return await home.register(prefix="fa")


@pytest.fixture
async def bob(away: HS) -> User:
    return await away.register(prefix="fb")
