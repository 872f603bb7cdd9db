"""matrix-nio, a real client library, against a real server process.

nio validates every response against its own JSON schemas, so a missing key in
/sync or /messages shows up here as an error response rather than data.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    DevicesResponse,
    InviteMemberEvent,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    WhoamiError,
    WhoamiResponse,
)

from tests.integration.conftest import RunningServer

PASSWORD = "nio-password-1"


def fresh_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture
async def nio_clients(real_server: RunningServer) -> AsyncIterator[list[AsyncClient]]:
    clients: list[AsyncClient] = []
    yield clients
    for client in clients:
        await client.close()


async def new_user(server: RunningServer, clients: list[AsyncClient], prefix: str) -> AsyncClient:
    name = fresh_name(prefix)
    client = AsyncClient(
        server.base_url, name, config=AsyncClientConfig(encryption_enabled=False, request_timeout=30),
    )
    clients.append(client)
    resp = await client.register(name, PASSWORD, device_name=f"{prefix}'s nio")
    assert isinstance(resp, RegisterResponse), resp
    assert resp.user_id == f"@{name}:{server.server_name}"
    assert client.access_token and client.user_id == resp.user_id
    return client


def texts(events: list) -> list[str]:
    return [e.body for e in events if isinstance(e, RoomMessageText)]


async def test_two_users_chat_through_nio(real_server: RunningServer, nio_clients: list[AsyncClient]) -> None:
    alice = await new_user(real_server, nio_clients, "alice")
    bob = await new_user(real_server, nio_clients, "bob")
    assert isinstance(await alice.whoami(), WhoamiResponse)

    first = await alice.sync(timeout=0, full_state=True)
    assert isinstance(first, SyncResponse), first
    bob_first = await bob.sync(timeout=0)
    assert isinstance(bob_first, SyncResponse), bob_first

    created = await alice.room_create(name="nio room", topic="testing nio")
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    invited = await alice.room_invite(room_id, bob.user_id)
    assert isinstance(invited, RoomInviteResponse), invited

    sync = await bob.sync(timeout=5000, since=bob_first.next_batch)
    assert isinstance(sync, SyncResponse), sync
    assert room_id in sync.rooms.invite
    invite_events = sync.rooms.invite[room_id].invite_state
    assert any(isinstance(e, InviteMemberEvent) and e.sender == alice.user_id for e in invite_events)

    joined = await bob.join(room_id)
    assert isinstance(joined, JoinResponse) and joined.room_id == room_id

    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"})
    assert isinstance(sent, RoomSendResponse), sent
    reply = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"})
    assert isinstance(reply, RoomSendResponse), reply

    sync = await alice.sync(timeout=5000, since=first.next_batch)
    assert isinstance(sync, SyncResponse), sync
    room = sync.rooms.join[room_id]
    assert texts(room.timeline.events)[-2:] == ["hello bob", "hi alice"]
    assert any(
        isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "join"
        for e in room.timeline.events
    )
    assert alice.rooms[room_id].display_name == "nio room"
    assert bob.user_id in alice.rooms[room_id].users


async def test_long_poll_sync_delivers_a_message(real_server: RunningServer, nio_clients: list[AsyncClient]) -> None:
    alice = await new_user(real_server, nio_clients, "alice")
    bob = await new_user(real_server, nio_clients, "bob")
    created = await alice.room_create(invite=[bob.user_id])
    assert isinstance(created, RoomCreateResponse), created
    assert isinstance(await bob.join(created.room_id), JoinResponse)
    since = (await bob.sync(timeout=0)).next_batch

    poll = asyncio.create_task(bob.sync(timeout=10_000, since=since))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await alice.room_send(created.room_id, "m.room.message", {"msgtype": "m.text", "body": "ping"})
    sync = await asyncio.wait_for(poll, 9)
    assert isinstance(sync, SyncResponse), sync
    assert texts(sync.rooms.join[created.room_id].timeline.events) == ["ping"]


async def test_history_pagination_with_room_messages(
    real_server: RunningServer, nio_clients: list[AsyncClient],
) -> None:
    alice = await new_user(real_server, nio_clients, "alice")
    bob = await new_user(real_server, nio_clients, "bob")
    created = await alice.room_create(invite=[bob.user_id])
    room_id = created.room_id
    await bob.join(room_id)
    for n in range(12):
        resp = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"msg {n}"})
        assert isinstance(resp, RoomSendResponse), resp

    sync = await bob.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 3}}})
    assert isinstance(sync, SyncResponse), sync
    timeline = sync.rooms.join[room_id].timeline
    assert timeline.limited is True
    assert texts(timeline.events) == ["msg 9", "msg 10", "msg 11"]

    seen: list[str] = []
    token = timeline.prev_batch
    for _ in range(10):
        page = await bob.room_messages(room_id, start=token, limit=4, direction=MessageDirection.back)
        assert isinstance(page, RoomMessagesResponse), page
        seen += texts(page.chunk)
        if not page.end or not page.chunk:
            break
        token = page.end
    assert seen == [f"msg {n}" for n in range(8, -1, -1)]

    forward = await bob.room_messages(room_id, start=page.end or token, limit=50, direction=MessageDirection.front)
    assert isinstance(forward, RoomMessagesResponse), forward
    assert texts(forward.chunk) == [f"msg {n}" for n in range(12)]


async def test_login_logout_through_nio(real_server: RunningServer, nio_clients: list[AsyncClient]) -> None:
    alice = await new_user(real_server, nio_clients, "alice")
    second = AsyncClient(real_server.base_url, alice.user_id)
    nio_clients.append(second)
    resp = await second.login(PASSWORD, device_name="second device")
    assert isinstance(resp, LoginResponse), resp
    assert resp.device_id != alice.device_id and resp.user_id == alice.user_id
    assert isinstance(await second.whoami(), WhoamiResponse)
    old_token = second.access_token
    await second.logout()
    stale = AsyncClient(real_server.base_url, alice.user_id)
    nio_clients.append(stale)
    stale.access_token = old_token
    refused = await stale.whoami()
    assert isinstance(refused, WhoamiError) and refused.status_code == "M_UNKNOWN_TOKEN"
    assert isinstance(await alice.whoami(), WhoamiResponse)


async def test_device_list_through_nio(real_server: RunningServer, nio_clients: list[AsyncClient]) -> None:
    alice = await new_user(real_server, nio_clients, "alice")
    second = AsyncClient(real_server.base_url, alice.user_id)
    nio_clients.append(second)
    assert isinstance(await second.login(PASSWORD), LoginResponse)
    devices = await alice.devices()
    assert isinstance(devices, DevicesResponse), devices
    assert {d.id for d in devices.devices} == {alice.device_id, second.device_id}
