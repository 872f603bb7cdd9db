"""Versions, capabilities and .well-known: what a client asks before logging in."""

from __future__ import annotations

from aiohttp import web

from client_api.http import cs, requester, services
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.responses import ok
from homeserver.services.discovery import DiscoveryService

routes = web.RouteTableDef()
# Served at the root, outside the client sub-app's prefix.
well_known_routes = web.RouteTableDef()
# Set on the root app by homeserver.app: the well-known documents come from config.
DISCOVERY = web.AppKey("discovery", DiscoveryService)

# v1.2 needs GET /rooms/{roomId}/hierarchy (client_api/spaces.py). Later versions are not
# claimed until everything they require is served.
SUPPORTED_VERSIONS = ["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"]
# Authenticated media (/_matrix/client/v1/media, spec v1.11) under the flag clients check
# when the server does not claim v1.11 (MSC3916): with the legacy endpoints frozen
# (media.enable_authenticated_media), clients must know to use the new ones.
# MSC4186 (simplified sliding sync): matrix-rust-sdk (Element X) looks for this key.
UNSTABLE_FEATURES = {"org.matrix.msc3916.stable": True, "org.matrix.simplified_msc3575": True}


@routes.get("/versions")
async def versions(request: web.Request) -> web.Response:
    """GET /_matrix/client/versions"""
    return ok({"versions": SUPPORTED_VERSIONS, "unstable_features": UNSTABLE_FEATURES})


@well_known_routes.get("/.well-known/matrix/client")
async def well_known(request: web.Request) -> web.Response:
    """GET /.well-known/matrix/client"""
    return ok(request.app[DISCOVERY].client(f"{request.scheme}://{request.host}"))


@well_known_routes.get("/.well-known/matrix/support")
async def well_known_support(request: web.Request) -> web.Response:
    """GET /.well-known/matrix/support (404 when nothing is configured)"""
    return ok(request.app[DISCOVERY].support())


@routes.get(cs("/voip/turnServer"))
async def turn_server(request: web.Request) -> web.Response:
    """GET /voip/turnServer"""
    req = await requester(request)
    return ok(services(request).discovery.turn_server(req))


@routes.get(cs("/capabilities"))
async def capabilities(request: web.Request) -> web.Response:
    """GET /capabilities"""
    await requester(request)
    default = services(request).rooms.default_room_version
    return ok({"capabilities": {
        "m.room_versions": {"default": default, "available": {
            v.identifier: "stable" if v.stable else "unstable" for v in KNOWN_ROOM_VERSIONS.values()
        }},
        "m.change_password": {"enabled": True},
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        # No identity-server support, so 3PIDs cannot be bound or changed.
        "m.3pid_changes": {"enabled": False},
        # Spec "m.get_login_token capability": whether POST /login/get_token may be used.
        "m.get_login_token": {"enabled": services(request).login_tokens.enabled},
    }})
