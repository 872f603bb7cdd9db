"""HTTP push gateway client: implements services.pushers.PushGatewayPort.

Spec: https://spec.matrix.org/v1.19/push-gateway-api/#post_matrixpushv1notify

Pusher URLs are chosen by users, so every connection is guarded against server-side
request forgery like the server's other outbound requests (``ip_range_blacklist``):
names are resolved by the guarded resolver the composition root passes in, IP literals
are checked here, and redirects are not followed.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from homeserver.core.ip_ranges import BlockedAddress, IpPolicy, ip_literal
from homeserver.core.push_gateway import GatewayAnswer

log = logging.getLogger(__name__)


class HttpPushGateway:
    def __init__(
        self, policy: IpPolicy, resolver: AbstractResolver | None = None, timeout_s: float = 30.0,
    ) -> None:
        """``resolver`` drops the addresses ``policy`` forbids (the guarded resolver)."""
        self._policy = policy
        self._resolver = resolver
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.blocked = 0  # notifications refused because of the address (a plain counter)

    def _forbidden(self, url: str) -> str | None:
        target = URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            return "not an http(s) URL"
        address = ip_literal(target.host)
        if address is not None and not self._policy.allows(address):
            return "address in ip_range_blacklist"
        return None

    async def notify(self, url: str, body: dict[str, Any]) -> GatewayAnswer:
        """2xx: delivered (with its `rejected` pushkeys); unreachable, 429 or 5xx: retry;
        any other status: the gateway refuses this notification, so it is not sent again."""
        problem = self._forbidden(url)
        if problem is not None:
            # Retrying cannot help: the address is refused by configuration.
            self.blocked += 1
            log.warning("push gateway %s refused: %s", url, problem)
            return GatewayAnswer()
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=self._resolver) if self._resolver else None
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        try:
            async with self._session.post(url, json=body, allow_redirects=False) as resp:
                if resp.status == 429 or resp.status >= 500:
                    return GatewayAnswer(retry=True)
                if resp.status >= 300:
                    log.warning("push gateway %s answered %d", url, resp.status)
                    return GatewayAnswer()
                try:
                    answer = await resp.json(content_type=None)
                except ValueError:
                    answer = {}
        except aiohttp.ClientConnectorError as e:
            if _blocked(e):
                self.blocked += 1
                log.warning("push gateway %s refused: resolves only to addresses in ip_range_blacklist", url)
                return GatewayAnswer()
            log.info("push gateway %s unreachable: %s", url, e)
            return GatewayAnswer(retry=True)
        except (aiohttp.ClientError, TimeoutError) as e:
            log.info("push gateway %s unreachable: %s", url, e)
            return GatewayAnswer(retry=True)
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        return GatewayAnswer(rejected=tuple(k for k in rejected or () if isinstance(k, str)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()



def _blocked(error: aiohttp.ClientConnectorError) -> bool:
    return isinstance(error.os_error, BlockedAddress) or isinstance(error.__cause__, BlockedAddress)
