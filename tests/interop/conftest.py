"""Interop tests run real server processes (a Tricolor and a Synapse peer); they are
marked ``interop`` so they can be selected (``-m interop``) or left out (``-m 'not interop'``).

Synapse comes from ``$SYNAPSE_VENV`` (default ``.cache/synapse-venv`` in the
repository, ignored by git), which ``sytest-lite/synapse/start_peer.sh`` creates
with ``pip install matrix-synapse`` (about 240 MB) if needed. When Synapse cannot
be installed or started the tests are skipped, unless ``TRICOLOR_REQUIRE_SYNAPSE=1``
(CI; then they fail). ``TRICOLOR_SKIP_INTEROP=1`` skips them without installing
anything, for local runs; CI's requirement wins over it.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "interop: runs Tricolor against another homeserver implementation (Synapse) "
        "in real processes; slow (about a minute)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("TRICOLOR_SKIP_INTEROP") != "1":
        return
    if os.environ.get("TRICOLOR_REQUIRE_SYNAPSE") == "1":
        raise pytest.UsageError(
            "TRICOLOR_SKIP_INTEROP=1 and TRICOLOR_REQUIRE_SYNAPSE=1 contradict each other; "
            "CI requires the interop tests"
        )
    skip = pytest.mark.skip(reason="TRICOLOR_SKIP_INTEROP=1: interop tests skipped on request")
    for item in items:
        if "interop" in item.keywords:
            item.add_marker(skip)
