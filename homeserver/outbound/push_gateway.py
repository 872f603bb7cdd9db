"""HTTP push gateway client: implements services.pushers.PushGatewayPort.

Spec: https://spec.matrix.org/v1.19/push-gateway-api/#post_matrixpushv1notify
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from homeserver.core.push_gateway import GatewayAnswer

log = logging.getLogger(__name__)


class HttpPushGateway:
    def __init__(self, timeout_s: float = 30.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def notify(self, url: str, body: dict[str, Any]) -> GatewayAnswer:
        """2xx: delivered (with its `rejected` pushkeys); unreachable, 429 or 5xx: retry;
        any other status: the gateway refuses this notification, so it is not sent again."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(url, json=body) as resp:
                if resp.status == 429 or resp.status >= 500:
                    return GatewayAnswer(retry=True)
                if resp.status >= 300:
                    log.warning("push gateway %s answered %d", url, resp.status)
                    return GatewayAnswer()
                try:
                    answer = await resp.json(content_type=None)
                except ValueError:
                    answer = {}
        except (aiohttp.ClientError, TimeoutError) as e:
            log.info("push gateway %s unreachable: %s", url, e)
            return GatewayAnswer(retry=True)
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        return GatewayAnswer(rejected=tuple(k for k in rejected or () if isinstance(k, str)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
