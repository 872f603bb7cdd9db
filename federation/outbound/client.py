"""Signed JSON requests to other homeservers (implements ports.FederationClientPort)."""

from __future__ import annotations

import logging
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from yarl import URL

from federation.outbound.guarded_http import GuardedResolver
from federation.outbound.resolver import Resolved, ServerResolver, read_limited
from federation.outbound.xmatrix import sign_request
from homeserver.core import request_id
from homeserver.core.canonical_json import encode_json, parse_federation_json
from homeserver.core.errors import MatrixError
from homeserver.core.ids import is_valid_server_name
from homeserver.core.ip_ranges import IpPolicy, ip_literal
from homeserver.core.signing import SigningKey
from homeserver.services.ports import FederationRequestError, UrlFetcherPort, UrlFetchError

log = logging.getLogger(__name__)

USER_AGENT = "Tricolor/0.1.0"
# Generous: /send_join and /state responses of big rooms are large.
MAX_RESPONSE_BYTES = 100 * 1024 * 1024


def build_uri(path: str, query: Mapping[str, str | list[str]] | None = None) -> str:
    """``path`` (already percent-encoded) plus an encoded query: the exact string signed and sent."""
    if not path.startswith("/"):
        raise ValueError(f"federation path must start with '/': {path!r}")
    if not query:
        return path
    pairs = []
    for name, value in query.items():
        for v in [value] if isinstance(value, str) else value:
            pairs.append((name, v))
    qs = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote, safe="")
    return f"{path}?{qs}" if qs else path


class FederationClient:
    """One aiohttp session for all destinations; ``scheme="http"`` only for tests."""

    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        resolver: ServerResolver,
        ssl_context: ssl.SSLContext | None,
        *,
        scheme: str = "https",
        session: aiohttp.ClientSession | None = None,
        url_fetcher: UrlFetcherPort | None = None,
        allowed: Callable[[str], bool] | None = None,
        ip_policy: IpPolicy | None = None,
    ) -> None:
        """``url_fetcher``: fetches the URLs peers point to (media ``Location``), guarded
        against forbidden addresses (ip_range_blacklist); without one they are refused.
        ``ip_policy``: the addresses peers may be reached at (ip_range_blacklist and
        whitelist), checked on the address connected to — the resolved server name, a
        literal from discovery or ``static_map``, and ``.well-known`` lookups alike, so a
        peer whose name or delegation points into a private range is never contacted.
        None (tests of the client alone): no check."""
        if scheme not in ("https", "http"):
            raise ValueError(f"unsupported scheme {scheme!r}")
        self.server_name = server_name
        self._key = signing_key
        self._resolver = resolver
        self._ssl = ssl_context if scheme == "https" else None
        self._scheme = scheme
        self._session = session
        self._owns_session = False
        self._url_fetcher = url_fetcher
        self._allowed = allowed
        self._policy = ip_policy

    async def start(self) -> None:
        if self._session is None:
            resolver = GuardedResolver(self._policy) if self._policy is not None else None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, limit_per_host=10, resolver=resolver),
                headers={"User-Agent": USER_AGENT},
                auto_decompress=True,
            )
            self._owns_session = True
        if self._resolver.session is None:
            self._resolver.session = self._session
            self._resolver.ssl = self._ssl if self._ssl is not None else True

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None
        self._owns_session = False

    async def request(
        self, method: str, destination: str, path: str, *,
        query: Mapping[str, str | list[str]] | None = None, body: Any = None,
        timeout: float = 30.0, max_bytes: int | None = None,
    ) -> Any:
        """Send a signed request; ``path`` must already be percent-encoded. The response is
        read up to ``max_bytes`` (default MAX_RESPONSE_BYTES) and no further."""
        method = method.upper()
        if body is None and method in ("PUT", "POST"):
            body = {}  # the spec wants a JSON object on every PUT/POST
        uri = build_uri(path, query)
        auth = sign_request(self._key, self.server_name, destination, method, uri, body)
        return await self._send(
            method, destination, uri, body, {"Authorization": auth}, timeout,
            MAX_RESPONSE_BYTES if max_bytes is None else max_bytes,
        )

    async def get_json_unsigned(self, destination: str, path: str, *, timeout: float = 30.0) -> Any:
        """An unauthenticated GET (the key API needs no X-Matrix)."""
        return await self._send("GET", destination, path, None, {}, timeout, MAX_RESPONSE_BYTES)

    async def _send(
        self, method: str, destination: str, uri: str, body: Any,
        headers: dict[str, str], timeout: float, max_bytes: int,
    ) -> Any:
        if self._allowed is not None and not self._allowed(destination):
            # federation.domain_whitelist / domain_blacklist: never contact this server.
            raise FederationRequestError(403, "M_FORBIDDEN", f"Federation with {destination} is not allowed")
        target = await self._resolve(destination)
        rid = request_id.current.get()
        if rid is not None:  # the peer logs it beside its own id (README "Monitoring")
            headers[request_id.HEADER] = rid
        data = None
        if body is not None:
            data = encode_json(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        headers["Host"] = target.host_header
        try:
            async with self._session.request(
                method, self._url(target, uri), data=data, headers=headers,
                ssl=self._ssl if self._ssl is not None else True,
                server_hostname=target.tls_server_name if self._scheme == "https" else None,
                timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False,
            ) as resp:
                status = resp.status
                try:
                    raw = await read_limited(resp, max_bytes)
                except ValueError as e:
                    raise FederationRequestError(status, "M_TOO_LARGE", str(e)) from e
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:  # ValueError: a URL yarl refuses
            raise FederationRequestError(
                0, "M_UNKNOWN", f"{method} {destination}{uri}: {type(e).__name__}: {e}"
            ) from e
        return _decode(status, raw)

    async def get_multipart(
        self, destination: str, path: str, *, query: Mapping[str, str | list[str]] | None = None,
        max_bytes: int, timeout: float,
    ) -> list[tuple[Mapping[str, str], bytes]]:
        """A signed GET answered with ``multipart/mixed`` (federation media): each part's
        headers and bytes. Errors raise FederationRequestError, as ``request`` does."""
        uri = build_uri(path, query)
        headers = {"Authorization": sign_request(self._key, self.server_name, destination, "GET", uri, None)}
        target = await self._resolve(destination)
        headers["Host"] = target.host_header
        rid = request_id.current.get()
        if rid is not None:
            headers[request_id.HEADER] = rid
        try:
            async with self._session.get(  # type: ignore[union-attr]
                self._url(target, uri), headers=headers,
                ssl=self._ssl if self._ssl is not None else True,
                server_hostname=target.tls_server_name if self._scheme == "https" else None,
                timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False,
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status in (301, 302, 303, 307, 308) and location:
                    # A redirect instead of the multipart answer: as a Location part would
                    # say, the file is there (fetched by get_url, guarded).
                    return [({"Content-Type": "application/json"}, b"{}"), ({"Location": location}, b"")]
                if not 200 <= resp.status < 300 or resp.content_type != "multipart/mixed":
                    try:
                        _decode(resp.status, await read_limited(resp, 65_536))
                    except ValueError:  # an error body too long to be a Matrix error
                        raise FederationRequestError(resp.status, "M_UNKNOWN", f"HTTP {resp.status}") from None
                    raise FederationRequestError(resp.status, "M_UNKNOWN", "response is not multipart/mixed")
                return await _read_parts(aiohttp.MultipartReader(resp.headers, resp.content), max_bytes)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, RuntimeError) as e:
            # ValueError, RuntimeError: a malformed multipart body.
            raise FederationRequestError(0, "M_UNKNOWN", f"GET {destination}{uri}: {type(e).__name__}: {e}") from e

    async def get_file(
        self, destination: str, path: str, *, query: Mapping[str, str | list[str]] | None = None,
        max_bytes: int, timeout: float,
    ) -> tuple[Mapping[str, str], bytes]:
        """An unsigned GET of a peer's client-API file endpoint (the legacy
        ``/_matrix/media/v3/download``): its headers and bytes, no redirects followed."""
        uri = build_uri(path, query)
        target = await self._resolve(destination)
        try:
            async with self._session.get(  # type: ignore[union-attr]
                self._url(target, uri), headers={"Host": target.host_header},
                ssl=self._ssl if self._ssl is not None else True,
                server_hostname=target.tls_server_name if self._scheme == "https" else None,
                timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False,
            ) as resp:
                if not 200 <= resp.status < 300:
                    try:
                        _decode(resp.status, await read_limited(resp, 65_536))
                    except ValueError:
                        raise FederationRequestError(resp.status, "M_UNKNOWN", f"HTTP {resp.status}") from None
                try:
                    raw = await read_limited(resp, max_bytes)
                except ValueError as e:
                    raise FederationRequestError(resp.status, "M_TOO_LARGE", str(e)) from e
                return resp.headers, raw
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:  # ValueError: a URL yarl refuses
            raise FederationRequestError(0, "M_UNKNOWN", f"GET {destination}{uri}: {type(e).__name__}: {e}") from e

    async def get_url(self, url: str, *, max_bytes: int, timeout: float) -> tuple[Mapping[str, str], bytes]:
        """An unsigned GET of a URL a peer pointed us to (a media ``Location``): through the
        guarded fetcher, so never to a forbidden address, redirects included."""
        if self._url_fetcher is None:
            raise FederationRequestError(0, "M_UNKNOWN", f"refusing to fetch {url!r}: no URL fetcher")
        try:
            got = await self._url_fetcher.get(url, max_bytes=max_bytes, timeout=timeout)
        except UrlFetchError as e:
            errcode = "M_TOO_LARGE" if e.too_large else "M_UNKNOWN"
            raise FederationRequestError(e.status, errcode, str(e)) from e
        return got.headers, got.body

    async def _resolve(self, destination: str) -> Resolved:
        if self._session is None:
            raise RuntimeError("FederationClient.start() was not called")
        if not is_valid_server_name(destination):
            # Spec appendix "Server name": anything else is no server; never let it reach DNS
            # or the URL parser, which raise on some names (a 500 found by fuzzing).
            raise FederationRequestError(0, "M_UNKNOWN", f"{destination!r} is not a valid server name")
        try:
            target = await self._resolver.resolve(destination)
        except ValueError as e:
            raise FederationRequestError(0, "M_UNKNOWN", f"bad server name {destination!r}: {e}") from e
        except Exception as e:
            raise FederationRequestError(0, "M_UNKNOWN", f"cannot resolve {destination}: {e}") from e
        address = ip_literal(target.host)
        if self._policy is not None and address is not None and not self._policy.allows(address):
            # Names are checked by the guarded resolver when connecting; literals here.
            raise FederationRequestError(
                0, "M_UNKNOWN", f"refusing to contact {destination} at {target.host}: address in ip_range_blacklist",
            )
        return target

    def _url(self, target: Resolved, uri: str) -> URL:
        # encoded=True: yarl must not re-quote, or the wire target would differ from what we signed.
        return URL(f"{self._scheme}://{target.netloc}{uri}", encoded=True)


def _decode(status: int, raw: bytes) -> Any:
    try:
        # Answers carry PDUs of any room version: numbers as the peer wrote them.
        body = parse_federation_json(raw) if raw.strip() else None
    except MatrixError as e:
        body = None
        if 200 <= status < 300:
            raise FederationRequestError(status, e.errcode, f"response is not valid JSON: {e.error}") from e
    if 200 <= status < 300:
        return body
    errcode, error = "M_UNKNOWN", f"HTTP {status}"
    if isinstance(body, dict):
        if isinstance(body.get("errcode"), str):
            errcode = body["errcode"]
        if isinstance(body.get("error"), str):
            error = body["error"]
    raise FederationRequestError(status, errcode, error, body)


async def _read_parts(
    reader: aiohttp.MultipartReader, max_bytes: int,
) -> list[tuple[Mapping[str, str], bytes]]:
    parts: list[tuple[Mapping[str, str], bytes]] = []
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader):
            raise FederationRequestError(200, "M_UNKNOWN", "nested multipart in response")
        data = bytearray()
        while chunk := await part.read_chunk(65_536):
            total += len(chunk)
            if total > max_bytes:
                raise FederationRequestError(200, "M_TOO_LARGE", f"response larger than {max_bytes} bytes")
            data += chunk
        parts.append((part.headers, bytes(data)))
    return parts
