"""TURN credentials as coturn's REST API expects them (coturn `use-auth-secret` with
`static-auth-secret`): the username is "<expiry unix seconds>:<user id>" and the password
base64(HMAC-SHA1(secret, username)), so the TURN server checks them without asking us."""

from __future__ import annotations

import base64
import hashlib
import hmac


def turn_credentials(secret: str, user_id: str, now_ms: int, lifetime_ms: int) -> tuple[str, str]:
    expiry = (now_ms + lifetime_ms) // 1000
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()
