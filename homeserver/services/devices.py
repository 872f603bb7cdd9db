"""A user's devices as the client API lists and renames them.

Spec: "Device management" (client-server API). Deleting a device also ends its
sessions, so that stays with AuthService.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import not_found
from storage.stores.users import UserStore


class DeviceService:
    def __init__(self, users: UserStore) -> None:
        self._users = users

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        return await self._users.list_devices(user_id)

    async def get(self, user_id: str, device_id: str) -> dict[str, Any]:
        device = await self._users.get_device(user_id, device_id)
        if device is None:
            raise not_found("Unknown device")
        return device

    async def rename(self, user_id: str, device_id: str, display_name: str | None) -> None:
        if not await self._users.set_device_display_name(user_id, device_id, display_name):
            raise not_found("Unknown device")
