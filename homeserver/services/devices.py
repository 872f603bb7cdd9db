"""A user's devices as the client API lists and renames them.

Spec: "Device management" (client-server API). Deleting a device also ends its
sessions at once, through AuthService (which drops the revoked tokens from its cache).
"""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import not_found
from homeserver.services.auth import AuthService
from storage.stores.users import UserStore


class DeviceService:
    def __init__(self, users: UserStore, auth: AuthService) -> None:
        self._users = users
        self._auth = auth

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

    async def delete(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and revoke their tokens; unknown ids are skipped (the spec's
        DELETE answers 200 for them, so a retried request succeeds)."""
        for device_id in device_ids:
            await self._auth.delete_device(user_id, device_id)
