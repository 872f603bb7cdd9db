"""The assistant's application-service endpoints (spec: Application Service API) and its
process: `tricolor ai-assistant -c assistant.yaml`."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from collections.abc import AsyncIterator

import aiohttp
import attrs
from aiohttp import web

from ai_assistant.assistant import Assistant
from ai_assistant.config import AssistantConfig

log = logging.getLogger(__name__)


@attrs.define
class Slot:
    """The running assistant, filled when the app starts (an app's keys are fixed by then)."""

    assistant: Assistant | None = None

    def get(self) -> Assistant:
        assert self.assistant is not None, "the assistant app has not started"
        return self.assistant


SLOT = web.AppKey("assistant", Slot)


def _authorised(request: web.Request) -> bool:
    # Spec "Authorization": the homeserver's hs_token as a bearer token.
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else request.query.get("access_token", "")
    return secrets.compare_digest(token, request.app[SLOT].get().cfg.registration.hs_token)


def _error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


async def transactions(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(403, "M_FORBIDDEN", "Bad hs_token")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "M_NOT_JSON", "Body is not JSON")
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return _error(400, "M_BAD_JSON", "events must be a list")
    ok = await request.app[SLOT].get().handle_transaction(request.match_info["txn_id"], events)
    if not ok:
        return _error(503, "M_LIMIT_EXCEEDED", "Busy; send this transaction again later")
    return web.json_response({})


async def not_provisioned(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(403, "M_FORBIDDEN", "Bad hs_token")
    return _error(404, "M_NOT_FOUND", "The assistant provisions no users or rooms")


async def ping(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(403, "M_FORBIDDEN", "Bad hs_token")
    return web.json_response({})


def create_app(cfg: AssistantConfig) -> web.Application:
    """The assistant's endpoints; its session, workers and queue live with the app."""
    app = web.Application()
    app[SLOT] = slot = Slot()
    app.router.add_put("/_matrix/app/v1/transactions/{txn_id}", transactions)
    app.router.add_get("/_matrix/app/v1/users/{user_id}", not_provisioned)
    app.router.add_get("/_matrix/app/v1/rooms/{alias}", not_provisioned)
    app.router.add_post("/_matrix/app/v1/ping", ping)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            slot.assistant = Assistant(cfg, session)
            slot.assistant.start()
            yield
            await slot.assistant.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


def run(cfg: AssistantConfig) -> None:
    async def serve() -> None:
        runner = web.AppRunner(create_app(cfg), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, cfg.listen_host, cfg.listen_port, reuse_address=True).start()
            log.info("AI assistant %s listening on %s:%d", cfg.registration.sender, cfg.listen_host, cfg.listen_port)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())
