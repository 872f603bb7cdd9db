"""What the federation handlers call, assembled by homeserver.app."""

from __future__ import annotations

import attrs
from aiohttp import web

from homeserver.services.federation_events import FederationEventHandler
from homeserver.services.federation_rooms import FederationRooms
from homeserver.services.profile import ProfileService
from storage.stores.rooms import RoomStore


@attrs.frozen
class FederationContext:
    server_name: str
    handler: FederationEventHandler
    rooms: FederationRooms
    profile: ProfileService
    room_store: RoomStore


FEDERATION = web.AppKey("federation", FederationContext)
