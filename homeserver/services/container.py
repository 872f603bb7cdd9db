"""The services the HTTP adapters call, assembled once by homeserver.app.

Services only: handlers never see a store.
"""

from __future__ import annotations

import attrs

from homeserver.services.accounts import AccountService
from homeserver.services.admin import AdminService, ReportAdminService
from homeserver.services.ai_records import AiRecordService
from homeserver.services.appservice import AppServiceRegistry
from homeserver.services.auth import AuthService
from homeserver.services.client_events import ClientEventService
from homeserver.services.devices import DeviceService
from homeserver.services.directory import DirectoryService
from homeserver.services.discovery import DiscoveryService
from homeserver.services.e2e import E2eService
from homeserver.services.ephemeral import PresenceService, ReceiptService, TypingService
from homeserver.services.filters import FilterService
from homeserver.services.groups import GroupService
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.legacy import LegacyService
from homeserver.services.login_tokens import LoginTokenService
from homeserver.services.notices import NoticeService
from homeserver.services.notifier import NotifierPort
from homeserver.services.profile import AccountDataService, ProfileService
from homeserver.services.push import NotificationService, PushRulesService
from homeserver.services.push_socket import PushSockets
from homeserver.services.pushers import PusherService
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.reader import EventReader
from homeserver.services.relations import RelationsService
from homeserver.services.reports import ReportService
from homeserver.services.room_deletion import RoomDeletionService
from homeserver.services.rooms import RoomService
from homeserver.services.search import SearchService
from homeserver.services.shared_secret import SharedSecretRegistration
from homeserver.services.sliding_sync import SlidingSyncService
from homeserver.services.spaces import SpaceService
from homeserver.services.summaries import SummaryService
from homeserver.services.sync import SyncService
from homeserver.services.timeline import Timeline
from homeserver.services.upgrade import RoomUpgrader


@attrs.frozen
class Services:
    server_name: str
    auth: AuthService
    accounts: AccountService
    events: EventReader
    rooms: RoomService
    directory: DirectoryService
    timeline: Timeline
    sync: SyncService
    profile: ProfileService
    account_data: AccountDataService
    notifier: NotifierPort
    typing: TypingService
    receipts: ReceiptService
    presence: PresenceService
    devices: DeviceService
    filters: FilterService
    e2e: E2eService
    key_backup: KeyBackupService
    relations: RelationsService
    push_rules: PushRulesService
    notifications: NotificationService
    pushers: PusherService
    spaces: SpaceService
    appservices: AppServiceRegistry
    ai_records: AiRecordService
    sockets: PushSockets
    sliding_sync: SlidingSyncService
    search: SearchService
    upgrades: RoomUpgrader
    reports: ReportService
    discovery: DiscoveryService
    summaries: SummaryService
    legacy: LegacyService
    limiter: RateLimiter
    admin: AdminService
    report_admin: ReportAdminService
    groups: GroupService
    deletions: RoomDeletionService
    notices: NoticeService
    client_events: ClientEventService
    shared_secret: SharedSecretRegistration
    login_tokens: LoginTokenService
    max_event_bytes: int = 65_536
