"""SSRF protection on push gateways: a pusher URL is a user's choice, so the gateway is
contacted only at addresses ip_range_blacklist / ip_range_whitelist allow (literal or
resolved name), and a redirect is never followed. A refused gateway is not retried.
Real local HTTP servers; the gateway client is the one the server runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from federation.outbound.guarded_http import GuardedResolver
from homeserver.core.ip_ranges import DEFAULT_IP_RANGE_BLACKLIST, IpPolicy
from homeserver.core.push_gateway import GatewayAnswer
from homeserver.outbound.push_gateway import HttpPushGateway

BODY = {"notification": {"devices": [{"pushkey": "k", "app_id": "a"}]}}


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[TestServer, list[str]]]:
    hits: list[str] = []

    async def notify(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"rejected": []})

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPTemporaryRedirect("/_matrix/push/v1/notify")  # followed, it would be a hit

    app = web.Application()
    app.router.add_post("/_matrix/push/v1/notify", notify)
    app.router.add_post("/redirect", redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, hits
    finally:
        await server.close()


def _client(*whitelist: str) -> HttpPushGateway:
    policy = IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, whitelist)
    return HttpPushGateway(policy, GuardedResolver(policy))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_gateway_in_a_denied_range_is_not_contacted(
    gateway: tuple[TestServer, list[str]], host: str,
) -> None:
    server, hits = gateway
    client = _client()
    try:
        answer = await client.notify(f"http://{host}:{server.port}/_matrix/push/v1/notify", BODY)
    finally:
        await client.close()
    assert answer == GatewayAnswer()  # refused for good: no retry
    assert client.blocked == 1
    assert hits == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_whitelisted_gateway_is_notified(gateway: tuple[TestServer, list[str]], host: str) -> None:
    server, hits = gateway
    client = _client("127.0.0.1/32")
    try:
        answer = await client.notify(f"http://{host}:{server.port}/_matrix/push/v1/notify", BODY)
    finally:
        await client.close()
    assert answer == GatewayAnswer(rejected=())
    assert hits == ["/_matrix/push/v1/notify"] and client.blocked == 0


async def test_a_redirect_is_not_followed(gateway: tuple[TestServer, list[str]]) -> None:
    server, hits = gateway
    client = _client("127.0.0.1/32")
    try:
        answer = await client.notify(f"http://127.0.0.1:{server.port}/redirect", BODY)
    finally:
        await client.close()
    assert answer == GatewayAnswer()  # a 3xx is the gateway refusing, not a place to go
    assert hits == ["/redirect"]
