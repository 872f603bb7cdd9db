"""The content repository over HTTP: two sub-apps with their own body limit.

``/_matrix/client/v1/media``: the spec's current download, thumbnail and config
endpoints (access token required). ``/_matrix/media``: upload and create (which
have not moved yet) and the deprecated unauthenticated v3/r0 downloads.
Spec: client-server API, "Content repository".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import attrs
import msgspec
from aiohttp import web

from client_api.http import SERVICES, parse_query, rate_limit, requester
from homeserver.core.errors import MatrixError, too_large
from homeserver.core.media import SECURITY_HEADERS, checked_filename, content_disposition
from homeserver.http.middleware import Handler, body_limit
from homeserver.http.responses import error, ok
from homeserver.services.container import Services
from homeserver.services.media import DEFAULT_TIMEOUT_MS, MediaContent, MediaService
from homeserver.services.url_preview import UrlPreviewService

MEDIA = web.AppKey("media", MediaService)
PREVIEWS = web.AppKey("url_previews", UrlPreviewService)

AUTHENTICATED_PREFIX = "/_matrix/client/v1/media"
LEGACY_PREFIX = "/_matrix/media"
_LEGACY = "/{_version:(?:v3|r0)}"

authenticated_routes = web.RouteTableDef()
legacy_routes = web.RouteTableDef()
ROUTES = {AUTHENTICATED_PREFIX: authenticated_routes, LEGACY_PREFIX: legacy_routes}


def create_media_app(
    prefix: str, services: Services, media: MediaService, previews: UrlPreviewService,
) -> web.Application:
    """The sub-app for ``prefix`` (one of ``ROUTES``), mounted with ``add_subapp``; aiohttp
    tries longer prefixes first, so the client sub-app's ``/_matrix/client`` never takes
    ``/_matrix/client/v1/media`` paths.

    Its body limit is ``media.max_upload_bytes``, not the JSON APIs' ``max_request_bytes``;
    uploads are also read as a stream that stops at the limit.
    """
    app = web.Application(middlewares=[_security_headers, body_limit(media.max_upload_bytes)])
    app[SERVICES] = services
    app[MEDIA] = media
    app[PREVIEWS] = previews
    app.router.add_routes(ROUTES[prefix])
    return app


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every media response, errors included: sandboxed, never sniffed (see core.media)."""
    try:
        resp = await handler(request)
    except MatrixError as e:  # rendered here rather than by the root app, to carry the headers
        resp = error(e.status, e.errcode, e.error, **e.extra)
    resp.headers.update(SECURITY_HEADERS)
    return resp


def _media(request: web.Request) -> MediaService:
    return request.app[MEDIA]


def _serve(
    content: MediaContent, filename: str | None = None, accel_prefix: str | None = None,
) -> web.Response:
    name = filename if filename is not None else content.filename
    headers = {
        "Content-Type": content.content_type,
        "Content-Disposition": content_disposition(content.content_type, name),
    }
    if accel_prefix is not None and content.storage_key is not None:
        # nginx sends the file from the media store (its `internal` location), keeping
        # these headers: the bytes never pass through this process.
        headers["X-Accel-Redirect"] = accel_prefix + content.storage_key
        return web.Response(headers=headers)
    return web.Response(body=content.data, headers=headers)


async def _read_upload(request: web.Request) -> bytes:
    """The request body, refused with 413 M_TOO_LARGE as soon as it passes the limit."""
    limit = _media(request).max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise too_large(f"Cannot upload files larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        body += chunk
        if len(body) > limit:
            raise too_large(f"Cannot upload files larger than {limit} bytes")
    return bytes(body)


# -- query strings (one schema per endpoint, docs/inputs.md) -------------------------------

Positive = Annotated[int, msgspec.Meta(ge=1)]


@attrs.frozen
class UploadQuery:
    filename: str | None = None


@attrs.frozen
class DownloadQuery:
    # allow_remote exists on the legacy paths only (to stop loops between servers);
    # allow_redirect: we never redirect, so the content itself is always fine.
    allow_remote: bool = True
    allow_redirect: bool = False
    timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_TIMEOUT_MS


@attrs.frozen
class ThumbnailQuery:
    width: Positive
    height: Positive
    method: Literal["crop", "scale"] = "scale"
    animated: bool = False  # valid either way: thumbnails are still images
    allow_remote: bool = True
    allow_redirect: bool = False
    timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_TIMEOUT_MS


# -- upload -------------------------------------------------------------------------------


async def upload(request: web.Request) -> web.Response:
    """POST /_matrix/media/v3/upload?filename=..."""
    user = await requester(request)
    filename = checked_filename(parse_query(request, UploadQuery).filename)
    await rate_limit(request, "rc_media_create", user)
    data = await _read_upload(request)
    uri = await _media(request).upload(user.user_id, data, request.headers.get("Content-Type"), filename)
    return ok({"content_uri": uri})


legacy_routes.post(_LEGACY + "/upload")(upload)


@legacy_routes.post("/v1/create")
async def create(request: web.Request) -> web.Response:
    """POST /_matrix/media/v1/create: an mxc:// URI to upload to later."""
    user = await requester(request)
    await rate_limit(request, "rc_media_create", user)
    uri, expires = await _media(request).create(user.user_id)
    return ok({"content_uri": uri, "unused_expires_at": expires})


@legacy_routes.put("/v3/upload/{server_name}/{media_id}")
async def upload_to(request: web.Request) -> web.Response:
    """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}"""
    user = await requester(request)
    filename = checked_filename(parse_query(request, UploadQuery).filename)
    await rate_limit(request, "rc_media_create", user)
    data = await _read_upload(request)
    await _media(request).upload_to(
        user.user_id, request.match_info["server_name"], request.match_info["media_id"], data,
        request.headers.get("Content-Type"), filename,
    )
    return ok({})


# -- download, thumbnail, config (both prefixes) -------------------------------------------


def _download(authenticated: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def download(request: web.Request) -> web.Response:
        """GET .../download/{serverName}/{mediaId}[/{fileName}]"""
        if authenticated:
            await requester(request)
        query = parse_query(request, DownloadQuery)
        media = _media(request)
        accel = media.x_accel_redirect_prefix
        content = await media.download(
            request.match_info["server_name"], request.match_info["media_id"],
            allow_remote=authenticated or query.allow_remote, timeout_ms=query.timeout_ms,
            legacy=not authenticated, read=accel is None,
        )
        return _serve(content, checked_filename(request.match_info.get("file_name")), accel)

    return download


def _thumbnail(authenticated: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def thumbnail(request: web.Request) -> web.Response:
        """GET .../thumbnail/{serverName}/{mediaId}?width=&height=&method="""
        if authenticated:
            await requester(request)
        query = parse_query(request, ThumbnailQuery)
        content = await _media(request).thumbnail(
            request.match_info["server_name"], request.match_info["media_id"],
            query.width, query.height, query.method,
            allow_remote=authenticated or query.allow_remote, timeout_ms=query.timeout_ms,
            legacy=not authenticated,
        )
        return _serve(content)

    return thumbnail


@attrs.frozen
class PreviewQuery:
    url: str
    ts: Annotated[int, msgspec.Meta(ge=0)] | None = None


async def preview_url(request: web.Request) -> web.Response:
    """GET .../preview_url?url=&ts= (an access token on both paths)"""
    user = await requester(request)
    query = parse_query(request, PreviewQuery)
    return ok(await request.app[PREVIEWS].preview(user.user_id, query.url, query.ts))


async def config(request: web.Request) -> web.Response:
    """GET .../config"""
    await requester(request)
    return ok(_media(request).public_config())


for _table, _base, _authenticated in (
    (authenticated_routes, "", True), (legacy_routes, _LEGACY, False),
):
    _table.get(_base + "/download/{server_name}/{media_id}")(_download(_authenticated))
    _table.get(_base + "/download/{server_name}/{media_id}/{file_name}")(_download(_authenticated))
    _table.get(_base + "/thumbnail/{server_name}/{media_id}")(_thumbnail(_authenticated))
    _table.get(_base + "/config")(config)
    _table.get(_base + "/preview_url")(preview_url)
