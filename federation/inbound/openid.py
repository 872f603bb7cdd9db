"""GET /openid/userinfo: who an OpenID token (from the client API's
/user/{userId}/openid/request_token) names.

Spec: Server-Server API, "OpenID". No X-Matrix: the caller is any third party holding
the token (federation.inbound.auth lists this path as unauthenticated).
"""

from __future__ import annotations

from aiohttp import web

from federation.inbound.context import FEDERATION
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@routes.get("/v1/openid/userinfo")
async def userinfo(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/openid/userinfo?access_token="""
    token = request.query.get("access_token")
    if not token:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Missing access_token")
    return ok({"sub": await request.app[FEDERATION].auth.openid_user(token)})
