"""PUT /send/{txnId}: the HTTP face of the one transaction handler."""

from __future__ import annotations

from aiohttp import web

from federation.inbound.auth import ORIGIN
from federation.inbound.context import FEDERATION
from homeserver.core.canonical_json import encode_json, parse_json
from homeserver.core.errors import forbidden

routes = web.RouteTableDef()


@routes.put("/_matrix/federation/v1/send/{txn_id}")
async def send_transaction(request: web.Request) -> web.Response:
    """PUT /_matrix/federation/v1/send/{txnId}"""
    body = parse_json(await request.read())
    if isinstance(body, dict) and body.get("origin") not in (None, request[ORIGIN]):
        raise forbidden("Transaction origin does not match the signing server")
    result = await request.app[FEDERATION].handler.on_transaction(
        request[ORIGIN], request.match_info["txn_id"], body,
    )
    return web.Response(text=encode_json(result), content_type="application/json")
