"""A small application service, run as its own process by the tests (spec: Application
Service API). It checks the homeserver's hs_token, keeps every transaction it accepts
(by txn id: a repeated txn id is acknowledged without being counted again, as the spec
asks), answers user and alias queries by provisioning them through the homeserver with
its as_token, answers pings and a third-party protocol, and shows what it saw on
GET /_test/state. `--refuse N` answers the first N transactions with 503.

    python -m tests.appservice.fake_as --port P --hs-url URL --hs-token T --as-token T
"""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.parse
from typing import Any

import aiohttp
from aiohttp import web


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hs-url", required=True)
    p.add_argument("--hs-token", required=True)
    p.add_argument("--as-token", required=True)
    p.add_argument("--server-name", default="hs.test")
    p.add_argument("--refuse", type=int, default=0)
    args = p.parse_args()
    state: dict[str, Any] = {"txns": {}, "attempts": [], "pings": [], "queries": [], "refuse": args.refuse}

    def authorised(request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {args.hs_token}"

    async def hs(method: str, path: str, body: Any = None, user_id: str | None = None) -> tuple[int, Any]:
        params = {"user_id": user_id} if user_id else None
        async with aiohttp.ClientSession() as session, session.request(
            method, args.hs_url.rstrip("/") + path, json=body, params=params,
            headers={"Authorization": f"Bearer {args.as_token}"},
        ) as r:
            return r.status, await r.json(content_type=None)

    async def transaction(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        txn_id = request.match_info["txn_id"]
        state["attempts"].append(txn_id)
        if state["refuse"] > 0:
            state["refuse"] -= 1
            return web.json_response({"errcode": "M_UNKNOWN", "error": "down for a bit"}, status=503)
        body = await request.json()
        state["txns"].setdefault(txn_id, body)
        return web.json_response({})

    async def query_user(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        user_id = request.match_info["user_id"]
        state["queries"].append(user_id)
        localpart = user_id[1:].split(":")[0]
        if "lazy" not in localpart:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        status, _ = await hs("POST", "/_matrix/client/v3/register", {
            "type": "m.login.application_service", "username": localpart, "inhibit_login": True,
        })
        return web.json_response({} if status == 200 else {"errcode": "M_UNKNOWN"}, status=200 if status == 200 else 500)

    async def query_alias(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        alias = request.match_info["alias"]
        state["queries"].append(alias)
        if "lazy" not in alias:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        status, room = await hs("POST", "/_matrix/client/v3/createRoom", {"name": "provisioned"})
        if status == 200:
            status, _ = await hs(
                "PUT", f"/_matrix/client/v3/directory/room/{urllib.parse.quote(alias)}", {"room_id": room["room_id"]},
            )
        return web.json_response({}, status=200 if status == 200 else 500)

    async def ping(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        state["pings"].append((await request.json()).get("transaction_id"))
        return web.json_response({})

    async def protocol(request: web.Request) -> web.Response:
        if request.match_info["protocol"] != "chatnet":
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        return web.json_response({
            "user_fields": ["nick"], "location_fields": ["channel"], "icon": "mxc://example.org/icon",
            "field_types": {"nick": {"regexp": ".*", "placeholder": "nick"},
                            "channel": {"regexp": "#.*", "placeholder": "#chan"}},
            "instances": [{"desc": "Chatnet", "network_id": "chatnet", "fields": {}}],
        })

    async def location(request: web.Request) -> web.Response:
        channel = request.query.get("channel", "#default")
        return web.json_response([{
            "alias": f"#_chat_{channel.lstrip('#')}:{args.server_name}", "protocol": "chatnet",
            "fields": {"channel": channel},
        }])

    async def show(request: web.Request) -> web.Response:
        return web.json_response(state)

    app = web.Application()
    app.router.add_put("/_matrix/app/v1/transactions/{txn_id}", transaction)
    app.router.add_get("/_matrix/app/v1/users/{user_id}", query_user)
    app.router.add_get("/_matrix/app/v1/rooms/{alias}", query_alias)
    app.router.add_post("/_matrix/app/v1/ping", ping)
    app.router.add_get("/_matrix/app/v1/thirdparty/protocol/{protocol}", protocol)
    app.router.add_get("/_matrix/app/v1/thirdparty/location/{protocol}", location)
    app.router.add_get("/_test/state", show)
    print(json.dumps({"listening": args.port}), flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, handle_signals=True)


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    main()
