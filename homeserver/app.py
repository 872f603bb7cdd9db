"""Composition root: config -> stores -> services -> aiohttp application.

The only module that sees every layer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

import client_api.app
from client_api.http import SERVICES
from config.keys import ensure_signing_key, ensure_token_secret
from config.schema import HomeserverConfig
from homeserver.core.signing import parse_signing_key
from homeserver.services.accounts import AccountService
from homeserver.services.auth import AuthService
from homeserver.services.container import Services
from homeserver.services.directory import DirectoryService
from homeserver.services.ephemeral import PresenceService, ReceiptService, TypingService
from homeserver.services.events import EventService
from homeserver.services.notifier import Notifier
from homeserver.services.persister import IdGenerator, Persister
from homeserver.services.profile import AccountDataService, ProfileService
from homeserver.services.rooms import RoomService
from homeserver.services.sync import SyncService
from homeserver.services.timeline import Timeline
from storage.engine import create_engine
from storage.migrate import migrate
from storage.stores.events import EventStore
from storage.stores.filters import AccountDataStore, FilterStore
from storage.stores.receipts import ReceiptStore
from storage.stores.rooms import RoomStore
from storage.stores.state import StateStore
from storage.stores.users import UserStore

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", HomeserverConfig)


async def build_services(cfg: HomeserverConfig) -> tuple[Services, Persister, AsyncEngine]:
    """Open the database, apply migrations and wire every service."""
    engine = create_engine(cfg.database.url, cfg.database.pool_size, cfg.database.echo)
    await migrate(engine)
    key = parse_signing_key(ensure_signing_key(cfg.signing_key_path))
    secret = ensure_token_secret(cfg.token_secret_path)

    users, rooms_store, events_store = UserStore(engine), RoomStore(engine), EventStore(engine)
    state_store, filters, account_data = StateStore(engine), FilterStore(engine), AccountDataStore(engine)
    max_stream, max_group = await events_store.max_ids()
    notifier = Notifier()
    notifier.seed("events", max_stream)
    ad_ids = IdGenerator(await account_data.max_stream_id())
    notifier.seed("account_data", ad_ids.last)
    persister = Persister(events_store)
    persister.start()

    auth = AuthService(users, secret, cfg.server_name)
    accounts = AccountService(users, auth, cfg.server_name, cfg.registration.enabled, cfg.bcrypt_rounds)
    events = EventService(
        server_name=cfg.server_name, signing_key=key, events=events_store, state=state_store,
        rooms=rooms_store, persister=persister, notifier=notifier,
        stream_ids=IdGenerator(max_stream), group_ids=IdGenerator(max_group),
        recall_window_ms=cfg.recall_window_ms,
    )
    rooms = RoomService(
        events=events, rooms=rooms_store, users=users, server_name=cfg.server_name,
        default_room_version=cfg.default_room_version,
    )
    timeline = Timeline(events=events, rooms=rooms, notifier=notifier)
    receipt_store = ReceiptStore(engine)
    receipt_ids = IdGenerator(await receipt_store.max_stream_id())
    notifier.seed("receipts", receipt_ids.last)

    def wake_rooms(stream: str) -> Callable[[int, Iterable[str]], None]:
        return lambda pos, room_ids: notifier.advance(stream, pos, events.local_members(room_ids))

    typing = TypingService(wake_rooms("typing"))
    receipts = ReceiptService(receipt_store, receipt_ids, wake_rooms("receipts"))
    presence = PresenceService(
        lambda pos, users: notifier.advance("presence", pos, users), events.users_sharing_rooms,
    )
    notifier.seed("typing", typing.position)
    notifier.seed("presence", presence.position)
    services = Services(
        server_name=cfg.server_name, auth=auth, accounts=accounts, events=events, rooms=rooms,
        directory=DirectoryService(rooms=rooms, store=rooms_store, events=events, server_name=cfg.server_name),
        timeline=timeline,
        sync=SyncService(
            events=events, rooms=rooms_store, timeline=timeline, notifier=notifier,
            account_data=account_data, server_name=cfg.server_name, typing=typing,
            receipts=receipts, presence=presence,
        ),
        profile=ProfileService(users=users, rooms=rooms_store, events=events, server_name=cfg.server_name),
        account_data=AccountDataService(account_data, notifier, ad_ids),
        notifier=notifier, typing=typing, receipts=receipts, presence=presence, filters=filters, users=users, room_store=rooms_store,
        max_request_bytes=cfg.limits.max_request_bytes,
    )
    return services, persister, engine


async def health(request: web.Request) -> web.Response:
    """GET /health: ok once the database answers."""
    services = request.app[SERVICES]
    try:
        await services.users.get_user("@health-check:invalid")
    except Exception:
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


async def create_app(cfg: HomeserverConfig) -> web.Application:
    """The whole homeserver as one aiohttp app (client API, health; federation later)."""
    services, persister, engine = await build_services(cfg)
    app = client_api.app.create_app(services)
    app[CONFIG] = cfg
    app.router.add_get("/health", health)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await persister.stop()
        await engine.dispose()

    app.cleanup_ctx.append(lifecycle)
    return app
