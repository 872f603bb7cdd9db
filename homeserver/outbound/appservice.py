"""HTTP client to application services: implements services.appservice.AppServiceApiPort.

Spec: Application Service API, "Authorization": the homeserver sends its `hs_token` as
`Authorization: Bearer` (the deprecated `access_token` query parameter is not sent).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from homeserver.core.appservice import AppAnswer, AppService

log = logging.getLogger(__name__)

PREFIX = "/_matrix/app/v1"


class HttpAppServiceApi:
    def __init__(self, timeout_ms: int = 30_000) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _url(self, service: AppService, path: str) -> str:
        assert service.url is not None
        return service.url.rstrip("/") + PREFIX + path

    def _headers(self, service: AppService) -> dict[str, str]:
        return {"Authorization": f"Bearer {service.hs_token}", "Content-Type": "application/json"}

    async def send_transaction(self, service: AppService, txn_id: str, body: bytes) -> bool:
        try:
            async with self._client().put(
                self._url(service, f"/transactions/{txn_id}"), data=body, headers=self._headers(service),
            ) as resp:
                await resp.read()
                if resp.status // 100 != 2:
                    log.info("application service %s answered txn %s with %d", service.id, txn_id, resp.status)
                return resp.status // 100 == 2
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.info("application service %s unreachable: %s", service.id, e)
            return False

    async def request(
        self, service: AppService, method: str, path: str, *, query: dict[str, str] | None = None,
        body: Any = None,
    ) -> AppAnswer:
        data = None if body is None else json.dumps(body).encode()
        try:
            async with self._client().request(
                method, self._url(service, path), params=query, data=data, headers=self._headers(service),
            ) as resp:
                text = await resp.text(errors="replace")
                try:
                    parsed = json.loads(text) if text else None
                except ValueError:
                    parsed = None
                return AppAnswer(status=resp.status, body=parsed, text=text)
        except TimeoutError:
            return AppAnswer(failure="timeout")
        except (aiohttp.ClientError, OSError) as e:
            log.info("application service %s unreachable: %s", service.id, e)
            return AppAnswer(failure="connection")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
