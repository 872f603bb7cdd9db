"""Interop tests run real server processes (a Tricolor and a Synapse peer); they are
marked ``interop`` so they can be selected (``-m interop``) or left out (``-m 'not interop'``).

Synapse comes from ``$SYNAPSE_VENV`` (default ``/tmp/synapse-venv``), which
``sytest-lite/synapse/start_peer.sh`` creates with ``pip install matrix-synapse`` if
needed. When Synapse cannot be installed or started the tests are skipped, unless
``TRICOLOR_REQUIRE_SYNAPSE=1`` (then they fail).
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "interop: runs Tricolor against another homeserver implementation (Synapse) "
        "in real processes; slow (about a minute)",
    )
