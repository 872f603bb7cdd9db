"""The key API (ours and the notary's) and ``/version``: all unauthenticated.

Spec: "Retrieving server keys" and "GET /_matrix/federation/v1/version" (server-server API).
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
from aiohttp import web

from federation.outbound.keyring import Keyring
from homeserver.core.canonical_json import parse_json
from homeserver.core.errors import bad_json, invalid_param, not_json
from homeserver.http.inputs import parse_query
from homeserver.http.responses import ok

KEYRING = web.AppKey("keyring", Keyring)

SERVER_NAME = "Tricolor"
SERVER_VERSION = "0.1.0"
# One notary request may not make us contact more servers than this.
MAX_QUERY_SERVERS = 100

PREFIX = "/_matrix/key"  # the key sub-app; ``version_routes`` belong to the federation sub-app
routes = web.RouteTableDef()
version_routes = web.RouteTableDef()


async def _own_keys(request: web.Request) -> web.Response:
    return ok(request.app[KEYRING].own_key_response())


# Older servers ask for a trailing slash or a specific key id; the answer is the same.
routes.get("/v2/server")(_own_keys)
routes.get("/v2/server/")(_own_keys)
routes.get("/v2/server/{key_id}")(_own_keys)


def _min_valid(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_json("minimum_valid_until_ts must be an integer")
    return value


async def _lookup_all(keyring: Keyring, wanted: dict[str, tuple[list[str], int | None]]) -> list[dict[str, Any]]:
    results = await asyncio.gather(*(
        keyring.notary_response(server, key_ids, min_valid) for server, (key_ids, min_valid) in wanted.items()
    ))
    return [r for r in results if r is not None]


@routes.post("/v2/query")
async def query_keys(request: web.Request) -> web.Response:
    """POST /_matrix/key/v2/query {"server_keys": {server: {key_id: {minimum_valid_until_ts}}}}"""
    raw = await request.read()
    if not raw.strip():
        raise not_json()
    body = parse_json(raw)
    server_keys = body.get("server_keys") if isinstance(body, dict) else None
    if not isinstance(server_keys, dict):
        raise bad_json("server_keys must be an object")
    if len(server_keys) > MAX_QUERY_SERVERS:
        raise invalid_param(f"At most {MAX_QUERY_SERVERS} servers per query")
    wanted: dict[str, tuple[list[str], int | None]] = {}
    for server, keys in server_keys.items():
        if not isinstance(keys, dict):
            raise bad_json(f"server_keys.{server} must be an object")
        mins = []
        for kid, criteria in keys.items():
            if not isinstance(criteria, dict):
                raise bad_json(f"server_keys.{server}.{kid} must be an object")
            if (m := _min_valid(criteria.get("minimum_valid_until_ts"))) is not None:
                mins.append(m)
        # Empty inner object = all keys; several criteria: the strictest one wins.
        wanted[server] = (list(keys), max(mins) if mins else None)
    return ok({"server_keys": await _lookup_all(request.app[KEYRING], wanted)})


@attrs.frozen
class KeyQuery:
    minimum_valid_until_ts: int | None = None


@routes.get("/v2/query/{server_name}")
async def query_server_keys(request: web.Request) -> web.Response:
    """GET /_matrix/key/v2/query/{serverName}?minimum_valid_until_ts="""
    min_valid = parse_query(request, KeyQuery).minimum_valid_until_ts
    server = request.match_info["server_name"]
    return ok({"server_keys": await _lookup_all(request.app[KEYRING], {server: ([], min_valid)})})


@version_routes.get("/v1/version")
async def version(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/version"""
    return ok({"server": {"name": SERVER_NAME, "version": SERVER_VERSION}})
