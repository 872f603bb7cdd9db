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
from storage.stores.registration_tokens import RegistrationTokenStore
from storage.stores.users import UserStore

log = logging.getLogger(__name__)


class InvalidRegistrationToken(MatrixError):
    """The registration token stage failed: the UIA answer is 401 with this error."""

    def __init__(self) -> None:
        super().__init__(401, "M_UNAUTHORIZED", "Invalid registration token")


class AccountService:
    def __init__(
        self, users: UserStore, auth: AuthService, server_name: str, registration_enabled: bool,
        bcrypt_rounds: int = 12, *, rooms: RoomService, profile: ProfileService,
        appservices: AppServiceRegistry,
        tokens: RegistrationTokenStore | None = None, requires_token: bool = False,
        guests_allowed: bool = False,
    ) -> None:
        self._appservices = appservices
        self.guests_allowed = guests_allowed
        self._tokens = tokens
        # Spec "Token-authenticated registration": the m.login.registration_token stage.
        self.requires_token = requires_token and tokens is not None
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

    async def registration_token_valid(self, token: str) -> bool:
        """GET /register/m.login.registration_token/validity."""
        if not self.registration_enabled:
            raise forbidden("Registration has been disabled")
        return self._tokens is not None and await self._tokens.is_valid(token, now_ms())

    async def register(
        self, localpart: str | None, password: str | None, device_id: str | None,
        display_name: str | None, inhibit_login: bool, refreshable: bool,
        service: AppService | None = None,
        registration_token: str | None = None,
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
        spent = None
        if self.requires_token:
            assert self._tokens is not None
            if registration_token is None or not await self._tokens.spend(registration_token, now_ms()):
                raise InvalidRegistrationToken()
            spent = registration_token
        try:
            uid = await self.create_user(localpart, password)
        except BaseException:
            if spent is not None and self._tokens is not None:
                await self._tokens.refund(spent)
            raise
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

    async def register_guest(self, display_name: str | None, allowed: bool) -> dict[str, Any]:
        """Spec "Guest access": register?kind=guest. A guest has no password and a
        numeric localpart, as in Synapse; username and password in the request are ignored."""
        if not allowed:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
        while True:
            localpart = str(secrets.randbelow(10**12))
            uid = ids.user_id(localpart, self.server_name)
            if await self._users.create_user(uid, None, now_ms(), is_guest=True, displayname=localpart):
                break
        out = await self._auth.issue(uid, ids.new_device_id(), display_name, False)
        out["home_server"] = self.server_name
        return out

    async def upgrade_guest(
        self, guest: Requester, password: str | None, device_id: str | None, display_name: str | None,
        inhibit_login: bool,
    ) -> dict[str, Any]:
        """POST /register with `guest_access_token`: the guest's account becomes a full one,
        keeping its user id (and so its rooms and account data)."""
        if not guest.is_guest:
            raise forbidden("This access token does not belong to a guest")
        if password is None:
            raise MatrixError(400, "M_MISSING_PARAM", "A password is required")
        if not await self._users.upgrade_guest(guest.user_id, await asyncio.to_thread(self._hash, password)):
            raise forbidden("This guest account cannot be upgraded")
        self._auth.forget_user(guest.user_id)
        if inhibit_login:
            return {"user_id": guest.user_id, "home_server": self.server_name}
        out = await self._auth.issue(guest.user_id, device_id or guest.device_id, display_name, False)
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
