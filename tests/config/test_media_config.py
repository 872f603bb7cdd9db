"""The media section: defaults, and one-line errors naming the key."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from config.errors import ConfigError
from config.loader import load_config
from config.schema import ThumbnailSize


def test_defaults_are_the_spec_sizes(write_config: Callable[[str], str]) -> None:
    cfg = load_config(write_config("server_name: hs1\n"), env={})
    assert cfg.media.thumbnail_sizes == (
        ThumbnailSize(32, 32, "crop"), ThumbnailSize(96, 96, "crop"),
        ThumbnailSize(320, 240, "scale"), ThumbnailSize(640, 480, "scale"),
        ThumbnailSize(800, 600, "scale"),
    )
    assert cfg.media.max_image_pixels == 32_000_000
    assert cfg.limits.max_upload_bytes == 50 * 1024 * 1024


def test_sizes_and_limits_can_be_set(write_config: Callable[[str], str]) -> None:
    cfg = load_config(write_config(
        "server_name: hs1\nmedia:\n  max_image_pixels: 1000\n"
        "  thumbnail_sizes:\n    - {width: 64, height: 48}\n    - {width: 10, height: 10, method: crop}\n"
    ), env={"TRICOLOR_MEDIA__MAX_PENDING_UPLOADS": "3"})
    assert cfg.media.thumbnail_sizes == (ThumbnailSize(64, 48, "scale"), ThumbnailSize(10, 10, "crop"))
    assert (cfg.media.max_image_pixels, cfg.media.max_pending_uploads) == (1000, 3)


@pytest.mark.parametrize(("body", "key", "problem"), [
    ("media: {max_image_pixels: 0}\n", "media.max_image_pixels", "greater than 0"),
    ("media: {max_pending_uploads: -1}\n", "media.max_pending_uploads", "greater than 0"),
    ("media: {thumbnail_sizes: [{width: 32}]}\n", "media.thumbnail_sizes[0].height", "required"),
    (
        "media: {thumbnail_sizes: [{width: 32, height: 32, method: zoom}]}\n",
        "media.thumbnail_sizes[0].method", "unknown thumbnail method 'zoom'",
    ),
    (
        "media: {thumbnail_sizes: [{width: 8, height: 8}, {width: 8, height: 8}]}\n",
        "media.thumbnail_sizes", "lists a size twice",
    ),
    ("media: {thumbnail_size: []}\n", "media.thumbnail_size", "did you mean 'thumbnail_sizes'"),
])
def test_bad_media_settings(
    write_config: Callable[[str], str], body: str, key: str, problem: str,
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config("server_name: hs1\n" + body), env={})
    assert err.value.key == key
    assert problem in err.value.problem
