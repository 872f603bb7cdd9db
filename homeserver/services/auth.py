"""Access tokens: JWTs bound to a device, revocable at once.

The JWT proves who issued it; the `access_tokens` row (keyed by the JWT's
`jti`) proves it is still live. Live tokens are cached in-process and the
cache is cleared on logout, so an authenticated request costs one HMAC check.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import jwt

from homeserver.core.errors import MatrixError, unknown_token
from homeserver.core.records import TokenRecord
from homeserver.services.clock import now_ms
from homeserver.services.lru import LruCache
from homeserver.services.replication import Announcer
from storage.stores.users import UserStore

log = logging.getLogger(__name__)

REFRESHABLE_TOKEN_LIFETIME_MS = 5 * 60 * 1000
OPENID_TOKEN_LIFETIME_S = 3600
# The `typ` claim that tells an OpenID token from an access token (which has none, and
# whose `dev` and `jti` an OpenID token lacks): neither is accepted as the other.
_OPENID_TYP = "openid"
# `x-token: Tricolor<jwt>`; the prefix is optional, since a bare token is an
# obvious intent and refusing it as "missing" misleads whoever sent it.
_TRICOLOR_HEADER = re.compile(r"^\s*(?:Tricolor\s*)?<?\s*([^\s<>]+)\s*>?\s*$")


@attrs.frozen
class Requester:
    user_id: str
    device_id: str
    token_id: str
    is_admin: bool = False
    is_guest: bool = False
    # The application service acting (spec "Identity assertion"), or None for a user's token.
    app_service: str | None = None
    rate_limited: bool = True  # False for services registered with `rate_limited: false`

    @property
    def is_rate_limited(self) -> bool:
        """Whether rate limits apply to this request (issue 12 enforces them)."""
        return self.rate_limited


def token_from_headers(authorization: str | None, x_token: str | None, query_token: str | None) -> str | None:
    """Pick the access token from `Authorization: Bearer`, `x-token: [Tricolor]<jwt>` or the query."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_token:
        m = _TRICOLOR_HEADER.match(x_token)
        if m:
            return m.group(1)
    return query_token or None


AUTH = "auth"  # the notices of revoked tokens and changed user flags (workers)


class AuthService:
    def __init__(
        self, users: UserStore, secret: bytes, server_name: str,
        device_deleted: Callable[[str, str], Awaitable[None]] | None = None,
        announcer: Announcer | None = None,
    ) -> None:
        # With workers, what this process drops from its caches the others drop too.
        self._announcer = announcer
        # device_deleted(user, device): its end-to-end keys go too, and peers hear of it.
        self._device_deleted = device_deleted
        self._users = users
        self._secret = secret
        self._issuer = server_name
        self._live: LruCache[str, TokenRecord] = LruCache(100_000)
        # user -> (is_admin, is_guest), for live users
        self._admins: LruCache[str, tuple[bool, bool]] = LruCache(100_000)

    def caches(self) -> dict[str, LruCache[Any, Any]]:
        """Named caches, for their hit rates on /metrics."""
        return {"access_tokens": self._live, "user_admin_flags": self._admins}

    def _encode(self, user_id: str, device_id: str, token_id: str, expires_ts: int | None) -> str:
        claims: dict[str, Any] = {
            "iss": self._issuer, "sub": user_id, "dev": device_id, "jti": token_id,
            "iat": now_ms() // 1000,
        }
        if expires_ts is not None:
            claims["exp"] = expires_ts // 1000
        return jwt.encode(claims, self._secret, algorithm="HS256")

    async def issue(
        self, user_id: str, device_id: str, display_name: str | None, refreshable: bool,
    ) -> dict[str, Any]:
        """Bind a fresh token to the device (creating it if new); the login/register response."""
        now = now_ms()
        token = self._new_record(user_id, device_id, refreshable, now)
        for tid in await self._users.upsert_device_with_token(user_id, device_id, display_name, token, now):
            self._revoke(tid)
        return self._response(token)

    def _new_record(self, user_id: str, device_id: str, refreshable: bool, now: int) -> TokenRecord:
        return TokenRecord(
            token_id=secrets.token_urlsafe(18), user_id=user_id, device_id=device_id,
            expires_ts=now + REFRESHABLE_TOKEN_LIFETIME_MS if refreshable else None,
            refresh_token=("tcr_" + secrets.token_urlsafe(32)) if refreshable else None,
        )

    def _response(self, t: TokenRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": t.user_id, "device_id": t.device_id,
            "access_token": self._encode(t.user_id, t.device_id, t.token_id, t.expires_ts),
        }
        if t.refresh_token:
            out["refresh_token"] = t.refresh_token
            out["expires_in_ms"] = REFRESHABLE_TOKEN_LIFETIME_MS
        return out

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Spec "Refreshing access tokens": the old refresh token stays valid until the new
        access or refresh token is used (so a client that lost the answer can repeat the
        call); after that, presenting it again is a replay of a leaked token, and revokes
        the device's session (its tokens; the device and its keys stay). Issue 18."""
        old = await self._users.get_token_by_refresh(refresh_token)
        if old is None:
            owner = await self._users.spent_refresh_owner(refresh_token)
            if owner is not None:
                for tid in await self._users.revoke_device_tokens(*owner):
                    self._revoke(tid)
                log.warning("refresh token of %s device %s reused: session revoked", *owner)
                raise unknown_token("This refresh token was already used; the session is revoked")
            raise unknown_token("Unknown refresh token")
        now = now_ms()
        new = attrs.evolve(self._new_record(old.user_id, old.device_id, True, now), previous_token_id=old.token_id)
        for tid in await self._users.rotate_refresh(old, new, now):
            self._revoke(tid)
        out = self._response(new)
        del out["user_id"], out["device_id"]
        return out

    async def authenticate(self, token: str) -> Requester:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], issuer=self._issuer,
                options={"require": ["sub", "dev", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise unknown_token("Access token has expired", soft_logout=True) from None
        except jwt.PyJWTError:
            raise unknown_token() from None
        token_id = claims["jti"]
        record = self._live.get(token_id)
        if record is None:
            record = await self._users.get_token(token_id)
            if record is None:
                raise unknown_token()
            self._live.put(token_id, record)
        if record.expires_ts is not None and record.expires_ts < now_ms():
            raise unknown_token("Access token has expired", soft_logout=True)
        if record.previous_token_id is not None:  # the first use of a refreshed token
            for tid in await self._users.finish_refresh(token_id, record.previous_token_id, now_ms()):
                self._revoke(tid)
            record = attrs.evolve(record, previous_token_id=None)
            self._live.put(token_id, record)
        flags = self._admins.get(record.user_id)
        if flags is None:
            user = await self._users.get_user(record.user_id)
            if user is None or user.deactivated:
                raise unknown_token()
            flags = (user.is_admin, user.is_guest)
            self._admins.put(record.user_id, flags)
        return Requester(record.user_id, record.device_id, token_id, flags[0], flags[1], rate_limited=not flags[0])

    def _revoke(self, token_id: str) -> None:
        self._live.pop(token_id)
        if self._announcer is not None:
            self._announcer.broadcast(AUTH, {"tokens": [token_id], "users": []})

    def _forget_flags(self, user_id: str) -> None:
        self._admins.pop(user_id)
        if self._announcer is not None:
            self._announcer.broadcast(AUTH, {"tokens": [], "users": [user_id]})

    def apply_notice(self, payload: str) -> None:
        """Another worker revoked tokens or changed users' flags (workers)."""
        d = json.loads(payload)
        for token_id in d["tokens"]:
            self._live.pop(token_id)
        for user_id in d["users"]:
            self._admins.pop(user_id)

    def forget_user(self, user_id: str) -> None:
        """The user's flags changed (a guest upgraded): read them again."""
        self._forget_flags(user_id)

    def issue_openid(self, user_id: str) -> dict[str, Any]:
        """Spec: "OpenID" (client-server API). A signed, short-lived token that proves to a
        third party, through our federation /openid/userinfo, who the user is. Stateless:
        it expires on its own and is never stored."""
        now = now_ms() // 1000
        token = jwt.encode(
            {"iss": self._issuer, "sub": user_id, "typ": _OPENID_TYP, "iat": now,
             "exp": now + OPENID_TOKEN_LIFETIME_S},
            self._secret, algorithm="HS256",
        )
        return {
            "access_token": token, "token_type": "Bearer", "matrix_server_name": self._issuer,
            "expires_in": OPENID_TOKEN_LIFETIME_S,
        }

    async def openid_user(self, token: str) -> str:
        """The user an OpenID token names, while it is valid and the account active."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], issuer=self._issuer,
                options={"require": ["sub", "typ", "exp"]},
            )
        except jwt.PyJWTError:
            raise unknown_token("Invalid OpenID token") from None
        if claims["typ"] != _OPENID_TYP:
            raise unknown_token("Invalid OpenID token")
        user = await self._users.get_user(claims["sub"])
        if user is None or user.deactivated:
            raise unknown_token("Invalid OpenID token")
        return str(user.user_id)

    def forget_admin_flag(self, user_id: str) -> None:
        """The admin API changed the user's admin flag: read it again."""
        self._forget_flags(user_id)

    async def logout(self, requester: Requester) -> None:
        for tid in await self._users.delete_device(requester.user_id, requester.device_id):
            self._revoke(tid)
        self._revoke(requester.token_id)
        await self._devices_gone(requester.user_id, [requester.device_id])

    async def logout_all(self, user_id: str, keep_device: str | None = None) -> None:
        self._forget_flags(user_id)  # deactivation and admin changes come through here
        devices = [d["device_id"] for d in await self._users.list_devices(user_id) if d["device_id"] != keep_device]
        for tid in await self._users.delete_all_tokens(user_id, keep_device):
            self._revoke(tid)
        await self._devices_gone(user_id, devices)

    async def delete_device(self, user_id: str, device_id: str) -> None:
        for tid in await self._users.delete_device(user_id, device_id):
            self._revoke(tid)
        await self._devices_gone(user_id, [device_id])

    async def _devices_gone(self, user_id: str, device_ids: list[str]) -> None:
        if self._announcer is not None:
            await self._announcer.flush()  # other workers refuse the tokens before we answer
        if self._device_deleted is not None:
            for device_id in device_ids:
                await self._device_deleted(user_id, device_id)


class PasswordError(MatrixError):
    def __init__(self) -> None:
        super().__init__(403, "M_FORBIDDEN", "Invalid username or password")
