"""Content repository rules that need no I/O: mxc:// URIs, ids, and how media is served.

Spec: client-server API, "Content repository" (spec.matrix.org/v1.19/client-server-api/#content-repository).
"""

from __future__ import annotations

import re
import secrets
import urllib.parse
from collections.abc import Mapping

import attrs

from homeserver.core.errors import MatrixError
from homeserver.core.ids import is_valid_server_name

# "Security considerations": media ids are only A-Za-z0-9, _ and -, so no id can
# walk out of the media store (../, percent-encoding and UTF-8 tricks included).
_MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}\Z")
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# "Serving inline content": the types a browser will not run as a page of ours.
INLINE_CONTENT_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

# On every media response: the spec's recommended policy ("Content repository"), so an
# uploaded HTML or SVG file opened directly never runs as a page of this origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
        "style-src 'unsafe-inline'; object-src 'self';"
    ),
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
}

# Printable ASCII without separators that would break a header: what a Content-Type may be.
_CONTENT_TYPE_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,254}\Z")
_TOKEN_FILENAME_RE = re.compile(r"^[A-Za-z0-9 ._()+,=@\[\]-]+\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@attrs.frozen
class MxcUri:
    server_name: str
    media_id: str

    def __str__(self) -> str:
        return f"mxc://{self.server_name}/{self.media_id}"


@attrs.frozen
class MediaRecord:
    """One mxc:// URI as the service and the store hand it to each other."""

    server_name: str
    media_id: str
    user_id: str | None
    content_type: str
    upload_name: str | None
    size: int | None
    created_ts: int
    uploaded_ts: int | None  # None: created by /create, content not uploaded yet
    expires_ts: int | None
    # Stored while the legacy unauthenticated endpoints were frozen (spec v1.11): served
    # only through the authenticated ones and to peers.
    authenticated: bool = False

    @property
    def pending(self) -> bool:
        return self.uploaded_ts is None


@attrs.frozen
class RemoteMedia:
    """What another server answered for one of its media ids."""

    content_type: str
    filename: str | None
    data: bytes


def new_media_id() -> str:
    """Random and unguessable: 144 bits in the allowed alphabet."""
    return secrets.token_urlsafe(18)


def is_valid_media_id(media_id: str) -> bool:
    return bool(_MEDIA_ID_RE.match(media_id))


def checked_mxc(server_name: str, media_id: str) -> MxcUri:
    """The (serverName, mediaId) of a request path, or 400 M_INVALID_PARAM."""
    host = server_name if server_name.startswith("[") else server_name.rsplit(":", 1)[0]
    # The grammar allows "..": a DNS name has no empty labels, and such a name is no path.
    if not is_valid_server_name(server_name) or "" in host.split("."):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid server name")
    if not is_valid_media_id(media_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid media id")
    return MxcUri(server_name, media_id)


def checked_content_type(value: str | None) -> str:
    """An upload's Content-Type; absent means application/octet-stream (spec 1.12)."""
    if value is None or not value.strip():
        return DEFAULT_CONTENT_TYPE
    value = value.strip()
    if not _CONTENT_TYPE_RE.match(value) or "/" not in value:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid Content-Type")
    return value


def checked_filename(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > 255 or _CONTROL_RE.search(value):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid filename")
    return value


def query_bool(query: Mapping[str, str], name: str, default: bool) -> bool:
    """``allow_remote``, ``animated``...: absent, ``true`` or ``false``."""
    raw = query.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be true or false")
    return raw == "true"


def thumbnail_query(query: Mapping[str, str]) -> tuple[int, int, str]:
    """``width``, ``height`` (required, positive) and ``method`` (crop or scale, default scale)."""
    sizes = []
    for name in ("width", "height"):
        if name not in query:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing {name}")
        try:
            value = int(query[name])
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be an integer") from None
        if value < 1:
            raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be positive")
        sizes.append(value)
    method = query.get("method", "scale")
    if method not in ("crop", "scale"):
        raise MatrixError(400, "M_INVALID_PARAM", "method must be crop or scale")
    query_bool(query, "animated", False)  # valid either way: thumbnails are still images
    return sizes[0], sizes[1], method


def base_type(content_type: str) -> str:
    """``Text/Plain; charset=utf-8`` -> ``text/plain``."""
    return content_type.split(";", 1)[0].strip().lower()


def content_disposition(content_type: str, filename: str | None) -> str:
    """``inline`` only for the spec's safe types, ``attachment`` otherwise; the file name
    quoted when it is plain ASCII, else RFC 6266's ``filename*=utf-8''...``."""
    kind = "inline" if base_type(content_type) in INLINE_CONTENT_TYPES else "attachment"
    if not filename:
        return kind
    if _TOKEN_FILENAME_RE.match(filename):
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename*=utf-8''{urllib.parse.quote(filename, safe='')}"


def filename_from_disposition(header: str | None) -> str | None:
    """The file name in a peer's Content-Disposition (``filename*`` wins, RFC 6266)."""
    if not header:
        return None
    plain = None
    for param in header.split(";")[1:]:
        name, eq, value = param.strip().partition("=")
        name, value = name.strip().lower(), value.strip()
        if not eq:
            continue
        if name == "filename*":
            charset, _, rest = value.partition("''")
            if charset.lower() == "utf-8":
                try:
                    return checked_filename(urllib.parse.unquote(rest, errors="strict"))
                except (UnicodeDecodeError, MatrixError):
                    return None
        elif name == "filename":
            plain = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    try:
        return checked_filename(plain)
    except MatrixError:
        return None
