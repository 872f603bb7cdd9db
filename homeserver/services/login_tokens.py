"""Login with an existing session (spec v1.7+ "POST /_matrix/client/v1/login/get_token",
MSC3882, and the `m.login.token` login type): a signed-in device mints a short-lived,
single-use token that another device (typically scanning a QR code) logs in with.
Off unless `login_via_existing_session.enabled` (as in Synapse); the
`m.get_login_token` capability tells clients."""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden
from homeserver.services.auth import AuthService, Requester
from homeserver.services.clock import now_ms
from storage.stores.login_tokens import LoginTokenStore
from storage.stores.users import UserStore

LOGIN_TOKEN = "m.login.token"


class LoginTokenService:
    def __init__(
        self, *, store: LoginTokenStore, users: UserStore, auth: AuthService, server_name: str,
        enabled: bool, require_ui_auth: bool, timeout_ms: int,
    ) -> None:
        self._store = store
        self._users = users
        self._auth = auth
        self._name = server_name
        self.enabled = enabled
        self.require_ui_auth = require_ui_auth
        self._timeout_ms = timeout_ms

    async def mint(self, requester: Requester) -> dict[str, Any]:
        """A token for the requester's account (the caller ran user-interactive auth)."""
        if not self.enabled:
            raise MatrixError(404, "M_UNRECOGNIZED", "Login with an existing session is not enabled")
        if requester.is_guest:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot mint login tokens")
        if requester.app_service is not None:
            raise forbidden("Application services log in with their as_token")
        token = "tcl_" + secrets.token_urlsafe(32)
        now = now_ms()
        await self._store.add(token, requester.user_id, now + self._timeout_ms, now)
        return {"login_token": token, "expires_in_ms": self._timeout_ms}

    async def login(
        self, token: Any, device_id: str | None, display_name: str | None, refreshable: bool,
    ) -> dict[str, Any]:
        """POST /login with `{"type": "m.login.token", "token": ...}`: a new device of the
        token's user; the token cannot be used again."""
        if not isinstance(token, str) or not token:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing token")
        user_id = await self._store.consume(token, now_ms()) if self.enabled else None
        if user_id is None:
            raise forbidden("Invalid or expired login token")
        user = await self._users.get_user(user_id)
        if user is None or user.deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        out = await self._auth.issue(user_id, device_id or ids.new_device_id(), display_name, refreshable)
        out["home_server"] = self._name
        return out
