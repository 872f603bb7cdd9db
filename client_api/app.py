"""The client-server API as an aiohttp application factory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from client_api import account, directory, discovery, ephemeral, profile, rooms, sync
from client_api.http import SERVICES
from client_api.middleware import make_error_middleware
from homeserver.services.container import Services

MODULES = (discovery, account, rooms, sync, profile, ephemeral, directory)


def create_app(services: Services, extra_middlewares: Sequence[Any] = ()) -> web.Application:
    app = web.Application(
        middlewares=[make_error_middleware(services.max_request_bytes), *extra_middlewares],
        client_max_size=services.max_request_bytes,
    )
    app[SERVICES] = services
    for module in MODULES:
        app.router.add_routes(module.routes)
    return app
