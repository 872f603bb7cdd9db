"""The content repository (spec: client-server API, "Content repository"): upload,
async upload (create + PUT), authenticated download and thumbnails, config.

Only the authenticated /_matrix/client/v1/media paths are used for reading: servers
may freeze the deprecated unauthenticated ones (spec v1.11+).
"""

import io
import json
import re

import aiohttp
from PIL import Image
from sltools import quote

MEDIA = "/_matrix/client/v1/media"
UPLOAD = "/_matrix/media/v3/upload"
CREATE = "/_matrix/media/v1/create"


async def raw(hs, method, path, token=None, data=None, params=None, headers=None):
    """(status, headers, body bytes) of one request: media bodies are not text."""
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    async with hs.session.request(
        method, hs.base_url + path, data=data, params=params, headers=hdrs,
        timeout=aiohttp.ClientTimeout(total=30),
    ) as r:
        return r.status, r.headers, await r.read()


async def upload(hs, user, data, content_type, filename=None):
    params = {"filename": filename} if filename else None
    status, _, body = await raw(
        hs, "POST", UPLOAD, user.access_token, data, params, {"Content-Type": content_type},
    )
    assert status == 200, body
    uri = json.loads(body)["content_uri"]
    match = re.fullmatch(r"mxc://([^/]+)/([A-Za-z0-9_-]+)", uri)
    assert match, uri
    assert match.group(1) == hs.server_name
    return match.group(2)


def png(size):
    out = io.BytesIO()
    Image.new("RGB", size, "green").save(out, "PNG")
    return out.getvalue()


async def test_upload_and_authenticated_download(hs, user, make_user):
    bob = await make_user()
    media_id = await upload(hs, user, b"hello media", "text/plain", "hello.txt")
    status, headers, body = await raw(
        hs, "GET", f"{MEDIA}/download/{quote(hs.server_name)}/{media_id}", bob.access_token,
    )
    assert status == 200
    assert body == b"hello media"
    assert headers["Content-Type"].startswith("text/plain")
    disposition = headers["Content-Disposition"]
    assert disposition.split(";")[0] in ("inline", "attachment")
    assert "hello.txt" in disposition

    status, headers, body = await raw(
        hs, "GET", f"{MEDIA}/download/{quote(hs.server_name)}/{media_id}/renamed.txt", bob.access_token,
    )
    assert status == 200 and body == b"hello media"
    assert "renamed.txt" in headers["Content-Disposition"]


async def test_authenticated_download_needs_a_token(hs, user):
    media_id = await upload(hs, user, b"x", "text/plain")
    status, _, _ = await raw(hs, "GET", f"{MEDIA}/download/{quote(hs.server_name)}/{media_id}")
    assert status == 401


async def test_html_is_served_as_a_sandboxed_attachment(hs, user):
    """Spec "Serving inline content": text/html is not on the inline list."""
    media_id = await upload(hs, user, b"<script>alert(1)</script>", "text/html", "x.html")
    status, headers, _ = await raw(
        hs, "GET", f"{MEDIA}/download/{quote(hs.server_name)}/{media_id}", user.access_token,
    )
    assert status == 200
    assert headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in headers.get("Content-Security-Policy", "")


async def test_unknown_media_is_404(hs, user):
    status, _, body = await raw(
        hs, "GET", f"{MEDIA}/download/{quote(hs.server_name)}/sytestLiteNoSuchMedia", user.access_token,
    )
    assert status == 404, body
    assert b"M_NOT_FOUND" in body


async def test_config(hs, user):
    status, _, body = await raw(hs, "GET", f"{MEDIA}/config", user.access_token)
    assert status == 200
    size = json.loads(body).get("m.upload.size")
    assert size is None or (isinstance(size, int) and size > 0)


async def test_thumbnail_crop_and_scale_are_never_smaller_than_asked(hs, user):
    media_id = await upload(hs, user, png((640, 480)), "image/png", "pic.png")
    path = f"{MEDIA}/thumbnail/{quote(hs.server_name)}/{media_id}"
    status, headers, body = await raw(
        hs, "GET", path, user.access_token, params={"width": "96", "height": "96", "method": "crop"},
    )
    assert status == 200, body[:300]
    assert headers["Content-Type"] in ("image/png", "image/jpeg", "image/webp", "image/gif")
    width, height = Image.open(io.BytesIO(body)).size
    assert 96 <= width <= 640 and 96 <= height <= 480
    assert abs(width / height - 1) < 0.05  # crop: the requested aspect ratio

    status, _, body = await raw(
        hs, "GET", path, user.access_token, params={"width": "320", "height": "240", "method": "scale"},
    )
    assert status == 200, body[:300]
    width, height = Image.open(io.BytesIO(body)).size
    assert 320 <= width <= 640 and 240 <= height <= 480
    assert abs(width / height - 640 / 480) < 0.05  # scale: the original's aspect ratio


async def test_thumbnail_without_width_is_400(hs, user):
    media_id = await upload(hs, user, png((64, 64)), "image/png")
    status, _, _ = await raw(
        hs, "GET", f"{MEDIA}/thumbnail/{quote(hs.server_name)}/{media_id}", user.access_token,
        params={"height": "32"},
    )
    assert status == 400


async def test_create_then_upload_once_by_the_creator(hs, user, make_user):
    bob = await make_user()
    status, _, body = await raw(hs, "POST", CREATE, user.access_token, b"{}", None,
                                {"Content-Type": "application/json"})
    assert status == 200, body
    created = json.loads(body)
    server, media_id = created["content_uri"].removeprefix("mxc://").split("/")
    assert server == hs.server_name
    download = f"{MEDIA}/download/{quote(server)}/{media_id}"

    status, _, body = await raw(hs, "GET", download, bob.access_token, params={"timeout_ms": "100"})
    assert status == 504 and b"M_NOT_YET_UPLOADED" in body, (status, body)

    put = f"{UPLOAD}/{quote(server)}/{media_id}"
    status, _, body = await raw(hs, "PUT", put, bob.access_token, b"not yours", None,
                                {"Content-Type": "text/plain"})
    assert status == 403 and b"M_FORBIDDEN" in body, (status, body)
    status, _, body = await raw(hs, "PUT", put, user.access_token, b"late content", None,
                                {"Content-Type": "text/plain"})
    assert status == 200, body
    status, _, body = await raw(hs, "PUT", put, user.access_token, b"again", None,
                                {"Content-Type": "text/plain"})
    assert status == 409 and b"M_CANNOT_OVERWRITE_MEDIA" in body, (status, body)

    status, _, body = await raw(hs, "GET", download, bob.access_token)
    assert (status, body) == (200, b"late content")
