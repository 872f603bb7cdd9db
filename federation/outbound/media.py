"""Fetching another server's media (server-server API, "Content Repository").

Implements ``homeserver.services.media.RemoteMediaFetcher``.
"""

from __future__ import annotations

from collections.abc import Mapping

from federation.outbound.client import FederationClient
from homeserver.core.media import DEFAULT_CONTENT_TYPE, RemoteMedia, filename_from_disposition
from homeserver.services.ports import FederationRequestError

# On top of the time the origin may wait for a pending upload: time to transfer the file.
TRANSFER_SECONDS = 60.0


def endpoint_unknown(e: FederationRequestError) -> bool:
    """The peer does not serve the endpoint at all (a server from before spec v1.11):
    404/405 ``M_UNRECOGNIZED`` (the spec's answer to an unknown endpoint), or a bare
    404/405 without a Matrix error body (a proxy in front of an old server)."""
    if e.status not in (400, 404, 405):
        return False
    return e.errcode == "M_UNRECOGNIZED" or (e.status != 400 and e.body is None)


class FederationMediaFetcher:
    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def fetch(
        self, server_name: str, media_id: str, *, max_bytes: int, timeout_ms: int,
    ) -> RemoteMedia:
        """GET /_matrix/federation/v1/media/download/{mediaId}: a JSON part (metadata),
        then the file itself or a ``Location`` to fetch it from. A server that does not
        know that endpoint is asked on the legacy client-API path instead."""
        timeout = timeout_ms / 1000 + TRANSFER_SECONDS
        # media_id was checked against [A-Za-z0-9_-]: it needs no percent-encoding.
        try:
            parts = await self._client.get_multipart(
                server_name, f"/_matrix/federation/v1/media/download/{media_id}",
                query={"timeout_ms": str(timeout_ms)}, max_bytes=max_bytes, timeout=timeout,
            )
        except FederationRequestError as e:
            if not endpoint_unknown(e):
                raise
            return await self._fetch_legacy(server_name, media_id, max_bytes, timeout_ms, timeout)
        if len(parts) != 2:
            raise FederationRequestError(200, "M_UNKNOWN", f"expected 2 parts, got {len(parts)}")
        headers, data = parts[1]
        location = headers.get("Location")
        if location is not None:
            headers, data = await self._client.get_url(location, max_bytes=max_bytes, timeout=timeout)
        return _remote_media(headers, data)

    async def _fetch_legacy(
        self, server_name: str, media_id: str, max_bytes: int, timeout_ms: int, timeout: float,
    ) -> RemoteMedia:
        """GET /_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false: what
        servers used before authenticated media (spec v1.11), as Synapse falls back too.
        allow_remote=false: the peer must not go fetching it elsewhere (no loops)."""
        headers, data = await self._client.get_file(
            server_name, f"/_matrix/media/v3/download/{server_name}/{media_id}",
            query={"allow_remote": "false", "timeout_ms": str(timeout_ms), "allow_redirect": "false"},
            max_bytes=max_bytes, timeout=timeout,
        )
        return _remote_media(headers, data)


def _remote_media(headers: Mapping[str, str], data: bytes) -> RemoteMedia:
    return RemoteMedia(
        content_type=headers.get("Content-Type", DEFAULT_CONTENT_TYPE),
        filename=filename_from_disposition(headers.get("Content-Disposition")),
        data=data,
    )
