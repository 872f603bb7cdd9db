"""URL previews: GET /_matrix/client/v1/media/preview_url (and the legacy v3 path).

The page is fetched through the guarded ``UrlFetcherPort`` (never an address in
``ip_range_blacklist``, checked at connect time, redirects included), at most
``media.url_preview_max_bytes`` and ``URL_PREVIEW_TIMEOUT`` seconds; its OpenGraph data is
parsed by ``core.url_preview``; ``og:image`` is fetched the same way and stored as the
requester's media, so clients get an ``mxc://`` URI and never contact the site. Answers
are kept in memory per (URL, ``ts`` rounded down to ``media.url_preview_cache_ms``), and
one preview of a URL is made at a time however many clients ask (one task they all await).
Off by default, as in Synapse: the endpoint is then 404 M_UNRECOGNIZED.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from typing import Any

from config.schema import MediaConfig
from homeserver.core.errors import MatrixError
from homeserver.core.thumbnails import ImageTooLarge, NotAnImage, image_size
from homeserver.core.url_preview import is_html, parse_html
from homeserver.services.clock import now_ms
from homeserver.services.media import MediaService
from homeserver.services.ports import UrlFetcherPort, UrlFetchError

log = logging.getLogger(__name__)

URL_PREVIEW_TIMEOUT = 10.0
MAX_CACHED = 10_000


class UrlPreviewService:
    def __init__(self, *, config: MediaConfig, fetcher: UrlFetcherPort, media: MediaService) -> None:
        self._config = config
        self._fetcher = fetcher
        self._media = media
        self._cache: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}
        self._making: dict[tuple[str, int], asyncio.Task[dict[str, Any]]] = {}

    async def preview(self, user_id: str, url: str, ts: int | None) -> dict[str, Any]:
        if not self._config.url_preview_enabled:
            raise MatrixError(404, "M_UNRECOGNIZED", "URL previews are disabled on this server")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise MatrixError(400, "M_INVALID_PARAM", "url must be an http or https URL")
        period = self._config.url_preview_cache_ms
        key = (url, (ts if ts is not None else now_ms()) // period)
        loop = asyncio.get_running_loop()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        task = self._making.get(key)
        if task is None:
            task = asyncio.create_task(self._make(user_id, url), name=f"preview {url}")
            self._making[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task)

    def _done(self, key: tuple[str, int], task: asyncio.Task[dict[str, Any]]) -> None:
        self._making.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return  # failures are not kept: the next request tries again
        if len(self._cache) >= MAX_CACHED:
            self._cache.pop(next(iter(self._cache)))
        until = asyncio.get_running_loop().time() + self._config.url_preview_cache_ms / 1000
        self._cache[key] = (until, task.result())

    async def _make(self, user_id: str, url: str) -> dict[str, Any]:
        try:
            page = await self._fetcher.get(
                url, max_bytes=self._config.url_preview_max_bytes, timeout=URL_PREVIEW_TIMEOUT,
            )
        except UrlFetchError as e:
            log.info("preview of %s failed: %s", url, e)
            if e.blocked:
                raise MatrixError(403, "M_FORBIDDEN", "IP address blocked by the server's ip_range_blacklist") from e
            if e.too_large:
                raise MatrixError(502, "M_TOO_LARGE", "The page is too large to preview") from e
            raise MatrixError(502, "M_UNKNOWN", "Failed to download the page") from e
        content_type = page.headers.get("Content-Type")
        if (content_type or "").lower().startswith("image/"):
            return await self._image(user_id, page.body, content_type) or {}
        if not is_html(content_type):
            return {}
        og = parse_html(page.body, content_type, page.url)
        image_url = og.pop("og:image", None)
        if image_url is not None:
            og.update(await self._fetch_image(user_id, image_url))
        return og

    async def _fetch_image(self, user_id: str, url: str) -> dict[str, Any]:
        """``og:image`` stored as our media, or nothing when it cannot be had."""
        try:
            got = await self._fetcher.get(
                url, max_bytes=self._media.max_upload_bytes, timeout=URL_PREVIEW_TIMEOUT,
            )
        except UrlFetchError as e:
            log.info("og:image %s not fetched: %s", url, e)
            return {}
        content_type = got.headers.get("Content-Type")
        if not (content_type or "").lower().startswith("image/"):
            return {}
        return await self._image(user_id, got.body, content_type)

    async def _image(self, user_id: str, data: bytes, content_type: str | None) -> dict[str, Any]:
        try:
            width, height = await asyncio.to_thread(image_size, data, self._config.max_image_pixels)
        except (NotAnImage, ImageTooLarge):
            return {}
        try:
            mxc = await self._media.upload(user_id, data, (content_type or "").split(";")[0].strip(), None)
        except MatrixError as e:  # e.g. larger than uploads may be
            log.info("preview image not stored: %s", e.error)
            return {}
        return {
            "og:image": mxc, "og:image:type": (content_type or "").split(";")[0].strip(),
            "og:image:width": width, "og:image:height": height, "matrix:image:size": len(data),
        }
