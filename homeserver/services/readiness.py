"""Readiness: whether this process can do its work now (``/ready``), as opposed to
whether it is alive at all (``/health``, which asks nothing of anyone).

Each check is a named coroutine answering True when its dependency (the database, Redis,
our RabbitMQ broker) answers; only what is configured is checked. A check that does
not answer within ``timeout`` counts as down, so an orchestrator's probe gets an answer
in bounded time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]


class Readiness:
    def __init__(self, checks: Mapping[str, Check], timeout: float = 3.0) -> None:
        self._checks = dict(checks)
        self._timeout = timeout

    async def check(self) -> dict[str, bool]:
        """Every check, run concurrently: name -> up."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._one(n) for n in names))
        return dict(zip(names, results, strict=True))

    async def _one(self, name: str) -> bool:
        try:
            return bool(await asyncio.wait_for(self._checks[name](), self._timeout))
        except Exception as e:  # a timeout or a driver error: not ready
            log.warning("readiness check %s failed: %s: %s", name, type(e).__name__, e)
            return False


def up(flag: Callable[[], bool]) -> Check:
    """A check over a state some component already tracks (a broker link's ``up``)."""

    async def check() -> bool:
        return flag()

    return check
