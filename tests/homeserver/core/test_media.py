"""Pure media rules: mxc ids, Content-Disposition both ways, thumbnail sizes."""

from __future__ import annotations

import pytest

from homeserver.core.errors import MatrixError
from homeserver.core.media import (
    checked_mxc,
    content_disposition,
    filename_from_disposition,
    is_valid_media_id,
    new_media_id,
)
from homeserver.core.thumbnails import output_size


def test_new_media_ids_are_valid_and_distinct() -> None:
    ids = {new_media_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_valid_media_id(i) for i in ids)


@pytest.mark.parametrize("server, media_id", [
    ("..", "abc"), (".hs.test", "abc"), ("hs..test", "abc"), ("hs.test/..", "abc"), ("", "abc"),
    ("hs.test", ".."), ("hs.test", "a/b"), ("hs.test", "a.b"), ("hs.test", ""), ("hs.test", "é"),
    ("hs.test", "a%2Fb"), ("hs.test", "x" * 256),
])
def test_unsafe_mxc_parts_are_refused(server: str, media_id: str) -> None:
    with pytest.raises(MatrixError) as err:
        checked_mxc(server, media_id)
    assert (err.value.status, err.value.errcode) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize("server", ["hs.test", "hs.test:8448", "127.0.0.1:8008", "[::1]:8448"])
def test_valid_mxc_parts(server: str) -> None:
    assert str(checked_mxc(server, "Ab_-9")) == f"mxc://{server}/Ab_-9"


@pytest.mark.parametrize("content_type, name, header", [
    ("image/png", "a.png", 'inline; filename="a.png"'),
    ("IMAGE/PNG; x=y", None, "inline"),
    ("text/html", "a.html", 'attachment; filename="a.html"'),
    ("image/svg+xml", None, "attachment"),
    ("application/pdf", 'a"b.pdf', "attachment; filename*=utf-8''a%22b.pdf"),
    ("text/plain", "ü.txt", "inline; filename*=utf-8''%C3%BC.txt"),
])
def test_content_disposition(content_type: str, name: str | None, header: str) -> None:
    assert content_disposition(content_type, name) == header


@pytest.mark.parametrize("header, name", [
    ('inline; filename="a.png"', "a.png"),
    ("attachment; filename=plain.txt", "plain.txt"),
    ("inline; filename=\"x.txt\"; filename*=utf-8''%C3%BC.txt", "ü.txt"),
    ("inline", None),
    (None, None),
    ("inline; filename*=utf-8''%0Abad", None),
])
def test_filename_from_a_peers_disposition(header: str | None, name: str | None) -> None:
    assert filename_from_disposition(header) == name


@pytest.mark.parametrize("source, box, method, size", [
    ((1000, 500), (96, 96), "crop", (96, 96)),
    ((1000, 500), (320, 240), "scale", (320, 160)),
    ((50, 40), (96, 96), "scale", (50, 40)),  # never upscaled
    ((50, 100), (96, 96), "crop", (50, 50)),  # the aspect asked for, within the source
    ((4000, 3000), (800, 600), "scale", (800, 600)),
])
def test_output_size(
    source: tuple[int, int], box: tuple[int, int], method: str, size: tuple[int, int],
) -> None:
    assert output_size(*source, *box, method) == size
