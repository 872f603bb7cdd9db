"""The content repository: uploads, downloads, thumbnails, and other servers' media.

Spec: client-server API "Content repository", server-server API "Content Repository".
Rows live in the MediaStore, bytes in a MediaStorage (local disk today); media of
other servers is fetched once over federation and then served from the cache.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import attrs

from config.schema import MediaConfig, ThumbnailSize
from homeserver.core.errors import MatrixError, not_found
from homeserver.core.media import (
    DEFAULT_CONTENT_TYPE,
    MediaRecord,
    MxcUri,
    RemoteMedia,
    checked_content_type,
    checked_mxc,
    new_media_id,
)
from homeserver.core.paging import check_page, offset_page
from homeserver.core.thumbnails import (
    ImageTooLarge,
    NotAnImage,
    content_type_of,
    render,
    render_many,
)
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.ports import FederationRequestError
from storage.stores.media import MediaStore

log = logging.getLogger(__name__)

# The spec's default for timeout_ms, and our ceiling for it ("SHOULD impose a maximum").
DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 60_000
# Bound on the negative cache of remote fetches (oldest dropped first).
MAX_CACHED_FAILURES = 10_000


class MediaStorage(Protocol):
    """Where media bytes live; keys are ``/``-separated names made of validated ids."""

    async def put(self, key: str, data: bytes) -> bool:
        """Store ``data`` unless ``key`` exists (media never changes); True if stored."""

    async def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None."""

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a file (without reading it)."""

    async def delete_tree(self, key: str) -> None:
        """Remove ``key`` (a file, or a directory of files such as a media's thumbnails)."""


class RemoteMediaFetcher(Protocol):
    """GET /_matrix/federation/v1/media/download/{mediaId} on the origin server."""

    async def fetch(
        self, server_name: str, media_id: str, *, max_bytes: int, timeout_ms: int,
    ) -> RemoteMedia:
        """The media; raise FederationRequestError when the origin does not give it."""


@attrs.frozen
class MediaContent:
    content_type: str
    filename: str | None
    data: bytes
    # Where the bytes are in the media store, when they are there (X-Accel-Redirect);
    # ``data`` is empty when the caller asked not to read them.
    storage_key: str | None = None


def _local_key(media_id: str) -> str:
    return f"local/{media_id}"


def _remote_key(mxc: MxcUri) -> str:
    return f"remote/{mxc.server_name}/{mxc.media_id}"


def _thumbnail_key(mxc: MxcUri, size: ThumbnailSize) -> str:
    return f"thumbnails/{mxc.server_name}/{mxc.media_id}/{size.width}x{size.height}-{size.method}"


def _remote_error(server_name: str, e: FederationRequestError) -> MatrixError:
    """What a client sees when the origin did not give us its media (never a 500)."""
    if e.errcode == "M_TOO_LARGE":
        return MatrixError(502, "M_TOO_LARGE", "Remote content is too large")
    if e.status == 404:
        return not_found("Remote media not found")
    if e.errcode == "M_NOT_YET_UPLOADED":
        return MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
    if e.status == 0:
        return MatrixError(502, "M_UNKNOWN", f"Cannot reach {server_name}")
    return MatrixError(502, "M_UNKNOWN", f"{server_name} did not return the media (HTTP {e.status})")


class MediaService:
    def __init__(
        self, *, server_name: str, store: MediaStore, storage: MediaStorage, config: MediaConfig,
        max_upload_bytes: int, remote: RemoteMediaFetcher | None,
    ) -> None:
        self.server_name = server_name
        self.max_upload_bytes = max_upload_bytes
        self._store = store
        self._storage = storage
        self._config = config
        self._remote = remote
        # Replaced after every upload: whoever waits for a pending id wakes and looks again.
        self._uploaded = asyncio.Event()
        # Remote media being downloaded now, and recent failures (until when, what).
        self._fetching: dict[MxcUri, asyncio.Task[MediaContent]] = {}
        self._failed: dict[MxcUri, tuple[float, MatrixError]] = {}

    def public_config(self) -> dict[str, int]:
        """GET /media/config."""
        return {"m.upload.size": self.max_upload_bytes}

    # -- uploads -------------------------------------------------------------------------

    async def upload(
        self, user_id: str, data: bytes, content_type: str | None, filename: str | None,
    ) -> str:
        """POST /upload: store the bytes under a new id; returns its mxc:// URI."""
        self._check_size(data)
        ct = checked_content_type(content_type)
        media_id = new_media_id()
        await self._storage.put(_local_key(media_id), data)
        now = now_ms()
        await self._store.add(MediaRecord(
            self.server_name, media_id, user_id, ct, filename, len(data), now, now, None,
            self._frozen,
        ))
        await self._pregenerate(MxcUri(self.server_name, media_id), ct, data)
        return str(MxcUri(self.server_name, media_id))

    async def create(self, user_id: str) -> tuple[str, int]:
        """POST /media/v1/create: a new id to upload to later, and when it expires."""
        now = now_ms()
        if await self._store.count_pending(user_id, now) >= self._config.max_pending_uploads:
            raise MatrixError(429, "M_LIMIT_EXCEEDED", "Too many pending uploads")
        media_id = new_media_id()
        expires = now + self._config.unused_expiry_ms
        await self._store.add(MediaRecord(
            self.server_name, media_id, user_id, DEFAULT_CONTENT_TYPE, None, None, now, None, expires,
            self._frozen,
        ))
        return str(MxcUri(self.server_name, media_id)), expires

    async def upload_to(
        self, user_id: str, server_name: str, media_id: str, data: bytes,
        content_type: str | None, filename: str | None,
    ) -> None:
        """PUT /upload/{serverName}/{mediaId}: the content for an id from /create, once."""
        mxc = checked_mxc(server_name, media_id)
        ct = checked_content_type(content_type)
        row = await self._store.get(mxc.server_name, mxc.media_id) if self._is_local(mxc) else None
        if row is None or row.user_id is None:
            raise not_found("Unknown media ID")
        if row.user_id != user_id:
            raise MatrixError(403, "M_FORBIDDEN", "This media ID was created by another user")
        if not row.pending:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        if row.expires_ts is not None and row.expires_ts <= now_ms():
            raise not_found("This media ID has expired")
        self._check_size(data)
        # The file is created once: of two racing uploads, only one gets to write it.
        if not await self._storage.put(_local_key(media_id), data):
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        await self._store.complete_upload(
            mxc.server_name, media_id, ct, filename, len(data), now_ms(),
        )
        self._uploaded.set()
        self._uploaded = asyncio.Event()
        await self._pregenerate(mxc, ct, data)

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_upload_bytes:
            raise MatrixError(413, "M_TOO_LARGE", f"Cannot upload files larger than {self.max_upload_bytes} bytes")

    # -- downloads -----------------------------------------------------------------------

    @property
    def _frozen(self) -> bool:
        """Whether what is stored now is kept off the legacy unauthenticated endpoints."""
        return self._config.enable_authenticated_media

    @property
    def x_accel_redirect_prefix(self) -> str | None:
        """Set when a reverse proxy sends stored files itself (``media.x_accel_redirect_prefix``)."""
        return self._config.x_accel_redirect_prefix

    async def _stored(self, key: str, read: bool) -> bytes | None:
        if read:
            return await self._storage.get(key)
        return b"" if await self._storage.exists(key) else None

    async def download(
        self, server_name: str, media_id: str, *, allow_remote: bool = True,
        timeout_ms: int = DEFAULT_TIMEOUT_MS, legacy: bool = False, read: bool = True,
    ) -> MediaContent:
        """The media behind mxc://server_name/media_id: ours, cached, or fetched now.

        ``legacy``: asked on the unauthenticated /_matrix/media/v3 paths. Once frozen
        (spec v1.11, "Content repository": servers SHOULD stop serving new media there)
        only media stored before the freeze is served, as if the rest did not exist.
        """
        mxc = checked_mxc(server_name, media_id)
        timeout_ms = max(0, min(timeout_ms, MAX_TIMEOUT_MS))
        frozen = legacy and self._frozen
        if await self._store.is_quarantined(server_name, media_id):
            raise not_found("Media not found")  # quarantined by an admin: as if gone (as Synapse answers)
        if self._is_local(mxc):
            row = await self._uploaded_row(media_id, timeout_ms)
            data = await self._stored(_local_key(media_id), read)
            if data is None or (frozen and row.authenticated):
                raise not_found("Media not found")
            return MediaContent(row.content_type, row.upload_name, data, _local_key(media_id))
        return await self._remote_media(mxc, allow_remote and not frozen, timeout_ms, frozen, read)

    async def download_for_peer(self, media_id: str, timeout_ms: int) -> MediaContent:
        """Federation /media/download: only our own media is served to other servers."""
        return await self.download(self.server_name, media_id, allow_remote=False, timeout_ms=timeout_ms)

    async def _uploaded_row(self, media_id: str, timeout_ms: int) -> MediaRecord:
        """Our media's row once uploaded, waiting up to ``timeout_ms`` for a pending id."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            uploaded = self._uploaded
            row = await self._store.get(self.server_name, media_id)
            if row is None or (row.pending and (row.expires_ts or 0) <= now_ms()):
                raise not_found("Media not found")
            if not row.pending:
                return row
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
            try:
                await asyncio.wait_for(uploaded.wait(), remaining)
            except TimeoutError:
                pass

    async def _remote_media(
        self, mxc: MxcUri, allow_remote: bool, timeout_ms: int, frozen: bool, read: bool = True,
    ) -> MediaContent:
        row = await self._store.get(mxc.server_name, mxc.media_id)
        if row is not None and frozen and row.authenticated:
            raise not_found("Media not found")
        if row is not None and not row.pending:
            data = await self._stored(_remote_key(mxc), read)
            if data is not None:
                return MediaContent(row.content_type, row.upload_name, data, _remote_key(mxc))
        if not allow_remote or self._remote is None:
            raise not_found("Media not found")
        loop = asyncio.get_running_loop()
        failed = self._failed.get(mxc)
        if failed is not None:
            if failed[0] > loop.time():
                e = failed[1]
                raise MatrixError(e.status, e.errcode, e.error, **e.extra)
            del self._failed[mxc]
        # Single flight: every request for one remote file waits for the same download.
        # The download is a task of its own, so a client giving up does not cancel it
        # for the others.
        task = self._fetching.get(mxc)
        if task is None:
            task = asyncio.create_task(self._fetch_remote(mxc, timeout_ms), name=f"fetch {mxc}")
            self._fetching[mxc] = task
            task.add_done_callback(lambda t: self._fetch_done(mxc, t))
        return await asyncio.shield(task)

    def _fetch_done(self, mxc: MxcUri, task: asyncio.Task[MediaContent]) -> None:
        self._fetching.pop(mxc, None)
        if task.cancelled():
            return
        e = task.exception()  # retrieved here, so no waiter left is no "never retrieved"
        if isinstance(e, MatrixError) and e.errcode != "M_NOT_YET_UPLOADED":
            # A short negative cache: a dead origin or a missing file is not asked again
            # by every client at once, and is asked again soon (it may come back).
            ttl = self._config.remote_failure_cache_ms / 1000
            if ttl > 0:
                if len(self._failed) >= MAX_CACHED_FAILURES:
                    self._failed.pop(next(iter(self._failed)))  # the oldest entry
                self._failed[mxc] = (asyncio.get_running_loop().time() + ttl, e)

    async def _fetch_remote(self, mxc: MxcUri, timeout_ms: int) -> MediaContent:
        assert self._remote is not None
        try:
            got = await self._remote.fetch(
                mxc.server_name, mxc.media_id, max_bytes=self.max_upload_bytes, timeout_ms=timeout_ms,
            )
        except FederationRequestError as e:
            log.info("fetching %s failed: %s", mxc, e)
            raise _remote_error(mxc.server_name, e) from e
        if len(got.data) > self.max_upload_bytes:
            raise MatrixError(502, "M_TOO_LARGE", "Remote content is too large")
        try:
            content_type = checked_content_type(got.content_type)
        except MatrixError:
            content_type = DEFAULT_CONTENT_TYPE  # the spec's answer to a missing or bogus type
        await self._storage.put(_remote_key(mxc), got.data)
        now = now_ms()
        await self._store.add(MediaRecord(
            mxc.server_name, mxc.media_id, None, content_type, got.filename, len(got.data),
            now, now, None, self._frozen,
        ))
        return MediaContent(content_type, got.filename, got.data)

    # -- thumbnails ----------------------------------------------------------------------

    async def thumbnail(
        self, server_name: str, media_id: str, width: int, height: int, method: str, *,
        allow_remote: bool = True, timeout_ms: int = DEFAULT_TIMEOUT_MS, legacy: bool = False,
    ) -> MediaContent:
        """A thumbnail at least ``width`` x ``height`` (unless the image is smaller).

        A configured size that fits is made once and kept; any other size is made on
        request. Remote media is fetched whole and thumbnailed here.
        """
        if width < 1 or height < 1:
            raise MatrixError(400, "M_INVALID_PARAM", "width and height must be positive")
        if method not in ("crop", "scale"):
            raise MatrixError(400, "M_INVALID_PARAM", "method must be crop or scale")
        source = await self.download(
            server_name, media_id, allow_remote=allow_remote, timeout_ms=timeout_ms, legacy=legacy,
        )
        mxc = MxcUri(server_name, media_id)
        size = self._configured_size(width, height, method)
        if size is not None:
            cached = await self._storage.get(_thumbnail_key(mxc, size))
            if cached is not None:
                return _thumbnail_content(cached, content_type_of(cached))
            width, height = size.width, size.height
        try:
            thumb = await asyncio.to_thread(
                render, source.data, width, height, method, self._config.max_image_pixels,
            )
        except ImageTooLarge as e:
            status = 413 if self._is_local(mxc) else 502
            raise MatrixError(status, "M_TOO_LARGE", "Content is too large to thumbnail") from e
        except NotAnImage as e:
            raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content") from e
        if size is not None:
            await self._storage.put(_thumbnail_key(mxc, size), thumb.data)
        return _thumbnail_content(thumb.data, thumb.content_type)

    async def thumbnail_for_peer(
        self, media_id: str, width: int, height: int, method: str, timeout_ms: int,
    ) -> MediaContent:
        return await self.thumbnail(
            self.server_name, media_id, width, height, method, allow_remote=False, timeout_ms=timeout_ms,
        )

    def _configured_size(self, width: int, height: int, method: str) -> ThumbnailSize | None:
        """The smallest configured size that is no smaller than asked (and, for crop, of
        about the same aspect ratio)."""
        fits = [
            s for s in self._config.thumbnail_sizes
            if s.method == method and s.width >= width and s.height >= height
            and (method == "scale" or abs(s.width * height - s.height * width) <= 0.1 * s.width * height)
        ]
        return min(fits, key=lambda s: s.width * s.height, default=None)

    async def _pregenerate(self, mxc: MxcUri, content_type: str, data: bytes) -> None:
        """Make the configured thumbnails of a new image now, off the event loop."""
        if not content_type.startswith("image/") or content_type.startswith("image/svg"):
            return
        sizes = self._config.thumbnail_sizes
        try:
            thumbnails = await asyncio.to_thread(
                render_many, data, [(s.width, s.height, s.method) for s in sizes],
                self._config.max_image_pixels,
            )
        except (ImageTooLarge, NotAnImage):
            return  # not thumbnailable: thumbnail requests will say so
        for size, thumb in zip(sizes, thumbnails, strict=True):
            await self._storage.put(_thumbnail_key(mxc, size), thumb.data)

    def _is_local(self, mxc: MxcUri) -> bool:
        return mxc.server_name == self.server_name

    # -- administration (the admin API's media endpoints) ------------------------------

    async def user_media(self, requester: Requester, user_id: str, offset: int, limit: int) -> dict[str, Any]:
        _require_admin(requester)
        limit = check_page(offset, limit)
        rows, total = await self._store.user_media(self.server_name, user_id, offset, limit)
        media = [{
            "media_id": r["media_id"], "media_type": r["content_type"], "media_length": r["size"],
            "upload_name": r["upload_name"], "created_ts": r["created_ts"], "last_access_ts": r["uploaded_ts"],
            "quarantined_by": r["quarantined_by"], "safe_from_quarantine": False,
        } for r in rows]
        return offset_page("media", media, offset=offset, total=total)

    async def delete_media(self, requester: Requester, server_name: str, media_id: str) -> dict[str, Any]:
        """Delete one of our own files, its thumbnails and its row (Synapse: local media only)."""
        _require_admin(requester)
        mxc = checked_mxc(server_name, media_id)
        if not self._is_local(mxc):
            raise MatrixError(400, "M_INVALID_PARAM", "Can only delete local media")
        if not await self._store.delete_media_row(server_name, media_id):
            raise not_found("Media not found")
        await self._storage.delete_tree(_local_key(media_id))
        await self._storage.delete_tree(f"thumbnails/{mxc.server_name}/{mxc.media_id}")
        return {"deleted_media": [media_id], "total": 1}

    async def quarantine(self, requester: Requester, server_name: str, media_id: str, on: bool) -> None:
        """Quarantined media is never served again (local or cached remote), until released."""
        _require_admin(requester)
        checked_mxc(server_name, media_id)
        await self._store.quarantine(server_name, media_id, requester.user_id if on else None)


def _thumbnail_content(data: bytes, content_type: str) -> MediaContent:
    extension = {"image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}.get(content_type, "png")
    return MediaContent(content_type, f"thumbnail.{extension}", data)


def _require_admin(requester: Requester) -> None:
    if not requester.is_admin:
        raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")
