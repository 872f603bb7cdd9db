"""Registration, login and passwords (bcrypt, off the event loop)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import bcrypt

from homeserver.core import ids
from homeserver.core.appservice import AppService
from homeserver.core.errors import MatrixError, forbidden
from homeserver.services.appservice import AppServiceRegistry
from homeserver.services.auth import AuthService, PasswordError, Requester
from homeserver.services.clock import now_ms
from homeserver.services.profile import ProfileService
from homeserver.services.rooms import RoomService
from storage.stores.users import UserStore

log = logging.getLogger(__name__)


class AccountService:
    def __init__(
        self, users: UserStore, auth: AuthService, server_name: str, registration_enabled: bool,
        bcrypt_rounds: int = 12, *, rooms: RoomService, profile: ProfileService,
        appservices: AppServiceRegistry,
    ) -> None:
        self._appservices = appservices
        self._rooms = rooms
        self._profile = profile
        self._users = users
        self._auth = auth
        self.server_name = server_name
        self.registration_enabled = registration_enabled
        self._rounds = bcrypt_rounds

    def _hash(self, password: str) -> str:
        return bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(self._rounds)).decode()

    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self._hash, password)

    async def _check(self, password: str, hashed: str | None) -> bool:
        if not hashed:
            return False
        return await asyncio.to_thread(bcrypt.checkpw, password.encode()[:72], hashed.encode())

    def validate_localpart(self, localpart: str) -> str:
        localpart = localpart.lower()
        if not ids.is_valid_localpart(localpart):
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID can only contain characters a-z, 0-9, or '=_-./+'")
        if len(ids.user_id(localpart, self.server_name).encode()) > ids.MAX_ID_BYTES:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        return localpart

    async def check_available(self, localpart: str, service: AppService | None = None) -> None:
        localpart = self.validate_localpart(localpart)
        self._appservices.check_user_id(ids.user_id(localpart, self.server_name), service)
        if await self._users.get_user(ids.user_id(localpart, self.server_name)):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")

    async def create_user(
        self, localpart: str, password: str | None, is_admin: bool = False,
    ) -> str:
        localpart = self.validate_localpart(localpart)
        uid = ids.user_id(localpart, self.server_name)
        hashed = await self.hash_password(password) if password else None
        if not await self._users.create_user(uid, hashed, now_ms(), is_admin, displayname=localpart):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
        return uid

    async def register(
        self, localpart: str | None, password: str | None, device_id: str | None,
        display_name: str | None, inhibit_login: bool, refreshable: bool,
        service: AppService | None = None,
    ) -> dict[str, Any]:
        """``service``: an application service registering a user in its namespace
        (spec `m.login.application_service`), allowed while open registration is off."""
        if not self.registration_enabled and service is None:
            raise forbidden("Registration has been disabled")
        if localpart is None:
            if service is not None:
                raise MatrixError(400, "M_MISSING_PARAM", "An application service must name the user")
            localpart = await self._free_localpart()
        self._appservices.check_user_id(
            ids.user_id(self.validate_localpart(localpart), self.server_name), service,
        )
        uid = await self.create_user(localpart, password)
        if inhibit_login:
            return {"user_id": uid, "home_server": self.server_name}
        out = await self._auth.issue(uid, device_id or ids.new_device_id(), display_name, refreshable)
        out["home_server"] = self.server_name
        return out

    async def login_appservice(
        self, service: AppService, identifier: str, device_id: str | None, display_name: str | None,
        refreshable: bool,
    ) -> dict[str, Any]:
        """Spec "Server admin style permissions": an application service logs in as a user
        of its namespace with its as_token (login type `m.login.application_service`)."""
        uid = ids.normalize_user_id(identifier, self.server_name)
        if not service.is_user_in_namespace(uid):
            raise MatrixError(400, "M_EXCLUSIVE", "User is not in the application service's namespaces")
        user = await self._users.get_user(uid)
        if user is None or user.deactivated:
            raise forbidden("Unknown user")
        out = await self._auth.issue(uid, device_id or ids.new_device_id(), display_name, refreshable)
        out["home_server"] = self.server_name
        return out

    async def _free_localpart(self) -> str:
        while True:
            candidate = "u" + secrets.token_hex(6)
            if await self._users.get_user(ids.user_id(candidate, self.server_name)) is None:
                return candidate

    def resolve_login_user(self, identifier: str) -> str:
        """A localpart, ``@alice:hs`` or ``alice@hs`` -> the user id on this server."""
        try:
            uid = ids.normalize_user_id(identifier.lower() if not identifier.startswith("@") else identifier, self.server_name)
        except MatrixError:
            raise PasswordError() from None
        if ids.server_of(uid) != self.server_name:
            raise PasswordError()
        return uid

    async def verify_password(self, user_id: str, password: str) -> None:
        user = await self._users.get_user(user_id)
        if user is None or user.deactivated or not await self._check(password, user.password_hash):
            raise PasswordError()

    async def login_password(
        self, identifier: str, password: str, device_id: str | None, display_name: str | None,
        refreshable: bool,
    ) -> dict[str, Any]:
        uid = self.resolve_login_user(identifier)
        await self.verify_password(uid, password)
        out = await self._auth.issue(uid, device_id or ids.new_device_id(), display_name, refreshable)
        out["home_server"] = self.server_name
        return out

    async def change_password(self, requester: Requester, new_password: str, logout_devices: bool) -> None:
        """Spec: "POST /_matrix/client/v3/account/password": the other devices' tokens are
        revoked at once unless `logout_devices` is false; the requester's own device stays."""
        await self._users.set_password_hash(requester.user_id, await self.hash_password(new_password))
        if logout_devices:
            await self._auth.logout_all(requester.user_id, keep_device=requester.device_id)

    async def database_ok(self) -> bool:
        """Whether the user database answers (for /health)."""
        try:
            await self._users.get_user("@health-check:invalid")
        except Exception:
            return False
        return True

    async def deactivate(self, requester: Requester, erase: bool) -> None:
        """Spec: "POST /_matrix/client/v3/account/deactivate": leave every room (and reject
        every invite) with real leave events, clear the profile when `erase`, then lock the
        account for good: no password, no tokens."""
        user_id = requester.user_id
        for room_id in await self._rooms.rooms_with_membership(user_id, ("join", "invite", "knock")):
            try:
                await self._rooms.leave(requester, room_id)
            except MatrixError as e:  # one room that cannot be left must not keep the account alive
                log.warning("deactivating %s: could not leave %s: %s", user_id, room_id, e)
        if erase:
            for field in ("displayname", "avatar_url"):
                await self._profile.set_field(user_id, user_id, field, None)
        await self._users.set_deactivated(user_id)
        await self._auth.logout_all(user_id)
