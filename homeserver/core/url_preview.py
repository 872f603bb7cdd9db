"""URL previews: what a web page says about itself (client-server API, GET preview_url).

Pure: bytes and a content type in, an OpenGraph dict out. OpenGraph ``og:*`` meta tags
win; a page without them still gets ``og:title`` from ``<title>`` and ``og:description``
from ``<meta name="description">`` (as Synapse does). Parsed with the standard library's
tolerant ``html.parser``: no scripts run, no entities expanded beyond HTML's own.
"""

from __future__ import annotations

import re
import urllib.parse
from html.parser import HTMLParser
from typing import Any

MAX_TITLE = 1000
MAX_DESCRIPTION = 5000
_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_WS_RE = re.compile(r"\s+")


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.title: str | None = None
        self.description: str | None = None
        self._in_title = False
        self._title_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v for k, v in attrs if v is not None}
        if tag == "meta":
            key = a.get("property") or a.get("name") or ""
            content = a.get("content")
            if content is None:
                return
            if key.startswith("og:") and key not in self.og:
                self.og[key] = content
            elif key.lower() == "description" and self.description is None:
                self.description = content
        elif tag == "title" and self.title is None:
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title = "".join(self._title_parts)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)


def charset_of(content_type: str | None, body: bytes) -> str:
    """The charset from the Content-Type, else from a <meta charset>, else UTF-8."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip("\"'")
    found = _CHARSET_RE.search(body[:4096])
    return found.group(1).decode("ascii") if found else "utf-8"


def _clean(text: str, limit: int) -> str:
    return _WS_RE.sub(" ", text).strip()[:limit]


def parse_html(body: bytes, content_type: str | None, page_url: str) -> dict[str, Any]:
    """The page's OpenGraph data; ``og:image`` made absolute against ``page_url``."""
    charset = charset_of(content_type, body)
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        text = body.decode("utf-8", errors="replace")
    parser = _PageParser()
    parser.feed(text)
    parser.close()
    og: dict[str, Any] = {k: _clean(v, MAX_DESCRIPTION) for k, v in parser.og.items()}
    if "og:title" not in og and parser.title:
        og["og:title"] = _clean(parser.title, MAX_TITLE)
    if "og:description" not in og and parser.description:
        og["og:description"] = _clean(parser.description, MAX_DESCRIPTION)
    if og.get("og:image"):
        og["og:image"] = urllib.parse.urljoin(page_url, og["og:image"])
    else:
        og.pop("og:image", None)
    return {k: v for k, v in og.items() if v != ""}


def is_html(content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind in ("text/html", "application/xhtml+xml")
