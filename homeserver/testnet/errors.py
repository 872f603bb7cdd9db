"""The one error the testnet commands report to the user."""

from __future__ import annotations


class TestnetError(Exception):
    """A problem the user can act on; printed as ``testnet: <message>`` with exit code 1."""

    __test__ = False  # not a pytest test class, despite the name
