"""Resolution of relative paths in a config file against the file's own directory.

Why: a config must mean the same thing whatever directory the server is started
from, so ``./data/signing.key`` is read as "next to this config file".
"""

from __future__ import annotations

import os
import re

# sqlite URLs keep a filesystem path after the third slash: sqlite+aiosqlite:///./x.db
_SQLITE_URL_RE = re.compile(
    r"^(?P<scheme>sqlite(?:\+[A-Za-z0-9_]+)?):///(?P<path>[^?]*)(?P<query>\?.*)?$"
)


def resolve_path(value: str, base_dir: str) -> str:
    """An absolute, normalised path; relative ones are taken from ``base_dir``."""
    expanded = os.path.expanduser(value)
    return os.path.normpath(os.path.join(base_dir, expanded))


def resolve_database_url(url: str, base_dir: str) -> str:
    """Make the file path of a sqlite URL absolute; other URLs are returned unchanged.

    ``sqlite+aiosqlite:///./data/x.db`` -> ``sqlite+aiosqlite:////<base_dir>/data/x.db``.
    In-memory databases (``:memory:`` or an empty path) and ``file:`` URIs are left alone.
    """
    match = _SQLITE_URL_RE.match(url)
    if match is None:
        return url
    path = match["path"]
    if path in ("", ":memory:") or path.startswith(("/", "file:")):
        return url
    return f"{match['scheme']}:///{resolve_path(path, base_dir)}{match['query'] or ''}"


def sqlite_file(url: str) -> str | None:
    """The database file of a sqlite URL, or None for other engines and in-memory sqlite."""
    match = _SQLITE_URL_RE.match(url)
    if match is None or match["path"] in ("", ":memory:") or match["path"].startswith("file:"):
        return None
    return match["path"]
