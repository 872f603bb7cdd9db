"""GETs of URLs that users or peers name, safe from server-side request forgery.

Every connection is checked against ``ip_range_blacklist``/``ip_range_whitelist``
(``homeserver.core.ip_ranges``) on the address actually connected to: names are resolved
by :class:`GuardedResolver`, which drops forbidden addresses, so a name that resolves to a
public address when checked and to 127.0.0.1 when connecting (DNS rebinding) cannot get
through; aiohttp does not resolve IP literals, so those are checked before each request.
Redirects are followed here, one at a time, each target checked the same way.

Implements ``homeserver.services.ports.UrlFetcherPort``; used for media ``Location``
redirects (``FederationClient.get_url``) and URL previews.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from federation.outbound.resolver import read_limited
from homeserver.core.ip_ranges import BlockedAddress, IpPolicy, ip_literal
from homeserver.services.ports import UrlFetchError

USER_AGENT = "Tricolor/0.1.0"
_REDIRECTS = (301, 302, 303, 307, 308)


class GuardedResolver(AbstractResolver):
    """DNS answers minus the addresses the policy forbids; none left: a connection error."""

    def __init__(self, policy: IpPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> Any:
        found = await self._inner.resolve(host, port, family)
        allowed = [info for info in found if self._policy.allows(info["host"])]
        if not allowed:
            raise BlockedAddress(f"{host} resolves only to addresses in ip_range_blacklist")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@attrs.frozen
class Fetched:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class GuardedHttpClient:
    def __init__(self, policy: IpPolicy, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._policy = policy
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=GuardedResolver(self._policy), limit=50, limit_per_host=4),
                headers={"User-Agent": USER_AGENT}, auto_decompress=True,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check(self, url: URL) -> None:
        """Refuse what is not http(s), and IP literals the policy forbids (names are
        checked by the resolver, at connect time)."""
        if url.scheme not in ("http", "https") or not url.host:
            raise UrlFetchError(f"refusing to fetch {url}: not an http(s) URL")
        address = ip_literal(url.host)
        if address is not None and not self._policy.allows(address):
            raise UrlFetchError(f"refusing to fetch {url}: address in ip_range_blacklist", blocked=True)

    async def get(self, url: str, *, max_bytes: int, timeout: float, max_redirects: int = 5) -> Fetched:
        await self.start()
        assert self._session is not None
        target = URL(url)
        for _ in range(max_redirects + 1):
            self.check(target)
            try:
                async with self._session.get(
                    target, allow_redirects=False, ssl=self._ssl,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as resp:
                    location = resp.headers.get("Location")
                    if resp.status in _REDIRECTS and location:
                        target = resp.url.join(URL(location))
                        continue
                    if not 200 <= resp.status < 300:
                        raise UrlFetchError(f"GET {target}: HTTP {resp.status}", status=resp.status)
                    try:
                        body = await read_limited(resp, max_bytes)
                    except ValueError as e:
                        raise UrlFetchError(f"GET {target}: {e}", status=resp.status, too_large=True) from e
                    return Fetched(resp.status, resp.headers, body, str(resp.url))
            except aiohttp.ClientConnectorError as e:
                blocked = isinstance(e.os_error, BlockedAddress) or isinstance(e.__cause__, BlockedAddress)
                raise UrlFetchError(f"GET {target}: {e}", blocked=blocked) from e
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                raise UrlFetchError(f"GET {target}: {type(e).__name__}: {e}") from e
        raise UrlFetchError(f"GET {url}: more than {max_redirects} redirects")
