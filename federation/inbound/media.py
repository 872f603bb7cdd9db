"""Our media for other servers (server-server API, "Content Repository").

Answers are ``multipart/mixed``: a JSON part (metadata, ``{}`` for now), then the
file with its Content-Type and Content-Disposition. Only our own media is served.
"""

from __future__ import annotations

import aiohttp
import attrs
from aiohttp import web

from homeserver.core.media import content_disposition, thumbnail_query
from homeserver.http.inputs import parse_query
from homeserver.services.media import DEFAULT_TIMEOUT_MS, MediaContent, MediaService

FEDERATION_MEDIA = web.AppKey("federation_media", MediaService)

routes = web.RouteTableDef()
V1 = "/v1"  # relative to the federation sub-app's /_matrix/federation


@attrs.frozen
class TimeoutQuery:
    timeout_ms: int = DEFAULT_TIMEOUT_MS


def _timeout_ms(request: web.Request) -> int:
    return parse_query(request, TimeoutQuery).timeout_ms


def _multipart(content: MediaContent) -> web.Response:
    writer = aiohttp.MultipartWriter("mixed")
    writer.append_json({})
    writer.append(content.data, {
        "Content-Type": content.content_type,
        "Content-Disposition": content_disposition(content.content_type, content.filename),
    })
    return web.Response(body=writer)


@routes.get(V1 + "/media/download/{media_id}")
async def download(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/media/download/{mediaId}"""
    return _multipart(await request.app[FEDERATION_MEDIA].download_for_peer(
        request.match_info["media_id"], _timeout_ms(request),
    ))


@routes.get(V1 + "/media/thumbnail/{media_id}")
async def thumbnail(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/media/thumbnail/{mediaId}?width=&height=&method="""
    width, height, method = thumbnail_query(request.query)
    return _multipart(await request.app[FEDERATION_MEDIA].thumbnail_for_peer(
        request.match_info["media_id"], width, height, method, _timeout_ms(request),
    ))
