"""What the federation handlers call, assembled by homeserver.app."""

from __future__ import annotations

import attrs
from aiohttp import web

from homeserver.services.auth import AuthService
from homeserver.services.directory import DirectoryService
from homeserver.services.e2e import E2eService
from homeserver.services.federation_events import FederationEventHandler
from homeserver.services.federation_rooms import FederationRooms
from homeserver.services.profile import ProfileService
from homeserver.services.spaces import SpaceService


@attrs.frozen
class FederationContext:
    server_name: str
    handler: FederationEventHandler
    rooms: FederationRooms
    profile: ProfileService
    directory: DirectoryService
    e2e: E2eService
    auth: AuthService
    spaces: SpaceService


FEDERATION = web.AppKey("federation", FederationContext)
