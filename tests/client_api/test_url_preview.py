"""GET /_matrix/client/v1/media/preview_url (and the legacy /_matrix/media/v3 path)
against a real local web server; addresses are checked as ip_range_blacklist says."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
from aiohttp import web
from PIL import Image

from config.schema import HomeserverConfig, MediaConfig
from tests.helpers import Matrix, User

AUTHED = "/_matrix/client/v1/media/preview_url"
LEGACY = "/_matrix/media/v3/preview_url"
StartHs = Callable[[HomeserverConfig], Awaitable[Matrix]]

PAGE = """<!doctype html><html><head>
<meta charset="utf-8">
<title>Ignored when og:title exists</title>
<meta property="og:title" content="Caf&eacute; &amp; friends">
<meta property="og:description" content="  A page
  about coffee ">
<meta property="og:image" content="/img.png">
<meta property="og:type" content="website">
</head><body><script>alert(1)</script></body></html>"""
PLAIN = """<html><head><title> Just a
title </title><meta name="description" content="Described"></head><body>x</body></html>"""


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (60, 40), "orange").save(out, "PNG")
    return out.getvalue()


@attrs.define
class Site:
    port: int = 0
    hits: list[str] = attrs.Factory(list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()

    async def handle(request: web.Request) -> web.StreamResponse:
        s.hits.append(request.path)
        if request.path == "/page.html":
            return web.Response(text=PAGE, content_type="text/html")
        if request.path == "/plain.html":
            return web.Response(text=PLAIN, content_type="text/html")
        if request.path == "/img.png":
            return web.Response(body=png(), content_type="image/png")
        if request.path == "/big.html":
            return web.Response(text="<html>" + "x" * 50_000, content_type="text/html")
        if request.path == "/data.bin":
            return web.Response(body=b"\x00\x01", content_type="application/octet-stream")
        if request.path == "/to-other-loopback":
            raise web.HTTPFound(f"http://127.0.0.2:{s.port}/page.html")
        if request.path == "/redirect":
            raise web.HTTPFound("/page.html")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    s.port = runner.addresses[0][1]
    yield s
    await runner.cleanup()


async def start(hs_config: HomeserverConfig, start_hs: StartHs, *, enabled: bool = True, **top: Any) -> User:
    media = MediaConfig(url_preview_enabled=enabled, url_preview_max_bytes=20_000)
    hs = await start_hs(attrs.evolve(hs_config, media=media, **top))
    return await hs.register("alice")


async def preview(user: User, url: str, *, path: str = AUTHED, expect: int = 200, **params: Any) -> Any:
    return await user.get(path, params={"url": url, **params}, expect=expect)


async def test_previews_are_off_by_default(hs_config: HomeserverConfig, start_hs: StartHs, site: Site) -> None:
    alice = await start(hs_config, start_hs, enabled=False, ip_range_whitelist=("127.0.0.1",))
    for path in (AUTHED, LEGACY):
        r = await preview(alice, site.url("/page.html"), path=path, expect=404)
        assert r["errcode"] == "M_UNRECOGNIZED"
    assert site.hits == []


async def test_a_page_is_previewed_with_its_image_stored_as_media(
    hs_config: HomeserverConfig, start_hs: StartHs, site: Site,
) -> None:
    alice = await start(hs_config, start_hs, ip_range_whitelist=("127.0.0.1",))
    got = await preview(alice, site.url("/page.html"))
    assert got["og:title"] == "Café & friends"
    assert got["og:description"] == "A page about coffee"
    assert got["og:type"] == "website"
    assert got["og:image"].startswith("mxc://hs.test/")
    assert (got["og:image:type"], got["og:image:width"], got["og:image:height"]) == ("image/png", 60, 40)
    assert got["matrix:image:size"] == len(png())
    image = await alice.hs.raw_bytes(
        "GET", "/_matrix/client/v1/media/download/" + got["og:image"].removeprefix("mxc://"), token=alice.token,
    )
    assert (image.status, image.body) == (200, png())
    assert site.hits == ["/page.html", "/img.png"]

    # Asked again (either path): from the cache, the site is not asked.
    assert await preview(alice, site.url("/page.html"), path=LEGACY) == got
    assert site.hits == ["/page.html", "/img.png"]

    plain = await preview(alice, site.url("/plain.html"))
    assert plain == {"og:title": "Just a title", "og:description": "Described"}
    followed = await preview(alice, site.url("/redirect"))
    assert followed["og:title"] == "Café & friends"
    direct = await preview(alice, site.url("/img.png"))
    assert direct["og:image"].startswith("mxc://hs.test/") and direct["og:image:width"] == 60
    assert await preview(alice, site.url("/data.bin")) == {}

    r = await preview(alice, site.url("/big.html"), expect=502)
    assert r["errcode"] == "M_TOO_LARGE"
    r = await preview(alice, site.url("/missing"), expect=502)
    assert r["errcode"] == "M_UNKNOWN"
    r = await preview(alice, "ftp://127.0.0.1/x", expect=400)
    assert r["errcode"] == "M_INVALID_PARAM"
    r = await preview(alice, site.url("/page.html"), expect=400, ts="yesterday")
    assert r["errcode"] == "M_INVALID_PARAM"
    r = await alice.hs.raw("GET", AUTHED, params={"url": site.url("/page.html")})
    assert (r.status, r.json["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_internal_addresses_are_refused(hs_config: HomeserverConfig, start_hs: StartHs, site: Site) -> None:
    alice = await start(hs_config, start_hs)  # the default blacklist, no whitelist
    for url in (site.url("/page.html"), site.url("/page.html", host="localhost"),
                site.url("/page.html", host="[::1]")):
        r = await preview(alice, url, expect=403)
        assert r["errcode"] == "M_FORBIDDEN"
    assert site.hits == []


async def test_redirects_are_checked_too(hs_config: HomeserverConfig, start_hs: StartHs, site: Site) -> None:
    alice = await start(hs_config, start_hs, ip_range_whitelist=("127.0.0.1",))
    r = await preview(alice, site.url("/to-other-loopback"), expect=403)
    assert r["errcode"] == "M_FORBIDDEN"
    assert site.hits == ["/to-other-loopback"]
