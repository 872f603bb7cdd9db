"""A circuit breaker per provider: after `failures` consecutive failures it opens and the
provider is not called for `cooldown_s`; then one request is let through (half-open) and
its result closes or reopens the circuit. Time comes from the caller's clock."""

from __future__ import annotations

from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float]) -> None:
        self._threshold = max(1, failures)
        self._cooldown = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self.openings = 0  # how many times it opened: a new opening may warn rooms again

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    @property
    def refusing(self) -> bool:
        """Open, and `allow` would say no now (no side effect, unlike `allow`)."""
        if self._opened_at is None:
            return False
        return self._trial or self._clock() - self._opened_at < self._cooldown

    def allow(self) -> bool:
        if self._opened_at is None:
            return True
        if not self._trial and self._clock() - self._opened_at >= self._cooldown:
            self._trial = True  # half-open: one request decides
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failure(self) -> bool:
        """Record a failure; True when this one opened the circuit."""
        self._failures += 1
        if self._trial or (self._opened_at is None and self._failures >= self._threshold):
            self._trial = False
            was_open = self._opened_at is not None
            self._opened_at = self._clock()
            if not was_open:
                self.openings += 1
                return True
        return False
