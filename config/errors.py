"""The one exception the config package raises for anything an operator must fix."""

from __future__ import annotations


class ConfigError(Exception):
    """A config problem, phrased so the operator can fix it without reading code.

    ``file``, ``key`` and ``problem`` are kept separately for callers and tests;
    ``str(err)`` is ``"<file>: <key>: <problem>"`` (parts that are unknown are left out).
    """

    def __init__(self, problem: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        super().__init__(": ".join(part for part in (file, key, problem) if part))
