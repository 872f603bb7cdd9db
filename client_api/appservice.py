"""Client-server endpoints for and about application services: ping, published room
directories per network, and third-party lookups backed by registered protocols."""

from __future__ import annotations

from typing import Literal

import attrs
from aiohttp import web

from client_api.http import cs, parse_body, requester, services
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class PingBody:
    transaction_id: str | None = None


@attrs.frozen
class VisibilityBody:
    visibility: Literal["public", "private"]


@routes.post("/v1/appservice/{appservice_id}/ping")
async def ping(request: web.Request) -> web.Response:
    """POST /_matrix/client/v1/appservice/{appserviceId}/ping {transaction_id?}"""
    req = await requester(request)
    body = await parse_body(request, PingBody, allow_empty=True)
    return ok(await services(request).appservices.ping(req, request.match_info["appservice_id"], body.transaction_id))


@routes.put(cs("/directory/list/appservice/{network_id}/{room_id}"))
async def set_listed(request: web.Request) -> web.Response:
    """PUT /directory/list/appservice/{networkId}/{roomId} {visibility} (as_token only)"""
    req = await requester(request)
    body = await parse_body(request, VisibilityBody)
    await services(request).appservices.set_listed(
        req, request.match_info["network_id"], request.match_info["room_id"], body.visibility,
    )
    return ok({})


@routes.get(cs("/thirdparty/protocols"))
async def protocols(request: web.Request) -> web.Response:
    await requester(request)
    return ok(await services(request).appservices.protocols())


@routes.get(cs("/thirdparty/protocol/{protocol}"))
async def protocol(request: web.Request) -> web.Response:
    await requester(request)
    return ok(await services(request).appservices.protocol(request.match_info["protocol"]))


def _fields(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.query.items() if k != "access_token"}


@routes.get(cs("/thirdparty/{kind:location|user}/{protocol}"))
async def lookup(request: web.Request) -> web.Response:
    """GET /thirdparty/location/{protocol} and /thirdparty/user/{protocol}: the protocol's
    services asked with the query's fields."""
    await requester(request)
    return ok(await services(request).appservices.lookup(
        request.match_info["kind"], request.match_info["protocol"], _fields(request),
    ))


@routes.get(cs("/thirdparty/location"))
async def location_by_alias(request: web.Request) -> web.Response:
    """GET /thirdparty/location?alias=: reverse lookup of a Matrix alias."""
    await requester(request)
    if "alias" not in request.query:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing alias")
    return ok(await services(request).appservices.lookup("location", None, {"alias": request.query["alias"]}))


@routes.get(cs("/thirdparty/user"))
async def user_by_id(request: web.Request) -> web.Response:
    """GET /thirdparty/user?userid=: reverse lookup of a Matrix user id."""
    await requester(request)
    if "userid" not in request.query:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing userid")
    return ok(await services(request).appservices.lookup("user", None, {"userid": request.query["userid"]}))
