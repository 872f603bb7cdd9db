"""Access-control probes for accounts and tokens (issue 18): admin endpoints refuse
non-admins, a deactivated user's tokens die at once, a replayed refresh token revokes the
session, password logins are rate-limited per account and per IP address."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import pytest

from config.schema import HomeserverConfig, LoginRateLimits, RateLimit
from tests.admin.conftest import ADMIN
from tests.helpers import PASSWORD, Matrix, assert_error, q

# A burst of 3 refilled at one token per 1000 s: the fourth request in a test is refused.
SLOW = RateLimit(per_second=0.001, burst_count=3)
OPEN = RateLimit(per_second=1000.0, burst_count=1000)


async def whoami(hs: Matrix, token: str, expect: int = 200) -> dict:
    return await hs.call("GET", "/account/whoami", token=token, expect=expect)


async def test_admin_endpoints_refuse_ordinary_users(hs: Matrix) -> None:
    alice, bob = await hs.users("alice", "bob")
    room = await alice.create_room()
    media = "/_matrix/media/v3/upload"
    up = await hs.raw_bytes("POST", media, b"x", token=alice.token, headers={"Content-Type": "text/plain"})
    media_id = up.json["content_uri"].rsplit("/", 1)[1]
    u, r = q(alice.user_id), q(room)
    calls = [
        ("GET", "/v2/users"), ("GET", "/v3/users"), ("GET", f"/v2/users/{u}"), ("PUT", f"/v2/users/{u}"),
        ("POST", f"/v1/deactivate/{u}"), ("POST", f"/v1/reset_password/{u}"), ("GET", f"/v1/whois/{u}"),
        ("GET", f"/v2/users/{u}/devices"), ("GET", f"/v1/users/{u}/joined_rooms"),
        ("GET", f"/v1/users/{u}/override_ratelimit"), ("POST", f"/v1/users/{u}/override_ratelimit"),
        ("GET", "/v1/rooms"), ("GET", f"/v1/rooms/{r}"), ("GET", f"/v1/rooms/{r}/members"),
        ("GET", f"/v1/rooms/{r}/state"), ("GET", f"/v1/rooms/{r}/messages"), ("PUT", f"/v1/rooms/{r}/block"),
        ("POST", f"/v1/rooms/{r}/make_room_admin"), ("POST", "/v1/send_server_notice"),
        ("DELETE", f"/v2/rooms/{r}"), ("DELETE", f"/v1/rooms/{r}"),
        ("GET", f"/v1/users/{u}/media"), ("DELETE", f"/v1/media/{hs.server_name}/{media_id}"),
        ("POST", f"/v1/media/quarantine/{hs.server_name}/{media_id}"),
        ("GET", "/v1/event_reports"), ("GET", "/v1/registration_tokens"), ("POST", "/v1/registration_tokens/new"),
    ]
    for method, path in calls:
        body = {} if method in ("POST", "PUT") else None
        resp = await (hs.raw(method, ADMIN + path, body, token=bob.token) if body is not None
                      else hs.raw(method, ADMIN + path, token=bob.token))
        assert resp.status == 403, (method, path, resp.status, resp.text)
        assert_error(resp.json, "M_FORBIDDEN")
        resp = await hs.raw(method, ADMIN + path)
        assert resp.status == 401, (method, path, resp.status)
    # Nothing happened: alice is active, her room and media are there.
    await whoami(hs, alice.token)
    await alice.get(f"/rooms/{r}/state")
    assert (await hs.raw_bytes("GET", f"/_matrix/client/v1/media/download/{hs.server_name}/{media_id}",
                               token=alice.token)).status == 200


async def test_a_deactivated_users_tokens_die_at_once(hs: Matrix) -> None:
    alice = await hs.register("alice")
    second = await hs.login_user("alice")
    refreshable = await hs.login("alice", refresh_token=True)
    for token in (alice.token, second.token, refreshable["access_token"]):
        await whoami(hs, token)  # cached as live
    await alice.post("/account/deactivate", {"auth": {"type": "m.login.password", "password": PASSWORD,
                                                      "identifier": {"type": "m.id.user", "user": "alice"}}})
    for token in (alice.token, second.token, refreshable["access_token"]):
        assert_error(await whoami(hs, token, expect=401), "M_UNKNOWN_TOKEN")
    err = await hs.call("POST", "/refresh", {"refresh_token": refreshable["refresh_token"]}, expect=401)
    assert_error(err, "M_UNKNOWN_TOKEN")
    await hs.login("alice", expect=403)


async def test_a_refresh_token_may_be_repeated_until_its_successor_is_used(hs: Matrix) -> None:
    """Spec "Refreshing access tokens": a client that lost the answer can refresh again."""
    await hs.register("alice")
    first = await hs.login("alice", refresh_token=True)
    lost = await hs.call("POST", "/refresh", {"refresh_token": first["refresh_token"]})
    kept = await hs.call("POST", "/refresh", {"refresh_token": first["refresh_token"]})
    # The answer that never arrived is void; the old access token lives until the new one is used.
    assert_error(await whoami(hs, lost["access_token"], expect=401), "M_UNKNOWN_TOKEN")
    await whoami(hs, first["access_token"])
    await whoami(hs, kept["access_token"])
    assert_error(await whoami(hs, first["access_token"], expect=401), "M_UNKNOWN_TOKEN")
    # Refreshing with the new refresh token keeps working.
    newer = await hs.call("POST", "/refresh", {"refresh_token": kept["refresh_token"]})
    await whoami(hs, newer["access_token"])


async def test_refresh_token_reuse_revokes_the_session(hs: Matrix) -> None:
    alice = await hs.register("alice")
    first = await hs.login("alice", refresh_token=True)
    fresh = await hs.call("POST", "/refresh", {"refresh_token": first["refresh_token"]})
    await whoami(hs, fresh["access_token"])  # the successor is used: the old refresh token is spent
    # A replay of the spent token (a stolen copy) ends the whole session of that device...
    err = await hs.call("POST", "/refresh", {"refresh_token": first["refresh_token"]}, expect=401)
    assert_error(err, "M_UNKNOWN_TOKEN")
    assert_error(await whoami(hs, fresh["access_token"], expect=401), "M_UNKNOWN_TOKEN")
    err = await hs.call("POST", "/refresh", {"refresh_token": fresh["refresh_token"]}, expect=401)
    assert_error(err, "M_UNKNOWN_TOKEN")
    # ...and only that one: the user's other device keeps working.
    await whoami(hs, alice.token)


@pytest.fixture
def login_limits(
    hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> Callable[[RateLimit, RateLimit], Awaitable[Matrix]]:
    async def start(address: RateLimit, account: RateLimit) -> Matrix:
        cfg = attrs.evolve(
            hs_config, rc_enabled=True, rc_registration=OPEN,
            rc_login=LoginRateLimits(address=address, account=account, failed_attempts=OPEN),
        )
        return await start_hs(cfg)

    return start


async def test_password_logins_are_limited_per_account(
    login_limits: Callable[[RateLimit, RateLimit], Awaitable[Matrix]],
) -> None:
    hs = await login_limits(OPEN, SLOW)
    await hs.users("alice", "bob")
    # The account's bucket is the same whatever form of the user id names it.
    for name in ("alice", "@alice:hs.test", "ALICE"):
        await hs.login(name)
    assert_error(await hs.login("@alice:hs.test", expect=429), "M_LIMIT_EXCEEDED")
    assert_error(await hs.login("alice", "wrong", expect=429), "M_LIMIT_EXCEEDED")
    await hs.login("bob")  # another account is not affected


async def test_password_logins_are_limited_per_address(
    login_limits: Callable[[RateLimit, RateLimit], Awaitable[Matrix]],
) -> None:
    hs = await login_limits(SLOW, OPEN)
    await hs.users("alice", "bob", "carol", "dave")
    for name in ("alice", "bob", "carol"):
        await hs.login(name)
    assert_error(await hs.login("dave", expect=429), "M_LIMIT_EXCEEDED")
