"""Rate limits: 429 M_LIMIT_EXCEEDED with retry_after_ms, per user and per IP, in memory
and in a real Redis (shared buckets); admins exempt; per-user overrides."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import attrs
import pytest

from config.schema import HomeserverConfig, RateLimit
from homeserver.core.errors import MatrixError
from homeserver.outbound.redis_buckets import RedisBuckets
from homeserver.services.ratelimit import Limit, MemoryBuckets, RateLimiter
from tests.admin.conftest import ADMIN, promote
from tests.admin.test_groups import services_of
from tests.helpers import Matrix, assert_error, q
from tests.ws_client import WS_PATH, WsClient

REDIS_URL = "redis://127.0.0.1:6379/0"

# A burst of 3 refilled at one token per 1000 s: a fourth request in a test is always refused.
SLOW = RateLimit(per_second=0.001, burst_count=3)


def _limited(cfg: HomeserverConfig, redis: bool) -> HomeserverConfig:
    changes: dict[str, object] = {
        "rc_enabled": True, "rc_message": SLOW, "rc_registration": RateLimit(0.001, 6),
        "rc_room_creation": SLOW, "rc_client_events": SLOW, "rc_registration_token_validity": SLOW,
        "rc_3pid_validation": SLOW, "rc_joins": attrs.evolve(cfg.rc_joins, remote=SLOW),
    }
    if redis:
        changes["redis"] = attrs.evolve(cfg.redis, url=REDIS_URL)
    return attrs.evolve(cfg, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
async def limited(
    request: pytest.FixtureRequest, hs_config: HomeserverConfig,
    start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
) -> Matrix:
    cfg = _limited(hs_config, request.param == "redis")
    if request.param == "redis":
        # Buckets are kept per server name: a unique one keeps runs apart in a shared Redis.
        cfg = attrs.evolve(cfg, server_name=f"rl{secrets.token_hex(4)}.test")
    return await start_hs(cfg)


async def test_messages_are_limited_per_user_with_retry_after(limited: Matrix) -> None:
    alice, bob = await limited.users("alice", "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    for i in range(3):
        await alice.send(room, f"m{i}")
    err = await alice.send(room, "one too many", expect=429)
    assert_error(err, "M_LIMIT_EXCEEDED")
    assert err["retry_after_ms"] > 0
    # Refused means not sent: bob sees three messages; and bob has his own bucket.
    await bob.send(room, "mine")
    page = await bob.messages(room, "b", limit=10)
    bodies = [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["mine", "m2", "m1", "m0"]


async def test_admins_are_exempt_and_overrides_apply(limited: Matrix) -> None:
    alice, carol = await limited.users("alice", "carol")
    root = await promote(limited, await limited.register("root"))
    room = await root.create_room(preset="public_chat")
    for i in range(6):
        await root.send(room, f"admin {i}")
    await carol.join(room)
    # An override of 0/0 lifts carol's limit; a small one replaces the configured rate.
    await root.post(f"{ADMIN}/v1/users/{q(carol.user_id)}/override_ratelimit", {})
    assert await root.get(f"{ADMIN}/v1/users/{q(carol.user_id)}/override_ratelimit") == {
        "messages_per_second": 0, "burst_count": 0,
    }
    for i in range(6):
        await carol.send(room, f"carol {i}")
    await alice.join(room)
    await root.post(
        f"{ADMIN}/v1/users/{q(alice.user_id)}/override_ratelimit",
        {"messages_per_second": 0.001, "burst_count": 1},
    )
    await alice.send(room, "first")
    assert_error(await alice.send(room, "second", expect=429), "M_LIMIT_EXCEEDED")
    await root.delete(f"{ADMIN}/v1/users/{q(carol.user_id)}/override_ratelimit")
    assert await root.get(f"{ADMIN}/v1/users/{q(carol.user_id)}/override_ratelimit") == {}
    err = await root.post(
        f"{ADMIN}/v1/users/{q(alice.user_id)}/override_ratelimit", {"messages_per_second": -1}, expect=400,
    )
    assert_error(err, "M_INVALID_PARAM")


async def test_registration_is_limited_per_ip(limited: Matrix) -> None:
    for i in range(6):
        await limited.register(f"user{i}")
    err = await limited.call(
        "POST", "/register",
        {"username": "late", "password": "pw-late-1", "auth": {"type": "m.login.dummy"}}, expect=429,
    )
    assert_error(err, "M_LIMIT_EXCEEDED")
    # Not created: the name is still free.
    assert (await limited.call("GET", "/register/available", params={"username": "late"}))["available"]


async def test_room_creation_is_limited(limited: Matrix) -> None:
    alice = await limited.register("alice")
    for _ in range(3):
        await alice.create_room()
    assert_error(await alice.post("/createRoom", {}, expect=429), "M_LIMIT_EXCEEDED")
    assert len(await alice.joined_rooms()) == 3


async def test_redis_buckets_are_shared_between_workers() -> None:
    """Two limiters (two worker processes) on one Redis take from the same bucket."""
    key = "user-" + secrets.token_hex(6)
    first = RedisBuckets(REDIS_URL, "shared.test", MemoryBuckets())
    second = RedisBuckets(REDIS_URL, "shared.test", MemoryBuckets())
    try:
        limits = {"rc_message": Limit(0.001, 2)}
        a, b = RateLimiter(first, limits), RateLimiter(second, limits)
        await a.check("rc_message", key)
        await b.check("rc_message", key)
        with pytest.raises(Exception) as refused:
            await a.check("rc_message", key)
        assert getattr(refused.value, "errcode", None) == "M_LIMIT_EXCEEDED"
        assert refused.value.extra["retry_after_ms"] > 0  # type: ignore[attr-defined]
    finally:
        await first.close()
        await second.close()


async def test_failed_logins_are_limited(limited: Matrix) -> None:
    await limited.register("alice")
    for _ in range(3):
        assert_error(await limited.login("alice", "wrong", expect=403), "M_FORBIDDEN")
    assert_error(await limited.login("alice", "wrong", expect=429), "M_LIMIT_EXCEEDED")


def test_rate_limits_load_from_yaml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from config.errors import ConfigError
    from config.loader import load_config

    path = tmp_path / "hs.yaml"
    path.write_text("server_name: hs.test\nrc_message: {per_second: 0.5, burst_count: 2}\n"
                    "rc_joins: {local: {per_second: 1, burst_count: 4}}\n")
    cfg = load_config(str(path), env={})
    assert cfg.rc_message == RateLimit(0.5, 2) and cfg.rc_joins.local == RateLimit(1.0, 4)
    assert load_config(str(path), env={"TRICOLOR_RC_MESSAGE__PER_SECOND": "3"}).rc_message.per_second == 3.0
    path.write_text("server_name: hs.test\nrc_message: {per_second: -1}\n")
    with pytest.raises(ConfigError, match=r"rc_message\.per_second"):
        load_config(str(path), env={})


async def test_token_validity_and_3pid_requests_are_limited_per_ip(limited: Matrix) -> None:
    """Synapse's other per-IP limits: guessing registration tokens, asking for 3PID codes."""
    path = "/_matrix/client/v1/register/m.login.registration_token/validity"
    for _ in range(3):
        assert await limited.call("GET", path, params={"token": "guess"}) == {"valid": False}
    assert_error(await limited.call("GET", path, params={"token": "guess"}, expect=429), "M_LIMIT_EXCEEDED")
    body = {"client_secret": "s3cret", "email": "a@example.org", "send_attempt": 1}
    for _ in range(3):
        err = await limited.call("POST", "/register/email/requestToken", body, expect=403)
        assert_error(err, "M_THREEPID_DENIED")
    err = await limited.call("POST", "/register/email/requestToken", body, expect=429)
    assert_error(err, "M_LIMIT_EXCEEDED")
    assert err["retry_after_ms"] > 0


async def test_joins_over_federation_take_the_remote_bucket(limited: Matrix) -> None:
    """rc_joins.remote (here 3 at once) for rooms this server is not in; local joins have their own."""
    alice, bob = await limited.users("alice", "bob")
    path = f"/join/{q('#elsewhere:other.test')}"
    for _ in range(3):  # tried (other.test cannot be reached), not refused by the limit
        assert (await limited.raw("POST", path, {}, token=alice.token)).status in (404, 502)
    assert_error(await alice.join("#elsewhere:other.test", expect=429), "M_LIMIT_EXCEEDED")
    room = await bob.create_room(preset="public_chat")
    await alice.join(room)  # a room we are in: the local bucket, still full


async def test_websocket_sends_share_the_message_bucket(limited: Matrix) -> None:
    alice = await limited.register("alice")
    room = await alice.create_room(preset="public_chat")
    await alice.send(room, "over http")
    ws = await WsClient.connect(limited.client, WS_PATH, alice.token)
    try:
        for i in range(2):
            got = await ws.request("send", room_id=room, type="m.room.message",
                                   content={"msgtype": "m.text", "body": f"ws {i}"}, txn_id=f"w{i}")
            assert got["op"] == "result" and got["event_id"].startswith("$")
        refused = await ws.request("send", room_id=room, type="m.room.message",
                                   content={"msgtype": "m.text", "body": "too many"}, txn_id="w9")
        assert refused["op"] == "error" and refused["errcode"] == "M_LIMIT_EXCEEDED"
        assert refused["retry_after_ms"] > 0
    finally:
        await ws.close()
    page = await alice.messages(room, "b", limit=10)
    assert [e["content"]["body"] for e in page["chunk"] if e["type"] == "m.room.message"] == [
        "ws 1", "ws 0", "over http",
    ]


async def test_an_override_set_on_one_worker_applies_on_another_within_the_ttl(limited: Matrix) -> None:
    """A second worker (its own limiter over the same database) keeps what it read for at
    most the TTL: after that the override one worker's admin API stored applies there too."""
    alice = await limited.register("alice")
    root = await promote(limited, await limited.register("root"))
    now = [1_000_000]
    other = RateLimiter(MemoryBuckets(), {"rc_message": Limit(0.001, 1)},
                        services_of(limited).admin._store, override_ttl_ms=5_000, clock=lambda: now[0])
    await other.check("rc_message", alice.user_id, user_id=alice.user_id)
    with pytest.raises(MatrixError) as refused:
        await other.check("rc_message", alice.user_id, user_id=alice.user_id)
    assert getattr(refused.value, "errcode", None) == "M_LIMIT_EXCEEDED"
    await root.post(f"{ADMIN}/v1/users/{q(alice.user_id)}/override_ratelimit", {})  # 0/0: unlimited
    now[0] += 4_000  # within the TTL the other worker still has the old answer
    with pytest.raises(MatrixError):
        await other.check("rc_message", alice.user_id, user_id=alice.user_id)
    now[0] += 1_001
    for _ in range(5):
        await other.check("rc_message", alice.user_id, user_id=alice.user_id)
    await root.delete(f"{ADMIN}/v1/users/{q(alice.user_id)}/override_ratelimit")
    now[0] += 5_001
    with pytest.raises(MatrixError):
        await other.check("rc_message", alice.user_id, user_id=alice.user_id)
