"""The spec v1.11 freeze of the legacy unauthenticated media endpoints (client-server
API, "Content repository"; Synapse's ``enable_authenticated_media``).

Media stored before the freeze stays served on ``/_matrix/media/v3/download|thumbnail``;
media stored after it is 404 there, while ``/_matrix/client/v1/media`` (access token)
and other servers (``/_matrix/federation/v1/media``, X-Matrix) get both.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import pytest
from PIL import Image

from config.schema import FederationConfig, HomeserverConfig, MediaConfig
from tests.federation.peer import EvilPeer
from tests.helpers import BytesResp, Matrix

LEGACY = "/_matrix/media/v3"
AUTHED = "/_matrix/client/v1/media"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 80), "green").save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[EvilPeer]:
    evil = await EvilPeer(tmp_path).start()
    yield evil
    await evil.close()


async def upload(hs: Matrix, token: str, data: bytes) -> str:
    r = await hs.raw_bytes(
        "POST", f"{LEGACY}/upload", data, token=token, headers={"Content-Type": "image/png"},
    )
    assert r.status == 200, r.body
    return r.json["content_uri"].removeprefix(f"mxc://{hs.server_name}/")


async def test_media_stored_after_the_freeze_is_not_served_unauthenticated(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
    peer: EvilPeer,
) -> None:
    cfg = attrs.evolve(
        hs_config, federation=FederationConfig(static_map=peer.static_map(), ca_file=peer.ca_cert),
        ip_range_whitelist=peer.ip_range_whitelist,
    )
    before = await start_hs(attrs.evolve(cfg, media=MediaConfig(enable_authenticated_media=False)))
    alice = await before.register("alice")
    old = await upload(before, alice.token, png())
    await before.client.close()

    hs = await start_hs(cfg)  # the default: frozen
    assert cfg.media.enable_authenticated_media
    token = (await hs.login_user("alice")).token
    new = await upload(hs, token, png())

    async def legacy(kind: str, media_id: str) -> BytesResp:
        params = {"width": 32, "height": 32, "method": "crop"} if kind == "thumbnail" else None
        return await hs.raw_bytes("GET", f"{LEGACY}/{kind}/{hs.server_name}/{media_id}", params=params)

    for kind in ("download", "thumbnail"):
        assert (await legacy(kind, old)).status == 200
        r = await legacy(kind, new)
        assert (r.status, r.json["errcode"]) == (404, "M_NOT_FOUND")
        params = {"width": 32, "height": 32, "method": "crop"} if kind == "thumbnail" else None
        for media_id in (old, new):
            r = await hs.raw_bytes(
                "GET", f"{AUTHED}/{kind}/{hs.server_name}/{media_id}", token=token, params=params,
            )
            assert r.status == 200, r.body[:200]

    # Other servers are not concerned by the freeze: they fetch with X-Matrix.
    path = f"/_matrix/federation/v1/media/download/{new}"
    r = await hs.raw_bytes("GET", path, headers={"Authorization": peer.auth("GET", path, hs.server_name)})
    assert r.status == 200, r.body[:300]
    assert r.headers["Content-Type"].startswith("multipart/mixed")
    assert png() in r.body
