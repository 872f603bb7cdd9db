"""The browser client (web/, issue 16) on a listener of its own.

The built client (``web/dist``: ``index.html`` and hashed files under ``assets/``) is
served here with a strict Content-Security-Policy: scripts and styles only from this
origin, no inline code, no eval, no frames, and network access only to the homeserver
(plus the operator's ``web_client.connect_src``). It is never mounted on the client-API
origin: a script injected there could read every token the API hands out. The client
learns where the API is from ``/config.json``.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from urllib.parse import urlsplit

import attrs
from aiohttp import web

from config.errors import ConfigError
from config.schema import HomeserverConfig

REPO_DIST = Path(__file__).resolve().parents[1] / "web" / "dist"
_ASSET = re.compile(r"^[A-Za-z0-9_.-]+$")


@attrs.frozen
class WebClientSite:
    dist: Path
    server_url: str | None  # None: this request's host on the client listener's port
    listener_port: int
    listener_scheme: str
    connect_src: tuple[str, ...]

    def api_url(self, request: web.Request) -> str:
        if self.server_url is not None:
            return self.server_url.rstrip("/")
        host = request.url.host or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.listener_scheme}://{host}:{self.listener_port}"


def content_security_policy(api_url: str, extra_connect: tuple[str, ...]) -> str:
    """The page's CSP: everything denied but this origin's files, images the client made
    itself (blob: from authenticated media downloads) and connections to the API."""
    parts = urlsplit(api_url)
    ws = "wss" if parts.scheme == "https" else "ws"
    connect = ["'self'", f"{parts.scheme}://{parts.netloc}", f"{ws}://{parts.netloc}", *extra_connect]
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src " + " ".join(connect),
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ])


def web_client_site(cfg: HomeserverConfig) -> WebClientSite:
    """Where the built client is and which API it talks to; a client that was never built
    is a config error at start-up (one line saying how to build it)."""
    section = cfg.web_client
    dist = Path(section.dist_path) if section.dist_path else REPO_DIST
    if not (dist / "index.html").is_file():
        raise ConfigError(
            f"web_client.dist_path: {dist} has no index.html; build the client first "
            "(cd web && npm ci && npm run build; scripts/run does this)"
        )
    server_url = section.server_url or cfg.public_baseurl
    client = next((li for li in cfg.listeners if "client" in li.resources), cfg.listeners[0])
    return WebClientSite(
        dist=dist, server_url=server_url, listener_port=client.port,
        listener_scheme="https" if client.tls else "http", connect_src=section.connect_src,
    )


SITE = web.AppKey("web_client_site", WebClientSite)


def _headers(request: web.Request, cache: str) -> dict[str, str]:
    site = request.app[SITE]
    return {
        "Content-Security-Policy": content_security_policy(site.api_url(request), site.connect_src),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": cache,
    }


async def index(request: web.Request) -> web.StreamResponse:
    """The page, for every client-side route (the client keeps its state in the hash)."""
    site = request.app[SITE]
    return web.FileResponse(site.dist / "index.html", headers=_headers(request, "no-cache"))


async def asset(request: web.Request) -> web.StreamResponse:
    """Built files are named by their content hash: cached for a year."""
    name = request.match_info["name"]
    path = request.app[SITE].dist / "assets" / name
    if not _ASSET.match(name) or not path.is_file():
        raise web.HTTPNotFound(text="not found")
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return web.FileResponse(
        path, headers={**_headers(request, "public, max-age=31536000, immutable"), "Content-Type": kind},
    )


async def client_config(request: web.Request) -> web.Response:
    """What the page cannot know by itself: the homeserver URL to start with."""
    site = request.app[SITE]
    return web.json_response(
        {"default_server_url": site.api_url(request)}, headers=_headers(request, "no-cache"),
    )


def create_web_client_app(site: WebClientSite) -> web.Application:
    app = web.Application()
    app[SITE] = site
    app.router.add_get("/", index)
    app.router.add_get("/config.json", client_config)
    app.router.add_get("/assets/{name}", asset)
    return app
