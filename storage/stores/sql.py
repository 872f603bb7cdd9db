"""Small SQL helpers the stores share."""

from __future__ import annotations


def like_pattern(term: str) -> str:
    """A case-folded ``LIKE`` pattern matching ``term`` anywhere (use with ``escape="\\\\"``):
    the user's ``%``, ``_`` and backslashes match themselves."""
    return "%" + term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
