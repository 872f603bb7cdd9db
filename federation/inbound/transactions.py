"""PUT /send/{txnId}: the HTTP face of the one transport-neutral transaction handler.

Spec: Server-Server API, "PUT /_matrix/federation/v1/send/{txnId}". X-Matrix verification
(the middleware) has set the origin; everything else, deduplication by (origin, txnId)
included, is ``receive_transaction``, which the AMQP consumer will call the same way.
"""

from __future__ import annotations

from aiohttp import web

from federation.inbound.auth import ORIGIN
from federation.inbound.context import FEDERATION
from homeserver.core.canonical_json import parse_federation_json
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@routes.put("/v1/send/{txn_id}")
async def send_transaction(request: web.Request) -> web.Response:
    """PUT /_matrix/federation/v1/send/{txnId}"""
    result = await request.app[FEDERATION].handler.receive_transaction(
        request[ORIGIN], request.match_info["txn_id"], parse_federation_json(await request.read()),
    )
    return ok(result)
