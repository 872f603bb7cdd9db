"""Rate-limit token buckets in Redis, shared by every worker process.

One Lua script per take keeps read-refill-take atomic on the Redis server; each bucket
is a hash (tokens, ts) that expires once it would be full again, so idle keys go away.
Satisfies ``homeserver.services.ratelimit.BucketStore`` (structurally: the outbound
adapters do not import the services).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

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
    def __init__(self, url: str, server_name: str) -> None:
        self._redis = redis.Redis.from_url(url)
        # Several homeservers may share one Redis: each keeps its own buckets.
        self._prefix = f"tricolor:rl:{server_name}:"
        self._script: Any = self._redis.register_script(_TAKE)

    async def take(self, key: str, limit: Any, now_ms: int) -> int:
        return int(await self._script(
            keys=[self._prefix + key], args=[limit.per_second, limit.burst_count, now_ms],
        ))

    async def ping(self) -> bool:
        """Whether Redis answers (for /ready)."""
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._redis.aclose()
