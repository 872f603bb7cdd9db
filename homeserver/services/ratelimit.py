"""Rate limits: token buckets per user or per IP (spec "Rate limiting": 429
M_LIMIT_EXCEEDED with retry_after_ms).

Buckets live behind ``BucketStore``: in memory for one process, in Redis
(homeserver/outbound/redis_buckets.py) when configured, so every worker shares them.
Requesters with ``rate_limited`` false (admins, application services) are never
limited; a per-user override (admin API ``override_ratelimit``) replaces the
configured rate for that user, and 0/0 exempts them. Overrides are read from the
database and kept per user for at most ``override_ttl_ms``, so a change made through
any worker applies on every worker within that time (the worker that made it: at once).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Protocol

import attrs

from homeserver.core.errors import MatrixError
from homeserver.services.lru import LruCache


@attrs.frozen
class Limit:
    per_second: float
    burst_count: int

    @property
    def off(self) -> bool:
        return self.per_second <= 0 or self.burst_count <= 0


class OverrideSource(Protocol):
    async def get_override(self, user_id: str) -> tuple[float, int] | None:
        """The user's (messages_per_second, burst_count), or None."""
        ...


class BucketStore(Protocol):
    async def take(self, key: str, limit: Limit, now_ms: int) -> int:
        """Take one token; 0 when allowed, else the milliseconds until one is available."""
        ...


class MemoryBuckets:
    """Buckets of one process; the oldest are dropped past ``max_keys`` (a dropped
    bucket is a full one, which errs towards letting a request through)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._max = max_keys

    async def take(self, key: str, limit: Limit, now_ms: int) -> int:
        tokens, last = self._buckets.pop(key, (float(limit.burst_count), now_ms))
        tokens = min(float(limit.burst_count), tokens + (now_ms - last) * limit.per_second / 1000)
        wait = 0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = max(1, math.ceil((1 - tokens) * 1000 / limit.per_second))
        self._buckets[key] = (tokens, now_ms)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait


def _now_ms() -> int:
    return int(time.time() * 1000)


class RateLimiter:
    def __init__(
        self, buckets: BucketStore, limits: Mapping[str, Limit],
        overrides: OverrideSource | None = None, enabled: bool = True, override_ttl_ms: int = 10_000,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._buckets = buckets
        self._limits = dict(limits)
        self._source = overrides
        # user -> (override or None, when it was read); bounded, the oldest go first.
        self._overrides: LruCache[str, tuple[Limit | None, int]] = LruCache(100_000)
        self._ttl = override_ttl_ms
        self._clock = clock
        self.enabled = enabled

    def set_override(self, user_id: str, limit: Limit | None) -> None:
        """This worker's admin API changed it: no need to wait for the next read."""
        self._overrides.put(user_id, (limit, self._clock()))

    async def _override(self, user_id: str) -> Limit | None:
        if self._source is None:
            return None
        cached = self._overrides.get(user_id)
        now = self._clock()
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        got = await self._source.get_override(user_id)
        limit = Limit(*got) if got is not None else None
        self._overrides.put(user_id, (limit, now))
        return limit

    async def check(self, action: str, key: str, *, user_id: str | None = None, exempt: bool = False) -> None:
        """Take a token from ``action``'s bucket for ``key``, or raise 429 M_LIMIT_EXCEEDED.

        ``user_id``: whose override applies; ``exempt``: the requester is not limited."""
        if not self.enabled or exempt:
            return
        limit = self._limits[action]
        if user_id is not None:
            override = await self._override(user_id)
            if override is not None:
                limit = override
        if limit.off:
            return
        wait = await self._buckets.take(f"{action}:{key}", limit, self._clock())
        if wait:
            raise MatrixError(
                429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=wait,
            )
