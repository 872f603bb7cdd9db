"""Fetching another server's media (server-server API, "Content Repository").

Implements ``homeserver.services.media.RemoteMediaFetcher``.
"""

from __future__ import annotations

from federation.outbound.client import FederationClient
from homeserver.core.media import DEFAULT_CONTENT_TYPE, RemoteMedia, filename_from_disposition
from homeserver.services.ports import FederationRequestError

# On top of the time the origin may wait for a pending upload: time to transfer the file.
TRANSFER_SECONDS = 60.0


class FederationMediaFetcher:
    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def fetch(
        self, server_name: str, media_id: str, *, max_bytes: int, timeout_ms: int,
    ) -> RemoteMedia:
        """GET /_matrix/federation/v1/media/download/{mediaId}: a JSON part (metadata),
        then the file itself or a ``Location`` to fetch it from."""
        timeout = timeout_ms / 1000 + TRANSFER_SECONDS
        # media_id was checked against [A-Za-z0-9_-]: it needs no percent-encoding.
        parts = await self._client.get_multipart(
            server_name, f"/_matrix/federation/v1/media/download/{media_id}",
            query={"timeout_ms": str(timeout_ms)}, max_bytes=max_bytes, timeout=timeout,
        )
        if len(parts) != 2:
            raise FederationRequestError(200, "M_UNKNOWN", f"expected 2 parts, got {len(parts)}")
        headers, data = parts[1]
        location = headers.get("Location")
        if location is not None:
            headers, data = await self._client.get_url(location, max_bytes=max_bytes, timeout=timeout)
        return RemoteMedia(
            content_type=headers.get("Content-Type", DEFAULT_CONTENT_TYPE),
            filename=filename_from_disposition(headers.get("Content-Disposition")),
            data=data,
        )
