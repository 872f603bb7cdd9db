"""Rate-limit token buckets in Redis, shared by every worker process.

One Lua script per take keeps read-refill-take atomic on the Redis server; each bucket
is a hash (tokens, ts) that expires once it would be full again, so idle keys go away.
Satisfies ``homeserver.services.ratelimit.BucketStore`` (structurally: the outbound
adapters do not import the services).

Redis being away must not stop chat (issue 18, fault drills): every call has a short
timeout, and while Redis cannot be reached the buckets of this process (``local``) decide,
so limits still hold per worker; Redis takes over again as soon as it answers.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# Seconds a take may wait on Redis: a rate-limit check is on every send's path.
REDIS_TIMEOUT = 0.5


class LocalBuckets(Protocol):
    async def take(self, key: str, limit: Any, now_ms: int) -> int: ...

_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local last = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.max(1, math.ceil((1 - tokens) * 1000 / rate))
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class RedisBuckets:
    def __init__(self, url: str, server_name: str, local: LocalBuckets) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
        )
        # Several homeservers may share one Redis: each keeps its own buckets.
        self._prefix = f"tricolor:rl:{server_name}:"
        self._script: Any = self._redis.register_script(_TAKE)
        self._local = local
        self._degraded = False

    async def take(self, key: str, limit: Any, now_ms: int) -> int:
        try:
            wait = int(await self._script(
                keys=[self._prefix + key], args=[limit.per_second, limit.burst_count, now_ms],
            ))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if not self._degraded:
                log.warning("Redis unreachable (%s): rate limits are per process until it answers", exc)
                self._degraded = True
            return await self._local.take(key, limit, now_ms)
        if self._degraded:
            log.info("Redis answers again: rate limits are shared again")
            self._degraded = False
        return wait

    async def ping(self) -> bool:
        """Whether Redis answers (for /ready)."""
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._redis.aclose()
