"""Composition root: config -> stores -> outbound -> services -> aiohttp application.

The only module that sees every layer. The application is a root app (errors, CORS,
/health, .well-known) with one sub-app per API: client (/_matrix/client), federation
(/_matrix/federation) and key server (/_matrix/key), each with its own middlewares and
body limit.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

import client_api.app
import client_api.internal
import client_api.media
import client_api.tricolor
from ai_assistant.app import SLOT as ASSISTANT_SLOT
from ai_assistant.app import create_app as create_assistant_app
from ai_assistant.config import load_assistant_config
from client_api import discovery
from client_api.admin import ADMIN_MEDIA
from client_api.admin import PREFIX as ADMIN_PREFIX
from client_api.http import PREFIX as CLIENT_PREFIX
from client_api.tricolor import PREFIX as TRICOLOR_PREFIX
from config.appservice import load_registrations
from config.errors import ConfigError
from config.key_rotation import load_old_keys
from config.keys import ensure_signing_key, ensure_token_secret
from config.schema import FederationConfig, HomeserverConfig, RateLimit
from config.tls import client_ssl_context
from federation.inbound import keys
from federation.inbound.app import PREFIX as FEDERATION_PREFIX
from federation.inbound.app import create_federation_app, create_key_app
from federation.inbound.context import FederationContext
from federation.inbound.media import FEDERATION_MEDIA
from federation.inbound.media import routes as federation_media_routes
from federation.outbound.amqp.runtime import AmqpRuntime, advertisement
from federation.outbound.client import FederationClient
from federation.outbound.guarded_http import GuardedHttpClient, GuardedResolver
from federation.outbound.hierarchy import FederationHierarchy
from federation.outbound.keyring import Keyring
from federation.outbound.media import FederationMediaFetcher
from federation.outbound.resolver import ServerResolver
from federation.outbound.sender import FederationSender
from federation.outbound.transport import from_config as transport_from_config
from federation.outbound.transport.base import Delivered, DeliveryResult, Retry, Transaction
from federation.outbound.transport.observed import ObservedTransport
from homeserver.core import ids
from homeserver.core.ai_roles import AI_EVENT
from homeserver.core.federation_domains import federation_domain_allowed
from homeserver.core.ip_ranges import IpPolicy
from homeserver.core.signing import SigningKey, parse_signing_key
from homeserver.http import observability
from homeserver.http.middleware import PARSER_LIMITS, matrix_errors
from homeserver.outbound.appservice import HttpAppServiceApi
from homeserver.outbound.event_bus import AmqpEventPublisher
from homeserver.outbound.internal_rpc import HttpWriterRpc
from homeserver.outbound.mailer import SmtpMailer
from homeserver.outbound.push_gateway import HttpPushGateway
from homeserver.outbound.redis_buckets import RedisBuckets
from homeserver.outbound.redis_bus import RedisBus, bus_namespace
from homeserver.services.accounts import AccountService
from homeserver.services.admin import AdminService, ReportAdminService
from homeserver.services.aggregations import Aggregations
from homeserver.services.ai_groups import WATCHED as AI_WATCHED
from homeserver.services.ai_groups import AiGroupJoiner
from homeserver.services.ai_records import AiRecordService
from homeserver.services.appservice import AppServiceRegistry
from homeserver.services.appservice_queue import AppServiceQueue
from homeserver.services.auth import AuthService
from homeserver.services.client_events import ClientEventListener, ClientEventService
from homeserver.services.clock import now_ms
from homeserver.services.container import Services
from homeserver.services.devices import DeviceService
from homeserver.services.directory import DirectoryService
from homeserver.services.discovery import DiscoveryService
from homeserver.services.e2e import E2eService, Membership, NullRemoteKeys, RemoteKeysPort
from homeserver.services.ephemeral import (
    EphemeralListener,
    PresenceService,
    ReceiptService,
    TypingService,
)
from homeserver.services.event_bus import EventBus
from homeserver.services.fanout import CommitSubscriber, WakeOutbox
from homeserver.services.federation_edus import EduInbound, EduOutbound
from homeserver.services.federation_events import FederationEventHandler
from homeserver.services.federation_keys import RemoteKeys
from homeserver.services.federation_rooms import FederationRooms
from homeserver.services.filters import FilterService
from homeserver.services.groups import GroupService
from homeserver.services.guest_access import GUEST_ACCESS_TYPE, GuestEviction
from homeserver.services.ignore import IgnoreLists
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.legacy import LegacyService
from homeserver.services.local_events import LocalEventBuilder
from homeserver.services.login_tokens import LoginTokenService
from homeserver.services.media import MediaService
from homeserver.services.metrics import (
    CountCommits,
    Metrics,
    Source,
    StatusCollector,
    cache_sources,
    one,
    per,
)
from homeserver.services.notices import NoticeService
from homeserver.services.notifier import Notifier, WakeOnCommit
from homeserver.services.persister import IdGenerator, Persister
from homeserver.services.profile import AccountDataService, ProfileService
from homeserver.services.purger import RecallPurger
from homeserver.services.push import (
    NotificationService,
    PushEvaluator,
    PushRulesService,
    UnreadCache,
)
from homeserver.services.push_socket import (
    CLOSE_GOING_AWAY,
    PushSockets,
    SocketLimits,
    SocketRegistry,
)
from homeserver.services.push_sync import PushSync
from homeserver.services.pushers import PusherService
from homeserver.services.ratelimit import BucketStore, Limit, MemoryBuckets, RateLimiter
from homeserver.services.reader import EventReader
from homeserver.services.readiness import Readiness, up
from homeserver.services.recent import RecentEvents
from homeserver.services.relations import RelationsService
from homeserver.services.remote_rooms import NullRemoteRooms, RemoteRooms, RemoteRoomsPort
from homeserver.services.replication import (
    Announcer,
    BlockIds,
    BlockIdsPort,
    LocalBlockIds,
    LocalStreamIds,
    NoticeBuffer,
    Positions,
    ReplicatedCaches,
    Replication,
    SharedStreamIds,
    StreamIdsPort,
    Visibility,
    commit_notice,
)
from homeserver.services.reports import ReportService
from homeserver.services.room_deletion import RoomDeletionService
from homeserver.services.room_heads import RoomHeads
from homeserver.services.room_material import RoomMaterialCache
from homeserver.services.rooms import RoomService
from homeserver.services.routed_writer import RoutedWriter, WriterEndpoint
from homeserver.services.search import SearchIndexer, SearchService
from homeserver.services.shared_secret import SharedSecretRegistration
from homeserver.services.sliding_sync import SlidingSyncService
from homeserver.services.spaces import SpaceService
from homeserver.services.state_watch import Handler, StateReactor, StateWatch
from homeserver.services.summaries import SummaryService
from homeserver.services.sync import SyncService
from homeserver.services.sync_engine import SyncEngine
from homeserver.services.timeline import Timeline
from homeserver.services.upgrade import RoomUpgrader
from homeserver.services.url_preview import UrlPreviewService
from homeserver.services.writer import RoomWriter, RoomWriterPort
from storage.engine import create_engine
from storage.media_files import LocalMediaStorage
from storage.migrate import migrate_in_subprocess
from storage.stores.admin import AdminStore
from storage.stores.ai_records import AiRecordStore
from storage.stores.appservice import AppServiceStore
from storage.stores.e2e import E2eStore
from storage.stores.events import EventStore
from storage.stores.federation import InboundTxnStore
from storage.stores.filters import AccountDataStore, FilterStore
from storage.stores.im import ImStore
from storage.stores.key_backup import KeyBackupStore
from storage.stores.keys import KeyStore
from storage.stores.login_tokens import LoginTokenStore
from storage.stores.media import MediaStore
from storage.stores.outbox import OutboxStore
from storage.stores.push import PushStore
from storage.stores.push_queue import PushQueueStore
from storage.stores.receipts import ReceiptStore
from storage.stores.registration_tokens import RegistrationTokenStore
from storage.stores.relations import RelationStore
from storage.stores.reports import ReportStore
from storage.stores.room_purge import RoomPurgeStore
from storage.stores.rooms import RoomStore
from storage.stores.search import SearchStore
from storage.stores.sliding_sync import SlidingSyncStore
from storage.stores.state import StateStore
from storage.stores.sync_acks import SyncAckStore
from storage.stores.users import UserStore

log = logging.getLogger(__name__)


@attrs.define
class Runtime:
    """Everything started for one homeserver process, so it can be stopped in order."""

    services: Services
    persister: Persister
    engine: AsyncEngine
    push: PushRuntime
    urls: GuardedHttpClient  # URLs users and peers name (media Location, previews)
    appservices: AppServiceRuntime
    metrics: Metrics
    status: StatusCollector  # what /metrics reads from the services on each scrape
    readiness: Readiness
    federation: FederationRuntime | None = None
    redis: RedisBuckets | None = None
    purger: RecallPurger | None = None
    event_bus: EventBus | None = None
    workers: WorkerRuntime | None = None
    reactions: StateReactor | None = None  # after-commit reactions to state changes

    async def close(self) -> None:
        if self.reactions is not None:
            await self.reactions.stop()
        if self.event_bus is not None:
            await self.event_bus.stop()
        await self.services.notices.stop()
        await self.services.deletions.stop()
        if self.purger is not None:
            await self.purger.stop()
        if self.federation is not None:
            await self.federation.close()
        await self.urls.close()
        await self.appservices.close()
        if self.redis is not None:
            await self.redis.close()
        await self.persister.stop()
        if self.workers is not None:  # after the last commit: its notice goes out
            await self.workers.close()
        await self.push.close()
        await self.engine.dispose()


@attrs.define
class WorkerRuntime:
    """With redis.url: this process's link to the other workers (docs/workers.md)."""

    bus: RedisBus
    stream_ids: SharedStreamIds
    positions: list[Positions]
    announcer: Announcer
    endpoint: WriterEndpoint  # what forwarded writes call (client_api/internal.py)
    rpc: HttpWriterRpc
    secret: str

    async def close(self) -> None:
        await self.rpc.close()
        await self.announcer.stop()
        await self.stream_ids.stop()
        for positions in self.positions:
            await positions.stop()
        await self.bus.close()


@attrs.define
class FederationRuntime:
    context: FederationContext
    keyring: Keyring
    client: FederationClient
    sender: FederationSender
    amqp: AmqpRuntime | None = None

    async def close(self) -> None:
        await self.sender.stop()
        if self.amqp is not None:
            await self.amqp.close()
        await self.keyring.close()
        await self.client.close()

@attrs.define
class AppServiceRuntime:
    queue: AppServiceQueue
    api: HttpAppServiceApi

    async def close(self) -> None:
        await self.queue.stop()
        await self.api.close()


@attrs.define
class PushRuntime:
    evaluator: PushEvaluator
    pushers: PusherService
    gateway: HttpPushGateway
    indexer: SearchIndexer  # the other fan-out subscriber with a task of its own

    async def close(self) -> None:
        await self.indexer.stop()
        await self.evaluator.stop()
        await self.pushers.stop()
        await self.gateway.close()


CONFIG = web.AppKey("config", HomeserverConfig)


def internal_secret(token_secret: bytes) -> str:
    """What workers show each other on the internal API: derived from the token secret
    every worker of the server already shares, so there is nothing more to configure."""
    return hmac.new(token_secret, b"tricolor internal api", hashlib.sha256).hexdigest()
AI_ASSISTANT_PREFIX = "/_tricolor/ai-assistant"


def rate_limits(cfg: HomeserverConfig) -> dict[str, Limit]:
    """The ``rc_*`` config sections by the names the handlers ask for (``rc_joins.local``)."""
    out: dict[str, Limit] = {}
    for field in attrs.fields(HomeserverConfig):
        if not field.name.startswith("rc_") or field.name == "rc_enabled":
            continue
        value = getattr(cfg, field.name)
        if isinstance(value, RateLimit):
            out[field.name] = Limit(value.per_second, value.burst_count)
        else:
            for sub in attrs.fields(type(value)):
                limit = getattr(value, sub.name)
                out[f"{field.name}.{sub.name}"] = Limit(limit.per_second, limit.burst_count)
    return out


async def build_services(
    cfg: HomeserverConfig, client_event_listeners: Sequence[ClientEventListener] = (),
) -> Runtime:
    """Open the database, apply migrations and build every service, bottom-up:
    stores -> federation outbound -> reader, writer and its subscribers -> services
    -> what peers call. Every dependency goes in through a constructor."""
    # Registration files are checked before anything opens (a bad one is one config error line).
    registrations = load_registrations(
        cfg.app_services.config_files, cfg.server_name,
        base_dir=None if cfg.config_path is None else os.path.dirname(cfg.config_path),
    )
    engine = create_engine(cfg.database.url, cfg.database.pool_size, cfg.database.echo)
    await migrate_in_subprocess(engine, cfg.database.url)
    buckets: BucketStore = MemoryBuckets()
    redis_buckets = RedisBuckets(cfg.redis.url, cfg.server_name, buckets) if cfg.redis.url else None
    if redis_buckets is not None:
        buckets = redis_buckets
    key = parse_signing_key(ensure_signing_key(cfg.signing_key_path))
    secret = ensure_token_secret(cfg.token_secret_path)
    name = cfg.server_name
    metrics = Metrics.create()
    event_bus = build_event_bus(cfg)

    # -- workers: subscribed before any position is read, so no later notice is missed
    bus: RedisBus | None = None
    notices = NoticeBuffer()
    visibility = Visibility()
    # Worker mode needs a worker name (run --workers / --worker-name / TRICOLOR_WORKER_NAME): a single
    # process with Redis only for shared rate limits keeps its positions in memory and keeps serving
    # chat while Redis is down (README "Reliability").
    if cfg.redis.url and cfg.workers.name is not None:
        bus = RedisBus(
            cfg.redis.url, bus_namespace(name, cfg.database.url), cfg.workers.name,
            lease_ms=cfg.workers.lease_ms,
        )
        bus.start(notices.handle, notices.gap)
        await bus.subscribed()

    # -- stores and positions
    users, rooms_store = UserStore(engine), RoomStore(engine)
    events_store = EventStore(engine, cfg.recall_content_retention_ms)
    state_store, filters, account_data = StateStore(engine), FilterStore(engine), AccountDataStore(engine)
    receipt_store, push_store = ReceiptStore(engine), PushStore(engine)
    max_stream, max_group, min_stream = await events_store.max_ids()
    events_position = max_stream
    stream_ids: StreamIdsPort = LocalStreamIds(IdGenerator(max_stream))
    group_ids: BlockIdsPort = LocalBlockIds(IdGenerator(max_group))
    outlier_ids: BlockIdsPort = LocalBlockIds(IdGenerator(min_stream, step=-1))
    shared_ids: SharedStreamIds | None = None
    if bus is not None:
        await bus.seed("events", max_stream)
        await bus.seed_block("groups", max_group)
        await bus.seed_block("outliers", min_stream, step=-1)
        events_position = await bus.persisted("events")
        stream_ids = shared_ids = SharedStreamIds(bus, lambda commit: commit_notice(commit, name), visibility)
        shared_ids.start()
        group_ids, outlier_ids = BlockIds(bus, "groups"), BlockIds(bus, "outliers", step=-1)
    e2e_store = E2eStore(engine)
    durable_max = {
        "account_data": await account_data.max_stream_id(),
        "receipts": await receipt_store.max_stream_id(),
        **dict(zip(("to_device", "device_lists"), await e2e_store.max_stream_ids(), strict=True)),
    }

    # -- outbound HTTP: URLs users and peers name (guarded against SSRF), then federation
    ip_policy = IpPolicy.from_config(cfg.ip_range_blacklist, cfg.ip_range_whitelist)
    urls = GuardedHttpClient(ip_policy, ssl_context=client_ssl_context(cfg.federation))
    outbound = await build_outbound(cfg, key, engine, urls, metrics, ip_policy) if cfg.federation.enabled else None

    # -- events: one reader, one room writer, the writer's subscribers
    notifier = Notifier()
    notifier.seed("events", events_position)
    positions: dict[str, Positions] = {}
    for stream, last in durable_max.items():
        if bus is not None:
            await bus.seed(stream, last)
            last = await bus.persisted(stream)
        notifier.seed(stream, last)
        positions[stream] = Positions(stream, IdGenerator(last), notifier, bus, visibility)
    persister = Persister(events_store)
    persister.start()
    heads = RoomHeads(rooms_store, state_store)
    recent = RecentEvents(max_stream)
    reader = EventReader(
        server_name=name, events=events_store, state=state_store, rooms=rooms_store,
        heads=heads, recent=recent,
    )
    # -- push: rules, their evaluation after each commit, pushers
    account_data_svc = AccountDataService(account_data, positions["account_data"])
    push_rules = PushRulesService(push_store, account_data_svc)
    gateway = HttpPushGateway(ip_policy, GuardedResolver(ip_policy))
    # With workers another process may add notifications: counts are read, not kept.
    unread = UnreadCache(push_store) if bus is None else UnreadCache(push_store, max_users=0)
    pushers = PusherService(
        store=push_store, queue=PushQueueStore(engine), unread=unread, reader=reader, gateway=gateway,
        mailer=SmtpMailer(cfg.email) if cfg.email.smtp_host else None,
        email_delay_ms=cfg.email.notif_delay_ms, server_name=name,
    )
    evaluator = PushEvaluator(
        server_name=name, store=push_store, rules=push_rules, reader=reader,
        deliver=[unread.add, pushers.deliver], retract=[unread.retract],
    )
    await pushers.start()  # first: it queues what the last process evaluated but did not queue
    await evaluator.start(max_stream)
    search_store = SearchStore(engine)
    indexer = SearchIndexer(store=search_store, reader=reader)
    await indexer.start(max_stream)
    relation_store = RelationStore(engine)
    aggregations = Aggregations(relations=relation_store, events=reader, floor=max_stream)
    # -- application services: who they are, and their transaction queues (after commit)
    as_api = HttpAppServiceApi(cfg.app_services.request_timeout_ms)
    as_store = AppServiceStore(engine)
    appservices = AppServiceRegistry(
        services=registrations, users=users, api=as_api, store=as_store, server_name=name,
    )
    await appservices.start()
    as_queue = AppServiceQueue(
        services=registrations, store=as_store, rooms=rooms_store, reader=reader, api=as_api,
        retry_min_ms=cfg.app_services.retry_min_ms, retry_max_ms=cfg.app_services.retry_max_ms,
    )
    await as_queue.start(max_stream)
    room_material = RoomMaterialCache(max_stream)  # shared initial-sync material per room
    # State changes that start work after commit: guests leaving, the AI assistant joining.
    state_watch = StateWatch(frozenset({GUEST_ACCESS_TYPE, *AI_WATCHED}))
    subscribers: list[CommitSubscriber] = [
        reader, recent, evaluator, aggregations, indexer, room_material, as_queue, state_watch,
    ]
    if bus is None:  # with workers, the notifier moves on notices (Replication)
        subscribers.append(WakeOnCommit(notifier, name))
    if outbound is not None:
        subscribers.append(WakeOutbox(outbound.sender))
    subscribers.append(CountCommits(metrics))
    if event_bus is not None:
        subscribers.append(event_bus)
    purger = RecallPurger(events_store)
    subscribers.append(purger)
    purger.start()
    local_writer = RoomWriter(
        server_name=name, reader=reader, heads=heads, events=events_store, state=state_store,
        persister=persister, purge=RoomPurgeStore(engine),
        builder=LocalEventBuilder(
            server_name=name, signing_key=key, reader=reader, recall_window_ms=cfg.recall_window_ms,
            recall_windows_ms=cfg.recall_windows_ms,
        ),
        stream_ids=stream_ids, group_ids=group_ids, outlier_ids=outlier_ids,
        subscribers=subscribers, queue_outbox=outbound is not None,
    )
    # With workers, writes to rooms whose shard another worker holds are forwarded there.
    writer: RoomWriterPort = local_writer
    writer_rpc = HttpWriterRpc(internal_secret(secret)) if bus is not None else None
    if bus is not None and writer_rpc is not None:
        writer = RoutedWriter(
            local=local_writer, claims=bus, rpc=writer_rpc, heads=heads, visibility=visibility,
            retry_for_s=cfg.workers.lease_ms * 2 / 1000,
        )

    # -- ephemeral streams; federation hears of our users' changes
    def wake_rooms(stream: str) -> Callable[[int, Iterable[str]], None]:
        return lambda pos, room_ids: notifier.advance(stream, pos, reader.local_members(room_ids))

    listeners: list[EphemeralListener] = [unread, as_queue]
    if outbound is not None:
        listeners.append(EduOutbound(server_name=name, events=reader, sender=outbound.sender))
    announcer = Announcer(bus) if bus is not None else None
    typing = TypingService(
        wake_rooms("typing"), listeners, announcer,
        start=await bus.seed("typing", now_ms()) if bus is not None else None,
    )
    receipts = ReceiptService(receipt_store, positions["receipts"], reader.local_members, listeners)
    presence = PresenceService(
        lambda pos, users: notifier.advance("presence", pos, users), reader.users_sharing_rooms,
        listeners, announcer, start=await bus.seed("presence", now_ms()) if bus is not None else None,
    )
    notifier.seed("typing", typing.position)
    notifier.seed("presence", presence.position)

    # -- end-to-end encryption: keys and to-device messages, routed to other servers
    remote_keys: RemoteKeysPort = NullRemoteKeys()
    if outbound is not None:
        remote_keys = RemoteKeys(server_name=name, client=outbound.client, sender=outbound.sender, events=reader)

    async def device_names(user_id: str) -> dict[str, str | None]:
        return {d["device_id"]: d["display_name"] for d in await users.list_devices(user_id)}

    e2e = E2eService(
        store=e2e_store, notifier=notifier, server_name=name,
        membership=Membership(
            reader.users_sharing_rooms, device_names, rooms_store.users_departed, rooms_store.users_sharing_at,
        ), remote=remote_keys,
        to_device_ids=positions["to_device"], device_list_ids=positions["device_lists"],
    )

    # -- federation: receiving events, and acting for our users in remote rooms
    handler: FederationEventHandler | None = None
    remote: RemoteRoomsPort = NullRemoteRooms()
    if outbound is not None:
        handler = FederationEventHandler(
            server_name=name, events=reader, writer=writer, rooms=rooms_store,
            keyring=outbound.keyring, client=outbound.client, txns=InboundTxnStore(engine),
            edus=EduInbound(events=reader, typing=typing, receipts=receipts, presence=presence, e2e=e2e),
        )
        if outbound.amqp is not None:  # peers' shovels deliver into our inbound queue
            outbound.amqp.consume(cfg, outbound.keyring, handler)
        remote = RemoteRooms(
            server_name=name, signing_key=key, events=reader, writer=writer, handler=handler,
            client=outbound.client, keyring=outbound.keyring,
        )

    # -- client-facing services
    sockets = SocketRegistry()

    async def device_deleted(user_id: str, device_id: str) -> None:
        await e2e.device_deleted(user_id, device_id)
        await sockets.device_gone(user_id, device_id)  # its WebSocket closes with the reason

    auth = AuthService(users, secret, name, device_deleted=device_deleted, announcer=announcer)
    endpoint = WriterEndpoint(local=local_writer, claims=bus, remote=remote) if bus is not None else None
    if bus is not None:
        notices.deliver_to(Replication(
            bus=bus, notifier=notifier, visibility=visibility,
            caches=ReplicatedCaches(
                heads=heads, reader=reader, recent=recent, room_material=room_material,
                aggregations=aggregations,
            ),
            ephemeral={"typing": typing.apply_notice, "presence": presence.apply_notice},
            on_broadcast={"auth": auth.apply_notice},
            durable={
                "account_data": lambda rooms, pos: None, "to_device": lambda rooms, pos: None,
                "device_lists": lambda rooms, pos: None, "receipts": receipts.remote_changed,
            },
        ))
    admin_store = AdminStore(engine)
    rooms = RoomService(
        events=reader, writer=writer, remote=remote, rooms=rooms_store, users=users,
        server_name=name, default_room_version=cfg.default_room_version,
        blocked_by=admin_store.room_block,
    )
    ignores = IgnoreLists(store=account_data, notifier=notifier)
    timeline = Timeline(
        events=reader, rooms=rooms, notifier=notifier, remote=remote, aggregations=aggregations,
        ignores=ignores,
    )
    notifications = NotificationService(
        store=push_store, evaluator=evaluator, unread=unread, reader=reader, timeline=timeline,
    )
    profile = ProfileService(
        users=users, rooms=rooms_store, events=reader, writer=writer, remote=remote, server_name=name,
        search_all_users=cfg.user_directory.search_all_users, query_user=appservices.query_user,
    )
    directory = DirectoryService(
        rooms=rooms, store=rooms_store, events=reader, remote=remote, server_name=name,
        appservices=appservices,
    )
    accounts = AccountService(
        users, auth, name, cfg.registration.enabled, cfg.bcrypt_rounds, rooms=rooms, profile=profile,
        appservices=appservices,
        tokens=RegistrationTokenStore(engine), requires_token=cfg.registration.requires_token,
        guests_allowed=cfg.registration.allow_guests,
    )
    sync_engine = SyncEngine(
        events=reader, rooms=rooms_store, timeline=timeline, notifier=notifier,
        account_data=account_data, server_name=name, typing=typing,
        receipts=receipts, presence=presence, room_service=rooms, e2e=e2e,
        push=PushSync(notifications, push_rules), material=room_material, ignores=ignores,
        incremental_scan=cfg.limits.incremental_sync_scan,
    )
    sync = SyncService(engine=sync_engine, presence=presence)
    spaces = SpaceService(
        server_name=name, events=reader, rooms=rooms_store,
        remote=FederationHierarchy(outbound.client) if outbound is not None else None,
    )
    limiter = RateLimiter(
        buckets, rate_limits(cfg), admin_store, enabled=cfg.rc_enabled,
        override_ttl_ms=cfg.ratelimit_override_ttl_ms,
    )
    im_store = ImStore(engine)
    report_store = ReportStore(engine)
    deletions = RoomDeletionService(
        rooms=rooms, events=reader, writer=writer, room_store=rooms_store, store=im_store,
        admin_store=admin_store, users=users, server_name=name,
    )
    notices = NoticeService(
        rooms=rooms, users=users, accounts=accounts, account_data=account_data_svc, store=im_store,
        admin_store=admin_store, server_name=name, system_localpart=cfg.server_notices_localpart,
    )
    services = Services(
        server_name=name, auth=auth,
        accounts=accounts,
        appservices=appservices,
        ai_records=AiRecordService(store=AiRecordStore(engine), events=reader, appservices=appservices),
        events=reader, rooms=rooms,
        directory=directory, timeline=timeline,
        sync=sync,
        sockets=PushSockets(
            engine=sync_engine, acks=SyncAckStore(engine), presence=presence, registry=sockets,
            limits=SocketLimits(**attrs.asdict(cfg.websocket)),
        ),
        sliding_sync=SlidingSyncService(
            engine=sync_engine, events=reader, rooms=rooms_store, e2e=e2e, receipts=receipts,
            states=SlidingSyncStore(engine),
            typing=typing, account_data=account_data,
        ),
        profile=profile,
        account_data=account_data_svc,
        push_rules=push_rules, notifications=notifications, pushers=pushers,
        notifier=notifier, typing=typing, receipts=receipts, presence=presence,
        devices=DeviceService(users, auth), filters=FilterService(filters), e2e=e2e,
        key_backup=KeyBackupService(KeyBackupStore(engine)),
        relations=RelationsService(store=relation_store, events=reader, rooms=rooms, timeline=timeline),
        spaces=spaces,
        search=SearchService(
            store=search_store, indexer=indexer, reader=reader, rooms=rooms, room_store=rooms_store,
            timeline=timeline, ignores=ignores,
        ),
        upgrades=RoomUpgrader(rooms=rooms, events=reader, writer=writer, store=rooms_store, server_name=name),
        reports=ReportService(
            store=report_store, events=reader, rooms=rooms_store, users=users, server_name=name,
        ),
        discovery=DiscoveryService(well_known=cfg.well_known, voip=cfg.voip, public_baseurl=cfg.public_baseurl),
        summaries=SummaryService(
            events=reader, rooms=rooms, room_store=rooms_store, users=users, server_name=name, spaces=spaces,
        ),
        legacy=LegacyService(
            events=reader, rooms=rooms, room_store=rooms_store, timeline=timeline, sync=sync,
            notifier=notifier, account_data=account_data,
        ),
        max_event_bytes=cfg.limits.max_event_bytes,
        limiter=limiter,
        admin=AdminService(
            users=users, store=admin_store, accounts=accounts, auth=auth, rooms=rooms, events=reader,
            profile=profile, limiter=limiter, server_name=name,
        ),
        report_admin=ReportAdminService(store=admin_store, reports=report_store, rooms=rooms, events=reader),
        groups=GroupService(rooms=rooms, events=reader),
        deletions=deletions, notices=notices,
        client_events=ClientEventService(
            im_store, [*client_event_listeners, *([event_bus.on_client_event] if event_bus else [])],
        ),
        shared_secret=SharedSecretRegistration(
            secret=cfg.registration.shared_secret, accounts=accounts, auth=auth, profile=profile,
        ),
        login_tokens=LoginTokenService(
            store=LoginTokenStore(engine), users=users, auth=auth, server_name=name,
            enabled=cfg.login_via_existing_session.enabled,
            require_ui_auth=cfg.login_via_existing_session.require_ui_auth,
            timeout_ms=cfg.login_via_existing_session.token_timeout_ms,
        ),
    )
    await deletions.start()
    await notices.start()
    if event_bus is not None:
        await event_bus.start()  # its own task; a broker that is down is retried there
    handlers: dict[str, Handler] = {
        GUEST_ACCESS_TYPE: GuestEviction(reader=reader, rooms=rooms, users=users, server_name=name).on_change,
    }
    assistant = ids.user_id(cfg.ai_assistant.user_localpart, name)
    if any(r.sender == assistant for r in registrations):  # only when the assistant is registered
        joiner = AiGroupJoiner(reader=reader, rooms=rooms, assistant=assistant, server_name=name)
        handlers.update({AI_EVENT: joiner.on_change, "m.room.member": joiner.on_change})
    reactions = StateReactor(watch=state_watch, handlers=handlers)
    reactions.start()

    # -- what peers call
    federation: FederationRuntime | None = None
    if outbound is not None and handler is not None:
        serving = FederationRooms(
            server_name=name, signing_key=key, events=reader, writer=writer, users=users,
            handler=handler,
        )
        context = FederationContext(name, handler, serving, profile, directory, e2e, auth, services.spaces)
        federation = FederationRuntime(
            context, outbound.keyring, outbound.client, outbound.sender, outbound.amqp,
        )
    status, readiness = monitoring(
        services=services, engine_caches=[reader.caches, auth.caches, room_material.caches],
        outbound=outbound, redis=redis_buckets, event_bus=event_bus,
    )
    metrics.registry.register(status)
    return Runtime(
        services, persister, engine, PushRuntime(evaluator, pushers, gateway, indexer), urls,
        AppServiceRuntime(as_queue, as_api), metrics, status, readiness, federation, redis_buckets,
        purger, event_bus,
        WorkerRuntime(
            bus, shared_ids, list(positions.values()), announcer, endpoint, writer_rpc, internal_secret(secret),
        )
        if bus is not None and shared_ids is not None and announcer is not None and endpoint is not None
        and writer_rpc is not None else None,
        reactions,
    )


def build_event_bus(cfg: HomeserverConfig) -> EventBus | None:
    """The RabbitMQ event bus when ``event_bus.enabled`` (README "Event bus")."""
    bus = cfg.event_bus
    if not bus.enabled:
        return None
    if cfg.rabbitmq.url is None:
        raise ConfigError("event_bus.enabled needs rabbitmq.url", file=cfg.config_path, key="rabbitmq.url")
    publisher = AmqpEventPublisher(
        cfg.rabbitmq.url, bus.exchange, bus.consumer_groups, name=f"tricolor {cfg.server_name} event bus",
    )
    return EventBus(publisher, bus.buffer_size)


def monitoring(
    *, services: Services, engine_caches: Sequence[Callable[[], Mapping[str, Any]]],
    outbound: Outbound | None, redis: RedisBuckets | None, event_bus: EventBus | None,
) -> tuple[StatusCollector, Readiness]:
    """What /metrics reads on a scrape, and what /ready checks: figures the services
    already keep, gathered here so no service knows about Prometheus."""
    notifier, sockets = services.notifier, services.sockets.registry
    sources = [
        Source("tricolor_sync_waiters", "Long-polls and sockets waiting for news", "gauge", one(lambda: notifier.waiting)),
        Source("synapse_notifier_listeners", "Waits registered with the notifier", "gauge", one(lambda: notifier.waiting)),
        Source("synapse_notifier_users_woken_by_stream", "Users woken, by stream", "counter",
               per("stream", lambda: notifier.woken), ("stream",)),
        Source("tricolor_ws_connections", "Open WebSocket sync connections", "gauge", one(lambda: len(sockets))),
        *cache_sources(lambda: {n: c for caches in engine_caches for n, c in caches().items()}),
    ]
    refresh: list[Callable[[], Awaitable[None]]] = []
    checks: dict[str, Callable[[], Awaitable[bool]]] = {"database": services.accounts.database_ok}
    if redis is not None:
        checks["redis"] = redis.ping
    if outbound is not None:
        sender = outbound.sender
        pending: dict[str, float] = {"pdus": 0}

        async def count_pending() -> None:  # one COUNT per destination with a worker
            pending["pdus"] = sum([await sender.pending_count(d) for d in sender.active_destinations()])

        refresh.append(count_pending)
        sources += [
            Source("synapse_federation_transaction_queue_pending_pdus", "PDUs waiting to be sent",
                   "gauge", one(lambda: pending["pdus"])),
            Source("synapse_federation_transaction_queue_pending_edus", "EDUs waiting to be sent", "gauge",
                   one(lambda: sum(sender.pending_edu_count(d) for d in sender.active_destinations()))),
            Source("tricolor_federation_active_destinations", "Destinations with a sender running", "gauge",
                   one(lambda: len(sender.active_destinations()))),
        ]
        amqp = outbound.amqp
        if amqp is not None:
            broker, shovels, transport = amqp.broker, amqp.shovels, amqp.transport
            checks["rabbitmq"] = up(lambda: broker.up)
            refresh.append(shovels.refresh_depths)
            sources += [
                Source("tricolor_amqp_broker_up", "1 while our broker is connected", "gauge",
                       one(lambda: broker.up)),
                Source("tricolor_amqp_queue_depth", "Messages waiting in a destination's out queue",
                       "gauge", per("destination", shovels.depths), ("destination",)),
                Source("tricolor_shovel_up", "1 while the shovel to a destination is running", "gauge",
                       per("destination", lambda: {d: s == "running" for d, s in shovels.states().items()}),
                       ("destination",)),
                Source("tricolor_amqp_https_fallbacks", "Transactions sent over HTTPS because AMQP was not possible",
                       "counter", one(lambda: transport.fallbacks if transport is not None else 0)),
                Source("tricolor_amqp_dead_letters", "Inbound messages dead-lettered", "counter",
                       one(lambda: amqp.consumer.dead_lettered if amqp.consumer is not None else 0)),
                Source("tricolor_amqp_inbound_transactions", "Inbound transactions taken from our queue",
                       "counter", one(lambda: amqp.consumer.processed if amqp.consumer is not None else 0)),
            ]
    if event_bus is not None:
        checks["event_bus"] = up(lambda: event_bus.up)
        sources += [
            Source("tricolor_event_bus_up", "1 while the event bus is connected", "gauge", one(lambda: event_bus.up)),
            Source("tricolor_event_bus_published", "Messages published to the event bus", "counter",
                   one(lambda: event_bus.published)),
            Source("tricolor_event_bus_dropped", "Buffered commits dropped because the buffer was full",
                   "counter", one(lambda: event_bus.dropped)),
            Source("tricolor_event_bus_buffered", "Commits waiting for the broker", "gauge",
                   one(lambda: event_bus.buffered)),
        ]
    return StatusCollector(sources, refresh), Readiness(checks)


def delivery_observer(metrics: Metrics) -> Callable[[Transaction, DeliveryResult], None]:
    """Federation send counters, Synapse's names, from each delivery's result."""
    sent, pdus, edus, failed = (
        metrics.sent_transactions, metrics.sent_pdus, metrics.sent_edus, metrics.failed_transactions,
    )

    def observe(txn: Transaction, result: DeliveryResult) -> None:
        if isinstance(result, Delivered):
            sent.inc()
            pdus.inc(len(txn.pdus))
            edus.inc(len(txn.edus))
        else:
            failed.labels("retry" if isinstance(result, Retry) else "refused").inc()

    return observe


def federation_domains(fed: FederationConfig) -> Callable[[str], bool]:
    """federation.domain_whitelist / domain_blacklist as one check, for both directions."""
    allow = frozenset(fed.domain_whitelist) if fed.domain_whitelist is not None else None
    deny = frozenset(fed.domain_blacklist)
    return lambda server: federation_domain_allowed(server, allow, deny)


@attrs.frozen
class Outbound:
    client: FederationClient
    keyring: Keyring
    sender: FederationSender
    amqp: AmqpRuntime | None = None


async def build_outbound(
    cfg: HomeserverConfig, key: SigningKey, engine: AsyncEngine, urls: GuardedHttpClient, metrics: Metrics,
    ip_policy: IpPolicy,
) -> Outbound:
    """Signed client, keyring and the persisted sender: how we reach other servers."""
    fed = cfg.federation
    client = FederationClient(
        cfg.server_name, key, ServerResolver(dict(fed.static_map)),
        client_ssl_context(fed), url_fetcher=urls, allowed=federation_domains(fed), ip_policy=ip_policy,
    )
    transport = transport_from_config(cfg, client)  # may refuse (ConfigError) before the client connects
    await client.start()
    keyring = Keyring(
        cfg.server_name, key, load_old_keys(cfg.signing_key_path), KeyStore(engine), client,
        fed.trusted_key_servers, extra=advertisement(cfg),
    )
    amqp = None
    if cfg.rabbitmq.url is not None:  # our broker: AMQP sending and/or receiving (issue 9)
        amqp = AmqpRuntime.build(cfg, key, transport, keyring.key_response)
        await amqp.start()  # bounded; a broker that is down is retried in the background
        transport = amqp.transport or transport
    transport = ObservedTransport(transport, delivery_observer(metrics))
    sender = FederationSender(cfg.server_name, transport, OutboxStore(engine))
    await sender.start()
    return Outbound(client, keyring, sender, amqp)


async def create_app(cfg: HomeserverConfig) -> web.Application:
    """The whole homeserver: a root app with the client, federation and key sub-apps.

    Every listener serves every prefix (as Synapse does by default); the
    federation listener is the one with TLS that peers are pointed at.
    """
    runtime = await build_services(cfg)
    limit = cfg.limits.max_request_bytes
    # Root middlewares run for every path, matched by a sub-app or not: Matrix errors
    # (404/405 M_UNRECOGNIZED included) and CORS everywhere.
    app = web.Application(
        middlewares=[observability.observe(runtime.metrics, cfg.access_log), matrix_errors],
        client_max_size=limit, handler_args=PARSER_LIMITS,
    )
    app[CONFIG] = cfg
    app[observability.METRICS] = runtime.metrics
    app[observability.STATUS] = runtime.status
    app[observability.READINESS] = runtime.readiness
    app.router.add_get("/health", observability.health)
    app.router.add_get("/ready", observability.ready)
    app[discovery.DISCOVERY] = runtime.services.discovery
    app.router.add_routes(discovery.well_known_routes)
    # -- media (issue 8): the content repository's service and its two sub-apps
    media = MediaService(
        server_name=cfg.server_name, store=MediaStore(runtime.engine),
        storage=LocalMediaStorage(cfg.media_store_path), config=cfg.media,
        max_upload_bytes=cfg.limits.max_upload_bytes,
        remote=FederationMediaFetcher(runtime.federation.client) if runtime.federation else None,
    )
    # Pages and images through the guarded fetcher (ip_range_blacklist at connect time).
    previews = UrlPreviewService(config=cfg.media, fetcher=runtime.urls, media=media)
    for prefix in client_api.media.ROUTES:
        app.add_subapp(prefix, client_api.media.create_media_app(prefix, runtime.services, media, previews))
    # -- end media
    if cfg.ai_assistant.config_file is not None:
        # The embedded assistant: the same application service as `tricolor ai-assistant`,
        # served here; its registration's url points at this path on our own listener.
        assistant_app = create_assistant_app(
            load_assistant_config(cfg.ai_assistant.config_file, cfg.server_name),
        )
        app.add_subapp(AI_ASSISTANT_PREFIX, assistant_app)
        slot = assistant_app[ASSISTANT_SLOT]

        def ai_outcomes() -> Mapping[str, float]:
            return slot.assistant.outcomes if slot.assistant is not None else {}

        runtime.metrics.registry.register(StatusCollector([Source(
            "tricolor_ai_requests", "AI assistant requests finished, by outcome", "counter",
            per("outcome", ai_outcomes), ("outcome",),
        )]))
    app.add_subapp(CLIENT_PREFIX, client_api.app.create_app(runtime.services, limit))
    admin_app = client_api.app.create_admin_app(runtime.services, limit)
    admin_app[ADMIN_MEDIA] = media
    app.add_subapp(ADMIN_PREFIX, admin_app)
    app.add_subapp(TRICOLOR_PREFIX, client_api.app.create_tricolor_app(runtime.services, limit))
    if runtime.federation is not None:
        fed = runtime.federation
        federation_app = create_federation_app(
            fed.context, fed.keyring, limit, on_origin=fed.sender.retry_now,
            allowed=federation_domains(cfg.federation),
        )
        federation_app[FEDERATION_MEDIA] = media  # media (issue 8): our media for peers
        federation_app.router.add_routes(federation_media_routes)
        app.add_subapp(FEDERATION_PREFIX, federation_app)
        app.add_subapp(keys.PREFIX, create_key_app(fed.keyring, limit))

    async def answer_long_polls(app: web.Application) -> None:
        # on_shutdown runs before aiohttp waits for in-flight requests to finish.
        woken = runtime.services.notifier.close()
        closed = await runtime.services.sockets.registry.close_all(CLOSE_GOING_AWAY, "server shutting down")
        await runtime.services.sockets.flush_acks()
        log.info("shutting down: closed %d WebSockets", closed)
        log.info("shutting down: answered %d waiting /sync requests; finishing in-flight requests", woken)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        internal: web.AppRunner | None = None
        if runtime.workers is not None:
            internal = await serve_internal(cfg, runtime.workers)
        yield
        log.info("flushing queued writes and closing the database")
        if internal is not None:
            await internal.cleanup()
        await runtime.close()

    app.on_shutdown.append(answer_long_polls)
    app.cleanup_ctx.append(lifecycle)
    return app


async def serve_internal(cfg: HomeserverConfig, workers: WorkerRuntime) -> web.AppRunner:
    """This worker's internal listener (forwarded room writes) on a port of its own,
    announced in Redis so the other workers find it."""
    app = client_api.internal.create_internal_app(workers.endpoint, workers.secret, [matrix_errors])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.workers.internal_host, 0)
    await site.start()
    port = runner.addresses[0][1]
    host = cfg.workers.internal_host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    await workers.bus.announce(url)
    log.info("worker %s takes forwarded writes at %s", workers.bus.worker, url)
    return runner
