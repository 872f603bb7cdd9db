"""What a server wrote survives a restart on the same database, in full and in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from config.schema import HomeserverConfig
from tests.helpers import Matrix, User, bodies, q, timeline

Start = Callable[[HomeserverConfig], Awaitable[Matrix]]


def position(token: str) -> tuple[int, ...]:
    assert token.startswith("s"), token
    return tuple(int(p) for p in token[1:].split("_"))


def again(hs: Matrix, user: User) -> User:
    """The same session (token and device) on a restarted server."""
    return User(hs, user.user_id, user.token, user.device_id, user.password, _txn=user._txn)


async def test_events_state_and_sync_survive_a_restart(hs_config: HomeserverConfig, start_hs: Start) -> None:
    hs = await start_hs(hs_config)
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await alice.create_room(preset="public_chat", name="Durable", topic="still here")
    await bob.join(room)
    sent = [await alice.send(room, f"m{n}") for n in range(3)]
    sent += await asyncio.gather(*(bob.send(room, f"burst{n}") for n in range(10)))
    before = await bob.sync()
    state_before = await bob.state_ids(room)
    await hs.client.close()  # shut down: the persister drains, the engine is disposed

    hs = await start_hs(hs_config)
    alice, bob = again(hs, alice), again(hs, bob)
    assert (await bob.get("/account/whoami"))["device_id"] == bob.device_id  # tokens still valid
    assert await alice.joined_rooms() == [room]
    assert await bob.joined_rooms() == [room]
    assert await bob.state_ids(room) == state_before
    assert await bob.state(room, "m.room.name") == {"name": "Durable"}

    page = await bob.messages(room, "b", limit=50)
    got = [e["event_id"] for e in page["chunk"] if e["type"] == "m.room.message"]
    assert sorted(got) == sorted(sent) and len(got) == len(set(got))  # every message, each once
    assert bodies(page["chunk"])[-3:] == ["m2", "m1", "m0"]
    for event_id in sent:
        assert (await bob.get(f"/rooms/{q(room)}/event/{q(event_id)}"))["event_id"] == event_id

    # the sync stream continues where it was: nothing new since, then new events after it
    assert (await bob.sync(before["next_batch"]))["rooms"]["join"] == {}
    new_id = await alice.send(room, "after restart", txn="after-restart")
    after = await bob.sync(before["next_batch"])
    assert [e["event_id"] for e in timeline(after, room)] == [new_id]
    assert position(after["next_batch"]) > position(before["next_batch"])
    newest = await bob.messages(room, "b", limit=1)
    assert [e["event_id"] for e in newest["chunk"]] == [new_id]

    # a transaction id used before the restart is still remembered
    assert await alice.send(room, "m0", txn="txn1") == sent[0]


async def test_accounts_and_logouts_survive_a_restart(hs_config: HomeserverConfig, start_hs: Start) -> None:
    hs = await start_hs(hs_config)
    alice = await hs.register("alice", device_id="PHONE")
    laptop = await hs.login_user("alice", device_id="LAPTOP")
    await laptop.post("/logout")
    await alice.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice"})
    await hs.client.close()

    hs = await start_hs(hs_config)
    assert (await hs.call("GET", "/account/whoami", token=alice.token))["device_id"] == "PHONE"
    err = await hs.call("GET", "/account/whoami", token=laptop.token, expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    assert await hs.call("GET", f"/profile/{q(alice.user_id)}") == {"displayname": "Alice"}
    assert (await hs.login("alice"))["user_id"] == alice.user_id
    err = await hs.call("POST", "/register", {
        "username": "alice", "password": "x", "auth": {"type": "m.login.dummy"},
    }, expect=400)
    assert err["errcode"] == "M_USER_IN_USE"
