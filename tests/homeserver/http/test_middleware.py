"""The shared HTTP layer: one error renderer and CORS on the root app, a body limit per sub-app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from homeserver.core.errors import MatrixError
from homeserver.http.middleware import body_limit, matrix_errors


async def echo_size(request: web.Request) -> web.Response:
    return web.json_response({"size": len(await request.read())})


async def refuse(request: web.Request) -> web.Response:
    raise MatrixError(403, "M_FORBIDDEN", "no")


async def crash(request: web.Request) -> web.Response:
    raise KeyError("a bug")


def sub_app(limit: int) -> web.Application:
    app = web.Application(middlewares=[body_limit(limit)])
    app.router.add_put("/echo", echo_size)
    app.router.add_get("/refuse", refuse)
    app.router.add_get("/crash", crash)
    return app


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    """A root app sized for 100 bytes, with a 50-byte sub-app and a 1000-byte one."""
    root = web.Application(middlewares=[matrix_errors], client_max_size=100)
    root.add_subapp("/small", sub_app(50))
    root.add_subapp("/big", sub_app(1000))
    return await aiohttp_client(root)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length, so only the read can enforce the limit."""
    for i in range(0, len(data), 10):
        yield data[i:i + 10]


async def put(client: TestClient, path: str, body: Any) -> tuple[int, dict[str, Any], Any]:
    async with client.put(path, data=body) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_each_sub_app_has_its_own_body_limit(client: TestClient) -> None:
    status, body, headers = await put(client, "/small/echo", b"x" * 60)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert (await put(client, "/small/echo", b"x" * 50))[:2] == (200, {"size": 50})
    # Bigger than the root app's size, within the sub-app's own limit.
    assert (await put(client, "/big/echo", b"x" * 600))[:2] == (200, {"size": 600})
    status, body, _ = await put(client, "/big/echo", b"x" * 1001)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")


async def test_chunked_bodies_are_held_to_the_sub_app_limit(client: TestClient) -> None:
    status, body, _ = await put(client, "/small/echo", chunks(b"x" * 60))
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    assert (await put(client, "/big/echo", chunks(b"x" * 600)))[:2] == (200, {"size": 600})


async def test_errors_render_alike_inside_and_outside_sub_apps(client: TestClient) -> None:
    for path in ("/small/nothing", "/elsewhere", "/big/echo/deeper"):
        async with client.get(path) as resp:
            assert resp.status == 404, path
            assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
    async with client.get("/big/echo") as resp:
        assert (resp.status, (await resp.json())["errcode"]) == (405, "M_UNRECOGNIZED")
    async with client.get("/small/refuse") as resp:
        assert (resp.status, await resp.json()) == (403, {"errcode": "M_FORBIDDEN", "error": "no"})
    async with client.options("/anything") as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_an_unexpected_exception_is_logged_and_answered_m_unknown_500(
    client: TestClient, caplog: pytest.LogCaptureFixture,
) -> None:
    async with client.get("/small/crash") as resp:
        assert resp.status == 500
        body = await resp.json()
    assert body["errcode"] == "M_UNKNOWN"
    incident = body["error"].rsplit(" ", 1)[1].rstrip(")")
    logged = [r for r in caplog.records if r.levelname == "ERROR" and incident in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the trace is in the log, under the same id
    assert "GET /small/crash" in logged[0].getMessage()
