"""Helpers shared by the federation tests (HTTP only, like the rest of sytest-lite)."""

from __future__ import annotations

from typing import Any

from sltools import FEDERATION_DEADLINE, User, eventually, quote


def server_of(user_or_id: User | str) -> str:
    """The server name part of a user ID (``@a:127.0.0.1:8448`` -> ``127.0.0.1:8448``)."""
    user_id = user_or_id if isinstance(user_or_id, str) else user_or_id.user_id
    return user_id.split(":", 1)[1]


async def wait_membership(
    viewer: User, room_id: str, user_id: str, membership: str, what: str = ""
) -> None:
    """Wait until ``viewer``'s server shows ``user_id`` with ``membership`` in the room state."""

    async def probe() -> bool:
        r = await viewer.get_state(room_id, "m.room.member", user_id)
        return r.status == 200 and r.json.get("membership") == membership

    await eventually(
        probe,
        what=what or f"{viewer.hs.base_url} sees {user_id} with membership {membership}",
    )


async def shared_room(alice: User, bob: User, **create: Any) -> str:
    """A public room created by ``alice`` that ``bob`` (on the other server) has joined
    through alice's server; returns once both servers show bob as joined."""
    create.setdefault("preset", "public_chat")
    room = await alice.create_room(**create)
    r = await bob.join(room, via=[server_of(alice)])
    assert r.expect(200)["room_id"] == room
    await wait_membership(alice, room, bob.user_id, "join")
    await wait_membership(bob, room, bob.user_id, "join")
    return room


async def state_event_ids(user: User, room_id: str) -> dict[tuple[str, str], str]:
    """``{(type, state_key): event_id}`` of the room's current state on the user's server."""
    events = (await user.get(f"rooms/{quote(room_id)}/state")).expect(200)
    return {(e["type"], e["state_key"]): e["event_id"] for e in events}


async def wait_same_state(
    a: User, b: User, room_id: str, deadline: float = FEDERATION_DEADLINE
) -> dict[tuple[str, str], str]:
    """Wait until both servers report the same current state (same event IDs)."""
    seen: dict[str, Any] = {}

    async def probe() -> Any:
        sa, sb = await state_event_ids(a, room_id), await state_event_ids(b, room_id)
        seen["a"], seen["b"] = sa, sb
        return sa if sa == sb else None

    try:
        return await eventually(
            probe, deadline=deadline, what="identical room state on both servers"
        )
    except AssertionError:
        sa, sb = seen.get("a", {}), seen.get("b", {})
        diff = {k: (sa.get(k), sb.get(k)) for k in set(sa) | set(sb) if sa.get(k) != sb.get(k)}
        raise AssertionError(f"room state differs between the servers: {diff}") from None


async def sync_until(user: User, since: str | None, check, deadline: float = FEDERATION_DEADLINE):
    return await user.sync_until(since, check, deadline=deadline)
