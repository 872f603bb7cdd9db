"""Workers' shared stream positions and wake-ups over Redis (docs/workers.md).

One channel per homeserver carries every notice: ``stream US position US worker US
payload`` (US = the ASCII unit separator). Each process subscribes to it once, however
many clients wait on it.

Positions of durable streams (``events``) are allocated here and made visible through
a *persisted-up-to* position: ``take`` hands out ids and records them as in flight
(with the taking worker's lease); ``finish`` removes them and, in the same Lua script,
publishes the notice carrying the new persisted-up-to position (one below the lowest id
still in flight, else the last id handed out). Redis runs a script at a time and
delivers one channel's messages to a subscriber in publish order, so a process that
reads position P in a notice has already received the notice of every id up to P:
what it keeps in memory (recent events, membership changes, room heads it drops) is
complete up to P, and /sync tokens never pass an id that commits later. A worker that
dies leaves ids in flight; once its lease (renewed every lease/5) lapses, the next
``finish`` or any worker's tick drops them and the position moves on.

Ephemeral streams (typing, presence) need no in-flight set: ``post`` increments and
publishes in one script, so the position is the notice's own. ``broadcast`` sends a
notice without a position (token revocation). ``block`` reserves ids that only need
to be unique (state groups, outliers counting down).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as redis

log = logging.getLogger(__name__)

SEP = "\x1f"

# KEYS: counter, in-flight zset, lease key. ARGV: n, floor, member prefix, lease ms.
_TAKE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[2])
if cur < floor then redis.call('SET', KEYS[1], string.format('%d', floor)) end
local n = tonumber(ARGV[1])
local last = redis.call('INCRBY', KEYS[1], n)
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
for i = last - n + 1, last do
  redis.call('ZADD', KEYS[2], i, ARGV[3] .. string.format('%d', i))
end
return last
"""

# KEYS: counter, in-flight zset, persisted key.
# ARGV: channel, stream, worker, payload, lease key prefix, then in-flight members done.
# Publishes when there is a payload or the persisted-up-to position moved. Ids of a
# worker whose lease lapsed are dropped, announced first by a `lost` notice (their
# commits may be durable with no notice ever sent: memory caches cannot be trusted).
_FINISH = """
for i = 6, #ARGV do redis.call('ZREM', KEYS[2], ARGV[i]) end
local inflight = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local low = nil
local lost = nil
for i = 1, #inflight, 2 do
  local member = inflight[i]
  local owner = string.sub(member, 1, string.find(member, '|', 1, true) - 1)
  if redis.call('EXISTS', ARGV[5] .. owner) == 0 then
    redis.call('ZREM', KEYS[2], member)
    lost = tonumber(inflight[i + 1])
  elseif low == nil then
    low = tonumber(inflight[i + 1])
  end
end
if lost ~= nil then
  redis.call('PUBLISH', ARGV[1], 'lost\31' .. string.format('%d', lost) .. '\31' .. ARGV[3] .. '\31' .. ARGV[2])
end
local p
if low == nil then p = tonumber(redis.call('GET', KEYS[1]) or '0') else p = low - 1 end
local old = tonumber(redis.call('GET', KEYS[3]) or '0')
if p < old then p = old end
if p > old then redis.call('SET', KEYS[3], string.format('%d', p)) end
if ARGV[4] ~= '' or p > old then
  redis.call('PUBLISH', ARGV[1], ARGV[2] .. '\\31' .. string.format('%d', p) .. '\\31' .. ARGV[3] .. '\\31' .. ARGV[4])
end
return p
"""

# KEYS: counter. ARGV: channel, stream, worker, payload, floor.
_POST = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[5])
if cur < floor then redis.call('SET', KEYS[1], string.format('%d', floor)) end
local p = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. '\\31' .. string.format('%d', p) .. '\\31' .. ARGV[3] .. '\\31' .. ARGV[4])
return p
"""

# KEYS: counter. ARGV: floor (raise the counter to it, never lower it).
_SEED = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if cur < floor then redis.call('SET', KEYS[1], string.format('%d', floor)) return floor end
return cur
"""

def bus_namespace(server_name: str, database_url: str) -> str:
    """Keys and channel of one homeserver: its name and database (tests and several
    servers may share one Redis; the workers of one server share both)."""
    return f"{server_name}:{hashlib.sha256(database_url.encode()).hexdigest()[:12]}"


# KEYS: alive zset, urls hash. ARGV: worker, url ('' to leave), lease ms.
_REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# KEYS: alive zset, urls hash. Returns worker, url, worker, url, ... of live workers.
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('ZREM', KEYS[1], w)
  redis.call('HDEL', KEYS[2], w)
end
local out = {}
for _, w in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  table.insert(out, w)
  table.insert(out, redis.call('HGET', KEYS[2], w) or '')
end
return out
"""

# KEYS: shard claim keys. ARGV: worker, lease ms. Renews the ones this worker holds.
_RENEW = """
local held = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    table.insert(held, i)
  end
end
return held
"""

Handler = Callable[[str, int, str, str], None]  # (stream, position, worker, payload)
OnGap = Callable[[], Awaitable[None]]


class RedisBus:
    def __init__(
        self, url: str, server_name: str, worker: str, *, lease_ms: int = 15_000,
    ) -> None:
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self.worker = worker
        self._prefix = f"tricolor:{server_name}:"
        self.channel = self._prefix + "bus"
        self._lease_ms = lease_ms
        self._take: Any = self._redis.register_script(_TAKE)
        self._finish: Any = self._redis.register_script(_FINISH)
        self._post: Any = self._redis.register_script(_POST)
        self._seed: Any = self._redis.register_script(_SEED)
        self._register: Any = self._redis.register_script(_REGISTER)
        self._live: Any = self._redis.register_script(_LIVE)
        self._renew: Any = self._redis.register_script(_RENEW)
        self._url: str | None = None
        self._held: dict[int, float] = {}  # shard -> when its claim was last confirmed (loop time)
        self._floors: dict[str, int] = {}
        self._tracked: set[str] = set()  # durable streams whose position ticks may move
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()

    def _key(self, kind: str, stream: str) -> str:
        return f"{self._prefix}{kind}:{stream}"

    @property
    def _lease_key(self) -> str:
        return self._key("lease", self.worker)

    # -- positions -------------------------------------------------------------

    async def seed(self, stream: str, floor: int) -> int:
        """Raise the stream's counter to what the database holds (Redis may be new or
        emptied); returns the counter. Durable streams also start their persisted mark."""
        self._floors[stream] = max(self._floors.get(stream, 0), floor)
        value = int(await self._seed(keys=[self._key("seq", stream)], args=[floor]))
        return value

    async def persisted(self, stream: str) -> int:
        """The stream's persisted-up-to position (every id at or below it is durable).
        From now on this worker's ticks move it on when a dead worker's lease lapses."""
        self._tracked.add(stream)
        await self._finish_call(stream, [], "")
        return int(await self._redis.get(self._key("persisted", stream)) or 0)

    async def counter(self, stream: str) -> int:
        return int(await self._redis.get(self._key("seq", stream)) or 0)

    async def take(self, stream: str, n: int) -> list[int]:
        """n consecutive ids, in flight under this worker's lease until `finish`."""
        self._tracked.add(stream)
        last = int(await self._take(
            keys=[self._key("seq", stream), self._key("inflight", stream), self._lease_key],
            args=[n, self._floors.get(stream, 0), f"{self.worker}|", self._lease_ms],
        ))
        return list(range(last - n + 1, last + 1))

    async def finish(self, stream: str, ids: Sequence[int], payload: str) -> int:
        """The ids are durable (or failed: an empty payload just releases them); publish
        the payload with the stream's new persisted-up-to position."""
        return await self._finish_call(stream, [f"{self.worker}|{i}" for i in ids], payload)

    async def _finish_call(self, stream: str, members: list[str], payload: str) -> int:
        return int(await self._finish(
            keys=[self._key("seq", stream), self._key("inflight", stream), self._key("persisted", stream)],
            args=[self.channel, stream, self.worker, payload, self._key("lease", ""), *members],
        ))

    async def post(self, stream: str, payload: str) -> int:
        """An ephemeral change: its position and its notice in one step."""
        return int(await self._post(
            keys=[self._key("seq", stream)],
            args=[self.channel, stream, self.worker, payload, self._floors.get(stream, 0)],
        ))

    async def broadcast(self, stream: str, payload: str) -> None:
        """A notice without a position (e.g. revoked tokens)."""
        await self._redis.publish(self.channel, SEP.join((stream, "0", self.worker, payload)))

    async def block(self, name: str, n: int, step: int = 1) -> int:
        """Reserve n ids of a counter that only needs uniqueness; returns the last one
        (counting down when step is -1)."""
        return int(await self._redis.incrby(self._key("block", name), n * step))

    async def seed_block(self, name: str, floor: int, step: int = 1) -> None:
        # Counting down: keep the counter at or below the database's lowest id.
        if step > 0:
            await self._seed(keys=[self._key("block", name)], args=[floor])
        else:
            key = self._key("block", name)
            cur = await self._redis.get(key)
            if cur is None or int(cur) > floor:
                await self._redis.set(key, floor)

    # -- workers and shard claims (docs/workers.md) ---------------------------

    async def announce(self, url: str) -> None:
        """This worker is alive and takes forwarded writes at `url`."""
        self._url = url
        await self._register(keys=[self._key("alive", ""), self._key("urls", "")], args=[self.worker, url, self._lease_ms])

    async def live_workers(self) -> dict[str, str]:
        flat = await self._live(keys=[self._key("alive", ""), self._key("urls", "")])
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def claim(self, shard: int) -> str | None:
        """Claim the shard if nobody holds it; the holder afterwards (None: unknown)."""
        key = self._key("shard", str(shard))
        await self._redis.set(key, self.worker, nx=True, px=self._lease_ms)
        holder = await self._redis.get(key)
        if holder == self.worker:
            self._held[shard] = asyncio.get_running_loop().time()
        else:
            self._held.pop(shard, None)
        return holder

    async def holder(self, shard: int) -> str | None:
        return await self._redis.get(self._key("shard", str(shard)))

    def holds(self, shard: int) -> bool:
        """Whether this worker's claim on the shard was confirmed within a third of a lease
        (else ask Redis again with `claim` before writing)."""
        seen = self._held.get(shard)
        return seen is not None and asyncio.get_running_loop().time() - seen < self._lease_ms / 3000

    async def _renew_claims(self) -> None:
        shards = sorted(self._held)
        if not shards:
            return
        kept = await self._renew(keys=[self._key("shard", str(s)) for s in shards], args=[self.worker, self._lease_ms])
        now = asyncio.get_running_loop().time()
        kept_shards = {shards[i - 1] for i in kept}
        for shard in shards:
            if shard in kept_shards:
                self._held[shard] = now
            else:
                self._held.pop(shard, None)

    # -- listening -------------------------------------------------------------

    def start(self, handler: Handler, on_gap: OnGap) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(handler, on_gap), name="redis-bus-listen"),
            asyncio.create_task(self._tick(), name="redis-bus-tick"),
        ]

    async def subscribed(self) -> None:
        """Once the channel subscription is in place (notices from then on arrive)."""
        await self._subscribed.wait()

    async def _listen(self, handler: Handler, on_gap: OnGap) -> None:
        first = True
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                if not first:
                    await on_gap()  # notices may have been missed while disconnected
                first = False
                self._subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        stream, position, worker, payload = message["data"].split(SEP, 3)
                        handler(stream, int(position), worker, payload)
                    except Exception:
                        log.exception("bad or unhandled notice on %s", self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis subscription lost (%s); resubscribing", exc)
                first = False
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _tick(self) -> None:
        """Renew this worker's lease; drop dead workers' ids so positions move on."""
        while True:
            await asyncio.sleep(self._lease_ms / 5000)
            try:
                await self._redis.set(self._lease_key, "1", px=self._lease_ms)
                if self._url is not None:
                    await self.announce(self._url)
                await self._renew_claims()
                for stream in self._tracked:
                    await self._finish_call(stream, [], "")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis tick failed: %s", exc)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._redis.delete(self._lease_key)  # a clean stop frees its ids at once
            if self._url is not None:
                await self._register(keys=[self._key("alive", ""), self._key("urls", "")], args=[self.worker, "", 0])
            for shard in list(self._held):  # and its shards: the next writer claims them now
                key = self._key("shard", str(shard))
                if await self._redis.get(key) == self.worker:
                    await self._redis.delete(key)
            for stream in self._tracked:
                await self._finish_call(stream, [], "")
        await self._redis.aclose()
