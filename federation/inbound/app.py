"""The federation API and the key server as aiohttp sub-apps.

Errors and CORS come from the root app (homeserver.http.middleware); each sub-app
adds its own body limit, and only the federation sub-app checks X-Matrix signatures.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from federation.inbound import keys, keys_e2e, openid, transactions
from federation.inbound import rooms as fed_rooms
from federation.inbound.auth import make_xmatrix_middleware
from federation.inbound.context import FEDERATION, FederationContext
from federation.inbound.keys import KEYRING
from federation.outbound.keyring import Keyring
from homeserver.http.middleware import body_limit

PREFIX = "/_matrix/federation"


def create_federation_app(
    context: FederationContext, keyring: Keyring, max_request_bytes: int,
    on_origin: Callable[[str], None] | None = None,
    allowed: Callable[[str], bool] | None = None,
) -> web.Application:
    """Mounted at PREFIX. ``on_origin`` hears of every authenticated peer."""
    app = web.Application(middlewares=[
        body_limit(max_request_bytes),
        make_xmatrix_middleware(context.server_name, keyring, on_origin=on_origin, allowed=allowed),
    ])
    app[FEDERATION] = context
    for table in (
        keys.version_routes, transactions.routes, fed_rooms.routes, keys_e2e.routes, openid.routes,
    ):
        app.router.add_routes(table)
    return app


def create_key_app(keyring: Keyring, max_request_bytes: int) -> web.Application:
    """Mounted at ``keys.PREFIX``: our keys and the notary; no request signatures."""
    app = web.Application(middlewares=[body_limit(max_request_bytes)])
    app[KEYRING] = keyring
    app.router.add_routes(keys.routes)
    return app
