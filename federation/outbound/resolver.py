"""Server discovery
(https://spec.matrix.org/v1.19/server-server-api/#resolving-server-names): server name -> (host, port, Host header, TLS name).

Order: the static map from config (tests, private networks), then the spec:
IP literal, explicit port, ``/.well-known/matrix/server``, SRV
``_matrix-fed._tcp`` then ``_matrix._tcp``, then port 8448. SRV needs
dnspython; without it that step is skipped (A/AAAA still work via aiohttp).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs

from homeserver.core.canonical_json import parse_json

log = logging.getLogger(__name__)

DEFAULT_PORT = 8448
WELL_KNOWN_PATH = "/.well-known/matrix/server"
WELL_KNOWN_DEFAULT_TTL = 24 * 3600.0
WELL_KNOWN_MAX_TTL = 48 * 3600.0
WELL_KNOWN_ERROR_TTL = 3600.0
WELL_KNOWN_MAX_BYTES = 50 * 1024
# How long a finished resolution (SRV answers included) is reused.
RESULT_TTL = 3600.0

SrvLookup = Callable[[str], Awaitable[list[tuple[str, int]]]]


@attrs.frozen
class Resolved:
    host: str  # what to connect to: a DNS name or a bare IP (no brackets)
    port: int
    host_header: str
    tls_server_name: str

    @property
    def netloc(self) -> str:
        """``host:port`` for a URL (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def split_host_port(name: str) -> tuple[str, int | None]:
    """``host[:port]`` (IPv6 literals in brackets) -> (host without brackets, port)."""
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            raise ValueError(f"bad IPv6 literal in {name!r}")
        host, rest = name[1:end], name[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad server name {name!r}")
        port_text = rest[1:] if rest else None
    elif name.count(":") == 1:
        host, port_text = name.split(":")
    elif ":" in name:
        raise ValueError(f"bad server name {name!r}")  # bare IPv6 must be bracketed
    else:
        host, port_text = name, None
    if not host:
        raise ValueError(f"empty host in {name!r}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {name!r}")
    return host, int(port_text)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cache_ttl(headers: Mapping[str, str]) -> float:
    """max-age from Cache-Control, within [0, 48 h]; no-store/no-cache mean 0."""
    cc = headers.get("Cache-Control", "").lower()
    if "no-store" in cc or "no-cache" in cc:
        return 0.0
    m = re.search(r"max-age\s*=\s*(\d+)", cc)
    if m:
        return min(float(m.group(1)), WELL_KNOWN_MAX_TTL)
    return WELL_KNOWN_DEFAULT_TTL


def parse_well_known(body: Any) -> str:
    """The delegated ``host[:port]``; ValueError if the document is unusable."""
    if not isinstance(body, dict) or not isinstance(body.get("m.server"), str):
        raise ValueError("well-known has no m.server string")
    server = body["m.server"].strip()
    split_host_port(server)  # validate
    return server


async def _dnspython_srv(name: str) -> list[tuple[str, int]]:
    try:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver
    except ImportError:  # optional dependency: no SRV step
        return []
    try:
        answer = await dns.asyncresolver.resolve(name, "SRV", lifetime=10.0)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return []
    except dns.exception.DNSException as e:
        log.info("SRV lookup for %s failed: %s", name, e)
        return []
    records = sorted(answer, key=lambda r: (r.priority, -r.weight, random.random()))
    out = []
    for r in records:
        target = r.target.to_text(omit_final_dot=True)
        if target in ("", "."):  # "." = service explicitly not available
            return []
        out.append((target, int(r.port)))
    return out


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ValueError once it passes ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ValueError(f"response body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def default_well_known_url(host: str) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}{WELL_KNOWN_PATH}"


class ServerResolver:
    """Resolve server names. ``session`` fetches ``.well-known``; FederationClient.start()
    fills it in with its own session when none was given."""

    def __init__(
        self,
        static_map: Mapping[str, str],
        session: aiohttp.ClientSession | None = None,
        *,
        srv_lookup: SrvLookup | None = None,
        well_known_url: Callable[[str], str] = default_well_known_url,
        ssl: ssl_module.SSLContext | bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = dict(static_map)
        self.session = session
        self._srv_lookup = srv_lookup or _dnspython_srv
        self._well_known_url = well_known_url
        self.ssl = ssl
        self._clock = clock
        # hostname -> (expires_at, delegated server or None for "no/invalid well-known")
        self._well_known: dict[str, tuple[float, str | None]] = {}
        self._results: dict[str, tuple[float, Resolved]] = {}

    async def resolve(self, server_name: str) -> Resolved:
        """Where to send requests for ``server_name``; ValueError if the name is malformed."""
        mapped = self._static.get(server_name)
        if mapped is not None:
            return self._from_static(server_name, mapped)
        cached = self._results.get(server_name)
        if cached and cached[0] > self._clock():
            return cached[1]
        resolved = await self._resolve(server_name)
        self._results[server_name] = (self._clock() + RESULT_TTL, resolved)
        return resolved

    def _from_static(self, server_name: str, target: str) -> Resolved:
        host, port = split_host_port(target)
        # The certificate is still the server name's: the map only overrides where to connect.
        name_host, _ = split_host_port(server_name)
        return Resolved(host, port or DEFAULT_PORT, server_name, name_host)

    async def _resolve(self, server_name: str) -> Resolved:
        host, port = split_host_port(server_name)
        if is_ip_literal(host) or port is not None:  # steps 1 and 2
            return Resolved(host, port or DEFAULT_PORT, server_name, host)
        delegated = await self._get_well_known(host)
        if delegated is not None:  # step 3
            d_host, d_port = split_host_port(delegated)
            if is_ip_literal(d_host):
                return Resolved(d_host, d_port or DEFAULT_PORT, delegated, d_host)
            if d_port is not None:
                return Resolved(d_host, d_port, delegated, d_host)
            return await self._srv_or_default(d_host)
        return await self._srv_or_default(host)  # step 4

    async def _srv_or_default(self, host: str) -> Resolved:
        for prefix in ("_matrix-fed._tcp.", "_matrix._tcp."):
            records = await self._srv_lookup(prefix + host)
            if records:
                target, port = records[0]
                return Resolved(target, port, host, host)
        return Resolved(host, DEFAULT_PORT, host, host)

    async def _get_well_known(self, host: str) -> str | None:
        now = self._clock()
        cached = self._well_known.get(host)
        if cached and cached[0] > now:
            return cached[1]
        delegated, ttl = await self._fetch_well_known(host)
        self._well_known[host] = (now + ttl, delegated)
        return delegated

    async def _fetch_well_known(self, host: str) -> tuple[str | None, float]:
        if self.session is None:
            return None, 0.0
        url = self._well_known_url(host)
        try:
            async with self.session.get(
                url, ssl=self.ssl, timeout=aiohttp.ClientTimeout(total=10),
                allow_redirects=True, max_redirects=5,  # a bounded chain also ends loops
            ) as resp:
                if resp.status != 200:
                    return None, WELL_KNOWN_ERROR_TTL
                raw = await read_limited(resp, WELL_KNOWN_MAX_BYTES)
                ttl = _cache_ttl(resp.headers)
            return parse_well_known(parse_json(raw)), ttl
        except Exception as e:  # network, TLS, JSON, validation: all mean "no delegation"
            log.debug("well-known for %s unusable: %s", host, e)
            return None, WELL_KNOWN_ERROR_TTL
