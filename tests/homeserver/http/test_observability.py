"""The observing middleware in front of the error renderer: ids, counters, 500s."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.exposition import generate_latest

from homeserver.http import observability
from homeserver.http.middleware import matrix_errors
from homeserver.logs import JsonFormatter, RequestIdFilter
from homeserver.services.metrics import Metrics


async def broken_handler(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def fine_handler(request: web.Request) -> web.Response:
    logging.getLogger("tricolor.test").info("inside the handler")
    return web.json_response({})


@pytest.fixture
async def client() -> TestClient:
    metrics = Metrics.create()
    app = web.Application(middlewares=[observability.observe(metrics), matrix_errors])
    app[observability.METRICS] = metrics
    app.router.add_get("/broken", broken_handler)
    app.router.add_get("/fine", fine_handler)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_an_unexpected_exception_is_a_500_m_unknown_logged_with_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO):
        resp = await client.get("/broken")
    assert resp.status == 500
    rid = resp.headers["X-Request-Id"]
    assert await resp.json() == {"errcode": "M_UNKNOWN", "error": f"Internal server error (request {rid})"}
    failure = next(r for r in caplog.records if r.getMessage().startswith("unhandled error"))
    assert failure.request_id == rid  # type: ignore[attr-defined]
    assert failure.exc_info is not None and "a bug" in str(failure.exc_info[1])
    access = next(r for r in caplog.records if r.name == "tricolor.access")
    assert access.request_id == rid  # type: ignore[attr-defined]
    assert "GET /broken 500" in access.getMessage()
    page = generate_latest(client.app[observability.METRICS].registry).decode()
    assert 'synapse_http_server_responses_total{code="500",method="GET"} 1.0' in page
    assert 'synapse_http_server_requests_received_total{method="GET",servlet="tests.homeserver.http.test_observability.broken_handler"} 1.0' in page


async def test_lines_written_inside_a_request_carry_its_id(
    client: TestClient, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO):
        first = await client.get("/fine")
        second = await client.get("/fine")
    ids = [first.headers["X-Request-Id"], second.headers["X-Request-Id"]]
    assert ids[0] != ids[1]
    inside = [r.request_id for r in caplog.records if r.getMessage() == "inside the handler"]  # type: ignore[attr-defined]
    assert inside == ids
    formatted = json.loads(JsonFormatter().format(
        next(r for r in caplog.records if r.getMessage() == "inside the handler"),
    ))
    assert formatted["request_id"] == ids[0]
    assert formatted["logger"] == "tricolor.test" and formatted["msg"] == "inside the handler"


async def test_a_peer_s_request_id_is_logged_only_when_safe(
    client: TestClient, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        await client.get("/fine", headers={"X-Request-Id": "txn-abc-1234"})
        await client.get("/fine", headers={"X-Request-Id": "evil\u2028line"})
    lines = [r.getMessage() for r in caplog.records if r.name == "tricolor.access"]
    assert lines[0].endswith("peer_request_id=txn-abc-1234")
    assert "peer_request_id" not in lines[1]
