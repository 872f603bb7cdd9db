"""Thumbnails with Pillow: bytes in, bytes out, no I/O.

CPU-bound: callers run ``render`` off the event loop (``asyncio.to_thread``).
Spec: client-server API, "Thumbnails": "crop" gives the requested aspect ratio,
"scale" keeps the original's; never upscale; a source smaller than the request is
returned as it is.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import attrs
from PIL import Image, ImageOps, UnidentifiedImageError

METHODS = ("crop", "scale")
# Pillow format -> the thumbnail Content-Type the spec allows.
_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"),
)


class NotAnImage(Exception):
    """Pillow cannot read it (not an image, or a corrupt one)."""


class ImageTooLarge(Exception):
    """More pixels than allowed: never decoded (a decompression bomb, or just huge)."""


@attrs.frozen
class Thumbnail:
    data: bytes
    content_type: str
    width: int
    height: int


def output_size(width: int, height: int, box_w: int, box_h: int, method: str) -> tuple[int, int]:
    """The thumbnail's size for a ``width`` x ``height`` source and a requested box."""
    if method == "crop":
        # The largest box of the requested aspect ratio that needs no upscaling.
        scale = min(1.0, width / box_w, height / box_h)
        return max(1, round(box_w * scale)), max(1, round(box_h * scale))
    scale = min(1.0, box_w / width, box_h / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def content_type_of(data: bytes) -> str:
    """The type of a thumbnail we made, from its first bytes."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Read only the header and check the pixel count before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLarge(str(e)) from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise NotAnImage(str(e)) from e
    if image.width * image.height > max_pixels:
        raise ImageTooLarge(f"{image.width}x{image.height} is more than {max_pixels} pixels")
    if image.width < 1 or image.height < 1:
        raise NotAnImage("empty image")
    return image


def render(data: bytes, box_w: int, box_h: int, method: str, max_pixels: int) -> Thumbnail:
    """A thumbnail of ``data`` for one requested box (see ``render_many``)."""
    return render_many(data, [(box_w, box_h, method)], max_pixels)[0]


def render_many(
    data: bytes, boxes: Sequence[tuple[int, int, str]], max_pixels: int,
) -> list[Thumbnail]:
    """Thumbnails of ``data`` for several (width, height, method) boxes, decoding it once.

    Animated images give their first frame. JPEG sources give JPEG thumbnails,
    everything else PNG (keeps transparency).
    """
    image = _open(data, max_pixels)
    source_format, original = image.format or "", image.size
    sizes = [output_size(*original, w, h, method) for w, h, method in boxes]
    # The source itself is the answer for a box it fits in (never upscale, spec "Thumbnails").
    as_is = source_format in _TYPES and getattr(image, "n_frames", 1) == 1
    if as_is and all(size == original for size in sizes):
        return [Thumbnail(data, _TYPES[source_format], *original) for _ in boxes]
    try:
        if source_format == "JPEG":
            # Decode at a reduced scale that still covers the largest box: faster, less memory.
            image.draft("RGB", (max(w for w, _ in sizes), max(h for _, h in sizes)))
        image.seek(0)
        image.load()
        if source_format == "JPEG":
            image, save_as, content_type = image.convert("RGB"), "JPEG", "image/jpeg"
        else:
            has_alpha = "A" in image.mode or "transparency" in image.info
            image, save_as, content_type = image.convert("RGBA" if has_alpha else "RGB"), "PNG", "image/png"
        thumbnails = []
        for (_, _, method), size in zip(boxes, sizes, strict=True):
            if as_is and size == original:
                thumbnails.append(Thumbnail(data, _TYPES[source_format], *original))
                continue
            if method == "crop":
                frame = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
            else:
                frame = image.resize(size, Image.Resampling.LANCZOS)
            out = io.BytesIO()
            frame.save(out, save_as, **({"quality": 85} if save_as == "JPEG" else {}))
            thumbnails.append(Thumbnail(out.getvalue(), content_type, *size))
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise NotAnImage(str(e)) from e
    return thumbnails


def image_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Width and height from the header (nothing decoded); NotAnImage/ImageTooLarge."""
    image = _open(data, max_pixels)
    return image.width, image.height
