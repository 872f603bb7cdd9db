"""Requests aiohttp cannot parse still get Matrix errors, on the runner the CLI uses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from config.schema import HomeserverConfig
from homeserver.app import create_app
from homeserver.http.server import MatrixAppRunner


@pytest.fixture
async def address(hs_config: HomeserverConfig) -> AsyncIterator[tuple[str, int]]:
    runner = MatrixAppRunner(await create_app(hs_config), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield host, port
    finally:
        await runner.cleanup()


async def _raw(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 10)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)  # the server closes after an error
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("size", [20_000, 70_000, 200_000])
async def test_over_long_header_line_is_a_matrix_error(address: tuple[str, int], size: int) -> None:
    # 20 kB passes aiohttp's parser and is refused by the middleware; 70 kB and 200 kB are
    # refused by the parser itself, before any middleware (once plain text).
    status, headers, body = await _raw(
        address,
        b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Padding: "
        + b"a" * size
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert status == 431
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["errcode"] == "M_TOO_LARGE"


async def test_over_long_request_line_is_a_matrix_error(address: tuple[str, int]) -> None:
    status, _, body = await _raw(
        address,
        b"GET /_matrix/client/versions?x=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert status == 431
    assert json.loads(body)["errcode"] == "M_TOO_LARGE"


async def test_garbage_request_is_a_matrix_error(address: tuple[str, int]) -> None:
    status, headers, body = await _raw(address, b"\x16\x03\x01 not http\r\n\r\n")
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["errcode"] == "M_UNKNOWN"


async def test_well_formed_request_still_served(address: tuple[str, int]) -> None:
    status, _, body = await _raw(
        address,
        b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert status == 200
    assert "versions" in json.loads(body)
