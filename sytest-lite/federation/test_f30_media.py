"""Media across servers (spec: client-server API "Content repository", server-server API
"Content Repository"): a user downloads another server's media through their own server."""

import io

import aiohttp
from PIL import Image
from sltools import quote


async def _get(hs, path, token, params=None):
    async with hs.session.get(
        hs.base_url + path, params=params, headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=60),
    ) as r:
        return r.status, r.headers, await r.read()


async def test_remote_media_download_and_thumbnail(home, away, alice, bob):
    out = io.BytesIO()
    Image.new("RGB", (400, 300), "purple").save(out, "PNG")
    picture = out.getvalue()
    async with home.session.post(
        home.base_url + "/_matrix/media/v3/upload", data=picture, params={"filename": "p.png"},
        headers={"Authorization": f"Bearer {alice.access_token}", "Content-Type": "image/png"},
    ) as r:
        assert r.status == 200, await r.text()
        uri = (await r.json())["content_uri"]
    server, media_id = uri.removeprefix("mxc://").split("/")
    assert server == home.server_name

    base = f"/_matrix/client/v1/media/%s/{quote(server)}/{media_id}"
    status, headers, body = await _get(away, base % "download", bob.access_token)
    assert status == 200, body[:300]
    assert body == picture
    assert headers["Content-Type"] == "image/png"
    assert "p.png" in headers["Content-Disposition"]

    status, headers, body = await _get(
        away, base % "thumbnail", bob.access_token, {"width": "96", "height": "96", "method": "crop"},
    )
    assert status == 200, body[:300]
    width, height = Image.open(io.BytesIO(body)).size
    assert 96 <= width <= 400 and 96 <= height <= 300

    status, _, body = await _get(
        away, f"/_matrix/client/v1/media/download/{quote(server)}/sytestLiteNoSuchMedia", bob.access_token,
    )
    assert status == 404, body[:300]
