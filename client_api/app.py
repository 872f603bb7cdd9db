"""The client-server API as an aiohttp sub-app, mounted at ``client_api.http.PREFIX``."""

from __future__ import annotations

from aiohttp import web

from client_api import (
    account,
    appservice,
    directory,
    discovery,
    ephemeral,
    key_backup,
    keys,
    legacy,
    profile,
    push,
    relations,
    reports,
    rooms,
    search,
    sliding_sync,
    spaces,
    summaries,
    sync,
    threepid,
    upgrade,
    websocket,
)
from client_api.http import SERVICES
from homeserver.http.middleware import body_limit
from homeserver.services.container import Services

MODULES = (
    discovery, account, threepid, rooms, relations, sync, profile, ephemeral, directory, keys, key_backup,
    push, spaces, appservice, websocket, sliding_sync, search, upgrade, reports, summaries, legacy,
)


def create_admin_app(services: Services, max_request_bytes: int) -> web.Application:
    """The Synapse-compatible admin API (``client_api.admin.PREFIX``)."""
    from client_api import admin

    app = web.Application(middlewares=[body_limit(max_request_bytes), admin.admins_only])
    app[SERVICES] = services
    app.router.add_routes(admin.routes)
    return app


def create_tricolor_app(services: Services, max_request_bytes: int) -> web.Application:
    """Tricolor's own extensions (``client_api.tricolor.PREFIX``) and their documentation."""
    from client_api import ai_records, openapi, tricolor

    app = web.Application(middlewares=[body_limit(max_request_bytes)])
    app[SERVICES] = services
    app.router.add_routes(tricolor.routes)
    app.router.add_routes(ai_records.routes)
    app.router.add_routes(openapi.routes)
    return app


def create_app(services: Services, max_request_bytes: int) -> web.Application:
    """Errors and CORS come from the root app; this sub-app adds its own body limit."""
    app = web.Application(middlewares=[body_limit(max_request_bytes)])
    app[SERVICES] = services
    for module in MODULES:
        app.router.add_routes(module.routes)
    return app
