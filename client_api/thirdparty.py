"""Third-party networks (spec: "Third-party Networks"). Bridges (application services)
are what provide protocols; none is registered here, so there are no protocols: the list
is empty, a named protocol is unknown (404), and lookups find nothing."""

from __future__ import annotations

from aiohttp import web

from client_api.http import cs, requester
from homeserver.core.errors import not_found
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@routes.get(cs("/thirdparty/protocols"))
async def protocols(request: web.Request) -> web.Response:
    """GET /thirdparty/protocols"""
    await requester(request)
    return ok({})


@routes.get(cs("/thirdparty/protocol/{protocol}"))
@routes.get(cs("/thirdparty/location/{protocol}"))
@routes.get(cs("/thirdparty/user/{protocol}"))
async def by_protocol(request: web.Request) -> web.Response:
    """GET /thirdparty/{protocol,location,user}/{protocol}: no such protocol here."""
    await requester(request)
    raise not_found(f"No protocol {request.match_info['protocol']!r} is bridged here")


@routes.get(cs("/thirdparty/location"))
@routes.get(cs("/thirdparty/user"))
async def reverse_lookup(request: web.Request) -> web.Response:
    """GET /thirdparty/location?alias= and /thirdparty/user?userid=: nothing is bridged."""
    await requester(request)
    return ok([])
