"""Synapse's shared-secret registration (``/_synapse/admin/v1/register``): admin tooling
(``register_new_matrix_user``, test suites) creates users, admins included, by proving
it knows ``registration.shared_secret``; works even with registration closed.

A nonce from GET is good for one POST within a minute; the POST's ``mac`` is the hex
HMAC-SHA1, keyed with the secret, of ``nonce NUL username NUL password NUL
(admin|notadmin)``, as Synapse defines it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden
from homeserver.services.accounts import AccountService
from homeserver.services.auth import AuthService
from homeserver.services.profile import ProfileService

NONCE_LIFETIME_S = 60


class SharedSecretRegistration:
    def __init__(
        self, *, secret: str | None, accounts: AccountService, auth: AuthService, profile: ProfileService,
    ) -> None:
        self._secret = secret
        self._accounts = accounts
        self._auth = auth
        self._profile = profile
        self._nonces: OrderedDict[str, float] = OrderedDict()

    def _enabled(self) -> str:
        if not self._secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        return self._secret

    def nonce(self) -> dict[str, str]:
        self._enabled()
        now = time.monotonic()
        while self._nonces and next(iter(self._nonces.values())) < now - NONCE_LIFETIME_S:
            self._nonces.popitem(last=False)
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = now
        return {"nonce": nonce}

    async def register(
        self, nonce: str, username: str, password: str, admin: bool, mac: str, displayname: str | None,
    ) -> dict[str, Any]:
        secret = self._enabled()
        issued = self._nonces.pop(nonce, None)
        if issued is None or issued < time.monotonic() - NONCE_LIFETIME_S:
            raise MatrixError(400, "M_UNKNOWN", "unrecognised nonce")
        want = hmac.new(secret.encode(), digestmod=hashlib.sha1)
        want.update(b"\x00".join([
            nonce.encode(), username.encode(), password.encode(), b"admin" if admin else b"notadmin",
        ]))
        if not hmac.compare_digest(want.hexdigest(), mac):
            raise forbidden("HMAC incorrect")
        user_id = await self._accounts.create_user(username, password, admin)
        if displayname:
            await self._profile.set_field(user_id, user_id, "displayname", displayname)
        out = await self._auth.issue(user_id, ids.new_device_id(), None, False)
        out["home_server"] = self._accounts.server_name
        return out
