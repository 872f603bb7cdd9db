"""An encrypted conversation between two matrix-nio clients with Olm/Megolm enabled.

Used on one server, across two Tricolor servers and between Tricolor and Synapse: the
servers only store and route keys and to-device messages, so a message that decrypts
proves the plumbing (keys upload, query, claim, to-device, /sync's device fields) works.
The crypto is libolm's, through the python-olm wheel (matrix-nio[e2e] < 0.26).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    MegolmEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

PASSWORD = "nio-e2ee-password-1"
MEGOLM = "m.megolm.v1.aes-sha2"
SYNC_ROUNDS = 30  # each round is one long-poll of at most 2 s; no assertion on time


async def encrypted_client(base_url: str, store: Path, prefix: str) -> AsyncClient:
    """A registered nio client with encryption on and its device keys uploaded; `store`
    is an existing directory for its Olm account."""
    name = f"{prefix}{secrets.token_hex(4)}"
    client = AsyncClient(
        base_url, name, store_path=str(store),
        config=AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=False, request_timeout=30,
            max_timeouts=3,  # a server that is down fails the test instead of hanging it
        ),
    )
    resp = await client.register(name, PASSWORD, device_name=f"{prefix}'s encrypted nio")
    assert isinstance(resp, RegisterResponse), resp
    assert client.olm is not None, "nio could not load its Olm account"
    # The issue asks for libolm: nio 0.25 wraps python-olm's Account (0.26 moved to vodozemac).
    assert "olm.account" in [c.__module__ for c in type(client.olm.account).__mro__]
    assert client.should_upload_keys
    up = await client.keys_upload()
    assert not client.should_upload_keys, up
    return client


async def _maintain_keys(client: AsyncClient) -> None:
    """What a nio application does between syncs: keep keys uploaded and tracked."""
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())


async def sync_until(client: AsyncClient, done: Callable[[SyncResponse], bool]) -> SyncResponse:
    for _ in range(SYNC_ROUNDS):
        resp = await client.sync(timeout=2000)
        assert isinstance(resp, SyncResponse), resp
        await _maintain_keys(client)
        if done(resp):
            return resp
    raise AssertionError(f"{client.user_id}: the awaited sync never came")


def decrypted_texts(client: AsyncClient, resp: SyncResponse, room_id: str, seen: list[str]) -> bool:
    """Collect the plain texts the other user sent to the room; Megolm events nio could not decrypt
    on arrival (the key came later) are retried with the keys now held."""
    room = resp.rooms.join.get(room_id)
    for event in room.timeline.events if room else []:
        if isinstance(event, MegolmEvent):
            try:
                event = client.decrypt_event(event)
            except Exception:  # still no key: kept for the next round
                continue
        if isinstance(event, RoomMessageText) and event.decrypted and event.sender != client.user_id:
            seen.append(event.body)
    return bool(seen)


async def encrypted_conversation(alice: AsyncClient, bob: AsyncClient) -> tuple[str, str]:
    """Alice creates an encrypted room and invites Bob; each sends one encrypted message.
    Returns (what Bob decrypted, what Alice decrypted)."""
    await alice.sync(timeout=0, full_state=True)
    await bob.sync(timeout=0, full_state=True)
    created = await alice.room_create(
        name="secret room", invite=[bob.user_id],
        initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}],
    )
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    await sync_until(bob, lambda r: room_id in r.rooms.invite)
    joined = await bob.join(room_id)
    assert isinstance(joined, JoinResponse), joined
    await sync_until(alice, lambda r: bob.user_id in alice.rooms[room_id].users)
    assert alice.rooms[room_id].encrypted

    sent = await alice.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "the eagle has landed"},
        ignore_unverified_devices=True,
    )
    assert isinstance(sent, RoomSendResponse), sent
    bob_saw: list[str] = []
    await sync_until(bob, lambda r: decrypted_texts(bob, r, room_id, bob_saw))

    assert bob.rooms[room_id].encrypted
    reply = await bob.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "the eagle is fed"},
        ignore_unverified_devices=True,
    )
    assert isinstance(reply, RoomSendResponse), reply
    alice_saw: list[str] = []
    await sync_until(alice, lambda r: decrypted_texts(alice, r, room_id, alice_saw))
    return bob_saw[0], alice_saw[0]
