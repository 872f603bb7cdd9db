"""The content repository: upload, async upload, download and thumbnails on the
authenticated (/_matrix/client/v1/media) and legacy (/_matrix/media/v3) paths.

Images are made with Pillow here and thumbnails are checked by decoding them.
"""

from __future__ import annotations

import asyncio
import io
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest
from PIL import Image
from yarl import URL

from config.schema import FederationConfig, HomeserverConfig, LimitsConfig, MediaConfig
from homeserver.services.clock import now_ms
from tests.helpers import BytesResp, Matrix, User

AUTHED = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"
UPLOAD = "/_matrix/media/v3/upload"
MXC_RE = re.compile(r"^mxc://hs\.test/([A-Za-z0-9_-]+)$")

StartHs = Callable[[HomeserverConfig], Awaitable[Matrix]]


def image(fmt: str, size: tuple[int, int], mode: str = "RGB", color: object = "red") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt)
    return out.getvalue()


def decoded(body: bytes) -> Image.Image:
    return Image.open(io.BytesIO(body))


async def upload(
    user: User, data: bytes, content_type: str | None = "application/octet-stream",
    filename: str | None = None,
) -> str:
    """Upload; returns the media id of the mxc:// URI."""
    r = await user.hs.raw_bytes(
        "POST", UPLOAD, data, token=user.token, params={"filename": filename},
        headers={"Content-Type": content_type} if content_type else None,
    )
    assert r.status == 200, r.body
    match = MXC_RE.match(r.json["content_uri"])
    assert match, r.json
    return match.group(1)


async def download(
    user: User | None, media_id: str, *, hs: Matrix | None = None, legacy: bool = False,
    server: str = "hs.test", suffix: str = "", params: dict[str, object] | None = None,
) -> BytesResp:
    hs = hs or user.hs  # type: ignore[union-attr]
    base = LEGACY if legacy else AUTHED
    return await hs.raw_bytes(
        "GET", f"{base}/download/{server}/{media_id}{suffix}",
        token=user.token if user else None, params=params,
    )


async def thumbnail(user: User, media_id: str, **params: object) -> BytesResp:
    return await user.hs.raw_bytes(
        "GET", f"{AUTHED}/thumbnail/hs.test/{media_id}", token=user.token, params=params,
    )


def assert_error(r: BytesResp, status: int, errcode: str) -> None:
    assert (r.status, (r.json or {}).get("errcode")) == (status, errcode), (r.status, r.body[:300])


def assert_sandboxed(r: BytesResp) -> None:
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cross-Origin-Resource-Policy"] == "cross-origin"


@pytest.fixture
def hs_config(hs_config: HomeserverConfig) -> HomeserverConfig:
    """The legacy unauthenticated paths unfrozen, as for media from before the freeze:
    these tests check how they serve what they serve (test_media_freeze.py: the freeze)."""
    return attrs.evolve(hs_config, media=MediaConfig(enable_authenticated_media=False))


# -- upload and download --------------------------------------------------------------------


async def test_upload_then_download_on_both_paths(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    media_id = await upload(alice, b"shopping list\n", "text/plain", "notes.txt")

    for r in (await download(bob, media_id), await download(None, media_id, hs=hs, legacy=True)):
        assert r.status == 200
        assert r.body == b"shopping list\n"
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.headers["Content-Disposition"] == 'inline; filename="notes.txt"'
        assert_sandboxed(r)

    renamed = await download(bob, media_id, suffix="/other.txt")
    assert renamed.body == b"shopping list\n"
    assert renamed.headers["Content-Disposition"] == 'inline; filename="other.txt"'


async def test_media_ids_are_random_and_unguessable(hs: Matrix) -> None:
    alice = await hs.register("alice")
    ids = {await upload(alice, b"same bytes") for _ in range(3)}
    assert len(ids) == 3
    assert all(len(i) >= 20 for i in ids)


async def test_authenticated_download_needs_a_token(hs: Matrix) -> None:
    alice = await hs.register("alice")
    media_id = await upload(alice, b"private-ish")
    assert_error(await download(None, media_id, hs=hs), 401, "M_MISSING_TOKEN")
    r = await hs.raw_bytes("GET", f"{AUTHED}/download/hs.test/{media_id}", token="not-a-token")
    assert r.status == 401
    r = await hs.raw_bytes("GET", f"{AUTHED}/thumbnail/hs.test/{media_id}", params={"width": 1, "height": 1})
    assert_error(r, 401, "M_MISSING_TOKEN")


async def test_upload_needs_a_token(hs: Matrix) -> None:
    r = await hs.raw_bytes("POST", UPLOAD, b"anonymous", headers={"Content-Type": "text/plain"})
    assert_error(r, 401, "M_MISSING_TOKEN")
    r = await hs.raw_bytes("POST", "/_matrix/media/v1/create")
    assert_error(r, 401, "M_MISSING_TOKEN")


async def test_without_content_type_media_is_an_octet_stream_attachment(hs: Matrix) -> None:
    alice = await hs.register("alice")
    media_id = await upload(alice, b"\x00\x01binary", content_type=None)
    r = await download(alice, media_id)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"] == "attachment"


@pytest.mark.parametrize("content_type, name", [
    ("text/html", "page.html"),
    ("image/svg+xml", "logo.svg"),
    ("application/javascript", "app.js"),
    ("text/html; charset=utf-8", "x.html"),
])
async def test_active_content_is_served_as_a_sandboxed_attachment(
    hs: Matrix, content_type: str, name: str,
) -> None:
    alice = await hs.register("alice")
    payload = b"<html><script>alert(document.cookie)</script></html>"
    media_id = await upload(alice, payload, content_type, name)
    for r in (await download(alice, media_id), await download(None, media_id, hs=hs, legacy=True)):
        assert r.status == 200
        assert r.headers["Content-Type"] == content_type  # what was uploaded, unchanged
        assert r.headers["Content-Disposition"] == f'attachment; filename="{name}"'
        assert_sandboxed(r)


async def test_non_ascii_file_names_are_rfc6266_encoded(hs: Matrix) -> None:
    alice = await hs.register("alice")
    name = 'Grüße "quoted"; x.txt'
    media_id = await upload(alice, b"hi", "text/plain", name)
    disposition = (await download(alice, media_id)).headers["Content-Disposition"]
    assert disposition == "inline; filename*=utf-8''" + urllib.parse.quote(name, safe="")
    assert urllib.parse.unquote(disposition.split("''", 1)[1]) == name


async def test_bad_upload_headers_and_names_are_refused(hs: Matrix) -> None:
    alice = await hs.register("alice")
    r = await hs.raw_bytes("POST", UPLOAD, b"x", token=alice.token, params={"filename": "a\x01b"})
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await hs.raw_bytes("POST", UPLOAD, b"x", token=alice.token, params={"filename": "n" * 300})
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await hs.raw_bytes("POST", UPLOAD, b"x", token=alice.token, headers={"Content-Type": "nonsense"})
    assert_error(r, 400, "M_INVALID_PARAM")


async def test_config_on_both_paths(hs: Matrix) -> None:
    alice = await hs.register("alice")
    for path in (f"{AUTHED}/config", f"{LEGACY}/config"):
        assert (await alice.get(path)) == {"m.upload.size": 52_428_800}
        assert_error(await hs.raw_bytes("GET", path), 401, "M_MISSING_TOKEN")


async def test_uploads_over_the_limit_are_refused(hs_config: HomeserverConfig, start_hs: StartHs) -> None:
    hs = await start_hs(attrs.evolve(hs_config, limits=LimitsConfig(max_upload_bytes=2000)))
    alice = await hs.register("alice")
    assert (await alice.get(f"{AUTHED}/config")) == {"m.upload.size": 2000}
    assert await upload(alice, b"x" * 2000)

    r = await hs.raw_bytes("POST", UPLOAD, b"x" * 2001, token=alice.token)
    assert_error(r, 413, "M_TOO_LARGE")

    async def chunks():  # no Content-Length: refused while streaming
        for _ in range(10):
            yield b"y" * 500

    async with hs.client.post(
        UPLOAD, data=chunks(), headers={"Authorization": f"Bearer {alice.token}"},
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["errcode"] == "M_TOO_LARGE"


async def test_uploads_bigger_than_the_json_limit_are_fine(hs: Matrix) -> None:
    alice = await hs.register("alice")
    big = bytes(range(256)) * 8192  # 2 MiB, twice max_request_bytes
    media_id = await upload(alice, big)
    assert (await download(alice, media_id)).body == big


async def test_unknown_media_is_not_found(hs: Matrix) -> None:
    alice = await hs.register("alice")
    assert_error(await download(alice, "doesNotExist123"), 404, "M_NOT_FOUND")
    assert_error(await download(None, "doesNotExist123", hs=hs, legacy=True), 404, "M_NOT_FOUND")
    r = await thumbnail(alice, "doesNotExist123", width=32, height=32)
    assert_error(r, 404, "M_NOT_FOUND")


async def test_path_traversal_is_refused(hs: Matrix, tmp_path: Path) -> None:
    alice = await hs.register("alice")
    secret = b"top secret contents"
    (tmp_path / "secret").write_bytes(secret)  # next to the media store (tmp_path/media)
    (tmp_path / "media").mkdir(exist_ok=True)
    base = hs.client.make_url("/")
    for server, media_id in (
        ("hs.test", ".."), ("hs.test", "..%2Fsecret"), ("hs.test", "%2E%2E%2F%2E%2E%2Fsecret"),
        ("..", "secret"), ("hs.test%2F..%2F..", "secret"), ("hs.test", "a.b"),
        ("hs.test", "..%5Csecret"), ("hs.test", "%C0%AE%C0%AE%2Fsecret"),
    ):
        for prefix in (AUTHED, LEGACY):
            url = URL(f"{str(base).rstrip('/')}{prefix}/download/{server}/{media_id}", encoded=True)
            async with hs.client.session.get(url, headers={"Authorization": f"Bearer {alice.token}"}) as r:
                body = await r.read()
                assert r.status in (400, 404), (url, r.status)
                assert secret not in body
    r = await alice.hs.raw_bytes("PUT", f"{UPLOAD}/hs.test/..", b"x", token=alice.token)
    assert r.status in (400, 404)


# -- async upload (POST /create, then PUT) ---------------------------------------------------


async def test_create_then_upload_once(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    created = await alice.post("/_matrix/media/v1/create")
    media_id = MXC_RE.match(created["content_uri"]).group(1)  # type: ignore[union-attr]
    assert created["unused_expires_at"] > now_ms()

    r = await download(bob, media_id, params={"timeout_ms": 0})
    assert_error(r, 504, "M_NOT_YET_UPLOADED")
    r = await download(None, media_id, hs=hs, legacy=True, params={"timeout_ms": 0})
    assert_error(r, 504, "M_NOT_YET_UPLOADED")

    put = f"{UPLOAD}/hs.test/{media_id}"
    r = await hs.raw_bytes("PUT", put, b"bob's", token=bob.token)
    assert_error(r, 403, "M_FORBIDDEN")
    r = await hs.raw_bytes(
        "PUT", put, b"the content", token=alice.token, params={"filename": "c.txt"},
        headers={"Content-Type": "text/plain"},
    )
    assert (r.status, r.json) == (200, {})
    r = await hs.raw_bytes("PUT", put, b"again", token=alice.token)
    assert_error(r, 409, "M_CANNOT_OVERWRITE_MEDIA")

    got = await download(bob, media_id)
    assert got.body == b"the content"
    assert got.headers["Content-Disposition"] == 'inline; filename="c.txt"'


async def test_upload_to_an_id_never_created_is_not_found(hs: Matrix) -> None:
    alice = await hs.register("alice")
    r = await hs.raw_bytes("PUT", f"{UPLOAD}/hs.test/neverCreated", b"x", token=alice.token)
    assert_error(r, 404, "M_NOT_FOUND")
    created = await alice.post("/_matrix/media/v1/create")
    media_id = created["content_uri"].rsplit("/", 1)[1]
    r = await hs.raw_bytes("PUT", f"{UPLOAD}/other.test/{media_id}", b"x", token=alice.token)
    assert_error(r, 404, "M_NOT_FOUND")
    already = await upload(alice, b"direct upload")
    r = await hs.raw_bytes("PUT", f"{UPLOAD}/hs.test/{already}", b"x", token=alice.token)
    assert r.status == 409
    assert (await download(alice, already)).body == b"direct upload"


async def test_a_waiting_download_gets_the_upload(hs: Matrix) -> None:
    alice = await hs.register("alice")
    media_id = (await alice.post("/_matrix/media/v1/create"))["content_uri"].rsplit("/", 1)[1]
    waiting = asyncio.create_task(download(alice, media_id, params={"timeout_ms": 30_000}))
    await asyncio.sleep(0)
    r = await hs.raw_bytes("PUT", f"{UPLOAD}/hs.test/{media_id}", b"worth the wait", token=alice.token)
    assert r.status == 200
    got = await waiting
    assert (got.status, got.body) == (200, b"worth the wait")


async def test_pending_uploads_per_user_are_limited(hs_config: HomeserverConfig, start_hs: StartHs) -> None:
    hs = await start_hs(attrs.evolve(hs_config, media=MediaConfig(max_pending_uploads=2)))
    alice, bob = await hs.users("alice", "bob")
    first = (await alice.post("/_matrix/media/v1/create"))["content_uri"].rsplit("/", 1)[1]
    await alice.post("/_matrix/media/v1/create")
    err = await alice.post("/_matrix/media/v1/create", expect=429)
    assert err["errcode"] == "M_LIMIT_EXCEEDED"
    await bob.post("/_matrix/media/v1/create")  # per user
    r = await hs.raw_bytes("PUT", f"{UPLOAD}/hs.test/{first}", b"done", token=alice.token)
    assert r.status == 200
    await alice.post("/_matrix/media/v1/create")


# -- thumbnails -----------------------------------------------------------------------------


async def test_thumbnails_crop_and_scale(hs: Matrix) -> None:
    alice = await hs.register("alice")
    media_id = await upload(alice, image("PNG", (1000, 500)), "image/png", "wide.png")

    for params, size in (
        ({"width": 96, "height": 96, "method": "crop"}, (96, 96)),  # configured
        ({"width": 64, "height": 64, "method": "crop"}, (96, 96)),  # the next configured size up
        ({"width": 320, "height": 240, "method": "scale"}, (320, 160)),
        ({"width": 300, "height": 200}, (320, 160)),  # scale is the default
        ({"width": 500, "height": 100, "method": "crop"}, (500, 100)),  # made on request
        ({"width": 900, "height": 900, "method": "scale"}, (900, 450)),  # made on request
        ({"width": 4000, "height": 4000, "method": "scale"}, (1000, 500)),  # never upscaled
    ):
        r = await thumbnail(alice, media_id, **params)
        assert r.status == 200, (params, r.body[:200])
        assert r.headers["Content-Type"] == "image/png"
        assert r.headers["Content-Disposition"].startswith("inline")
        assert_sandboxed(r)
        assert decoded(r.body).size == size, params

    legacy = await hs.raw_bytes(
        "GET", f"{LEGACY}/thumbnail/hs.test/{media_id}", params={"width": 32, "height": 32, "method": "crop"},
    )
    assert (legacy.status, decoded(legacy.body).size) == (200, (32, 32))


async def test_configured_thumbnails_are_made_at_upload(hs: Matrix, hs_config: HomeserverConfig) -> None:
    alice = await hs.register("alice")
    media_id = await upload(alice, image("PNG", (1000, 500)), "image/png")
    made = Path(hs_config.media_store_path) / "thumbnails" / "hs.test" / media_id
    assert sorted(p.name for p in made.iterdir()) == sorted(
        f"{s.width}x{s.height}-{s.method}" for s in hs_config.media.thumbnail_sizes
    )
    assert {decoded(p.read_bytes()).size for p in made.iterdir()} == {
        (32, 32), (96, 96), (320, 160), (640, 320), (800, 400),
    }


async def test_jpeg_gives_jpeg_thumbnails_and_small_images_come_back_as_they_are(hs: Matrix) -> None:
    alice = await hs.register("alice")
    jpeg = await upload(alice, image("JPEG", (800, 800)), "image/jpeg")
    r = await thumbnail(alice, jpeg, width=96, height=96, method="crop")
    assert r.headers["Content-Type"] == "image/jpeg"
    assert decoded(r.body).format == "JPEG" and decoded(r.body).size == (96, 96)

    small_png = image("PNG", (50, 40))
    small = await upload(alice, small_png, "image/png")
    r = await thumbnail(alice, small, width=320, height=240, method="scale")
    assert r.body == small_png


async def test_animated_gif_thumbnail_is_its_first_frame(hs: Matrix) -> None:
    alice = await hs.register("alice")
    frames = [Image.new("RGB", (200, 200), color) for color in ("red", "blue", "green")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    media_id = await upload(alice, out.getvalue(), "image/gif")
    for animated in ("true", "false"):
        r = await thumbnail(alice, media_id, width=32, height=32, method="crop", animated=animated)
        assert r.status == 200
        thumb = decoded(r.body).convert("RGB")
        assert thumb.size == (32, 32)
        red, green, blue = thumb.getpixel((16, 16))
        assert red > 200 and green < 50 and blue < 50


async def test_things_that_are_not_images_get_no_thumbnail(hs: Matrix) -> None:
    alice = await hs.register("alice")
    text = await upload(alice, b"just text", "text/plain")
    assert_error(await thumbnail(alice, text, width=32, height=32), 400, "M_UNKNOWN")
    corrupt = await upload(alice, image("PNG", (300, 300))[:80], "image/png")
    assert_error(await thumbnail(alice, corrupt, width=32, height=32), 400, "M_UNKNOWN")
    svg = await upload(alice, b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")
    assert_error(await thumbnail(alice, svg, width=32, height=32), 400, "M_UNKNOWN")


async def test_decompression_bombs_are_not_decoded(hs: Matrix) -> None:
    alice = await hs.register("alice")
    bomb = image("PNG", (8000, 5000), mode="1", color=0)  # 40 megapixels in a few KB
    assert len(bomb) < 100_000
    media_id = await upload(alice, bomb, "image/png")
    for params in ({"width": 32, "height": 32, "method": "crop"}, {"width": 3000, "height": 3000}):
        assert_error(await thumbnail(alice, media_id, **params), 413, "M_TOO_LARGE")
    assert (await download(alice, media_id)).body == bomb  # the file itself is still there


@pytest.mark.parametrize("params, errcode", [
    ({"height": 32}, "M_MISSING_PARAM"),
    ({"width": 32}, "M_MISSING_PARAM"),
    ({"width": "big", "height": 32}, "M_INVALID_PARAM"),
    ({"width": -5, "height": 32}, "M_INVALID_PARAM"),
    ({"width": 0, "height": 32}, "M_INVALID_PARAM"),
    ({"width": 32, "height": 32, "method": "zoom"}, "M_INVALID_PARAM"),
    ({"width": 32, "height": 32, "animated": "maybe"}, "M_INVALID_PARAM"),
])
async def test_bad_thumbnail_parameters(hs: Matrix, params: dict[str, object], errcode: str) -> None:
    alice = await hs.register("alice")
    media_id = await upload(alice, image("PNG", (100, 100)), "image/png")
    assert_error(await thumbnail(alice, media_id, **params), 400, errcode)


# -- other servers' media -------------------------------------------------------------------


async def test_remote_media_when_the_remote_is_down(hs_config: HomeserverConfig, start_hs: StartHs) -> None:
    # down.test is mapped to a port nobody listens on.
    fed = FederationConfig(static_map={"down.test": "127.0.0.1:9"})
    hs = await start_hs(attrs.evolve(hs_config, federation=fed))
    alice = await hs.register("alice")
    r = await download(alice, "someMedia", server="down.test")
    assert_error(r, 502, "M_UNKNOWN")
    r = await alice.hs.raw_bytes(
        "GET", f"{AUTHED}/thumbnail/down.test/someMedia", token=alice.token, params={"width": 32, "height": 32},
    )
    assert_error(r, 502, "M_UNKNOWN")
    # allow_remote=false (legacy paths): not fetched, not found.
    r = await download(None, "someMedia", hs=hs, legacy=True, server="down.test", params={"allow_remote": "false"})
    assert_error(r, 404, "M_NOT_FOUND")
    r = await download(None, "someMedia", hs=hs, legacy=True, server="down.test", params={"allow_remote": "perhaps"})
    assert_error(r, 400, "M_INVALID_PARAM")


async def test_peers_need_x_matrix_for_our_media(hs: Matrix) -> None:
    alice = await hs.register("alice")
    media_id = await upload(alice, b"for members only")
    r = await hs.raw_bytes("GET", f"/_matrix/federation/v1/media/download/{media_id}")
    assert_error(r, 401, "M_UNAUTHORIZED")
