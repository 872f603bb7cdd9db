"""The internal API workers call on each other (docs/workers.md): a room write that
arrived at a worker not holding the room's shard, forwarded to the one that does.
Served on each worker's own internal listener only, never on the public ones, and
every request must carry the shared secret."""

from __future__ import annotations

import hmac

from aiohttp import web

from homeserver.core.errors import MatrixError
from homeserver.core.shards import NOT_OWNER, SECRET_HEADER, NotOwner
from homeserver.http.responses import ok
from homeserver.services.routed_writer import WriterEndpoint

WRITER = web.AppKey("writer_endpoint", WriterEndpoint)
SECRET = web.AppKey("internal_secret", str)
routes = web.RouteTableDef()


@routes.post("/_tricolor/internal/v1/writer/{method}")
async def forwarded_write(request: web.Request) -> web.Response:
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), request.app[SECRET].encode()):
        raise MatrixError(403, "M_FORBIDDEN", "Not a worker of this server")
    try:
        body = await request.json()
    except ValueError:
        raise MatrixError(400, "M_NOT_JSON", "Body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("room_id"), str):
        raise MatrixError(400, "M_BAD_JSON", "room_id missing")
    try:
        return ok(await request.app[WRITER].handle(request.match_info["method"], body))
    except NotOwner:
        return ok({"errcode": NOT_OWNER, "error": "This worker does not write that room"}, status=409)
    except (KeyError, TypeError, ValueError) as exc:
        raise MatrixError(400, "M_BAD_JSON", f"Bad forwarded write: {exc}") from None


def create_internal_app(endpoint: WriterEndpoint, secret: str, middlewares: list[object]) -> web.Application:
    app = web.Application(middlewares=middlewares, client_max_size=8 * 1024 * 1024)  # type: ignore[arg-type]
    app[WRITER] = endpoint
    app[SECRET] = secret
    app.router.add_routes(routes)
    return app
