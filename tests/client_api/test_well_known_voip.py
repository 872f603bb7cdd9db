"""/.well-known/matrix/client and /support, and /voip/turnServer, from config."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable

import attrs

from config.schema import HomeserverConfig, VoipConfig, WellKnownConfig
from tests.helpers import Matrix, assert_error

Start = Callable[[HomeserverConfig], Awaitable[Matrix]]


async def test_defaults_no_turn_and_no_support(hs: Matrix) -> None:
    (alice,) = await hs.users("alice")
    assert await alice.get("/voip/turnServer") == {}
    assert_error(await hs.call("GET", "/.well-known/matrix/support", expect=404), "M_NOT_FOUND")
    await hs.call("GET", "/voip/turnServer", expect=401)


async def test_turn_credentials_as_coturn_checks_them(hs_config: HomeserverConfig, start_hs: Start) -> None:
    voip = VoipConfig(turn_uris=("turn:turn.hs.test:3478?transport=udp",), turn_shared_secret="s3cret",
                      turn_user_lifetime_ms=3_600_000)
    hs = await start_hs(attrs.evolve(hs_config, voip=voip))
    (alice,) = await hs.users("alice")
    before = int(time.time())
    got = await alice.get("/voip/turnServer")
    assert got["uris"] == ["turn:turn.hs.test:3478?transport=udp"] and got["ttl"] == 3600
    expiry, user = got["username"].split(":", 1)
    assert user == alice.user_id and before + 3600 <= int(expiry) <= int(time.time()) + 3600
    expected = base64.b64encode(hmac.new(b"s3cret", got["username"].encode(), hashlib.sha1).digest()).decode()
    assert got["password"] == expected


async def test_fixed_turn_credentials_and_configured_well_known(hs_config: HomeserverConfig, start_hs: Start) -> None:
    cfg = attrs.evolve(
        hs_config,
        voip=VoipConfig(turn_uris=("turns:turn.hs.test",), turn_username="u", turn_password="p"),
        well_known=WellKnownConfig(
            client_base_url="https://matrix.hs.test/", identity_server="https://id.hs.test",
            support_page="https://hs.test/help", admin_matrix_ids=("@admin:hs.test",),
            admin_emails=("admin@hs.test",),
        ),
    )
    hs = await start_hs(cfg)
    (alice,) = await hs.users("alice")
    assert await alice.get("/voip/turnServer") == {"username": "u", "password": "p", "uris": ["turns:turn.hs.test"], "ttl": 86400}
    assert await hs.call("GET", "/.well-known/matrix/client") == {
        "m.homeserver": {"base_url": "https://matrix.hs.test"},
        "m.identity_server": {"base_url": "https://id.hs.test"},
    }
    assert await hs.call("GET", "/.well-known/matrix/support") == {
        "contacts": [
            {"matrix_id": "@admin:hs.test", "role": "m.role.admin"},
            {"email_address": "admin@hs.test", "role": "m.role.admin"},
        ],
        "support_page": "https://hs.test/help",
    }
