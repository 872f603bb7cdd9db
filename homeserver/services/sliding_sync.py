"""Simplified sliding sync (MSC4186), the transport Element X and matrix-rust-sdk use.

`POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`: the client asks for
windows (`ranges`) over sorted lists of its rooms and for specific rooms
(`room_subscriptions`); the answer carries each list's count and room ids, and for each
room in a window its timeline (newest `timeline_limit` events), the `required_state` it
asked for, its name or heroes, counts and `bump_stamp`. Extensions carry to-device,
E2EE, account data, receipts and typing. Timelines, unread counts and the per-device
E2EE sections come from the one sync engine (sync_engine.py).

`pos` is `{sync token}.{state id}`: the position the answer was computed at, and the
connection state (which rooms were already sent, so a room not yet sent is `initial`,
and the lists' last windows). States are stored (storage/stores/sliding_sync.py) when
they change and cached here, so a `pos` still works after a restart and on any worker:
Element X resumes where it was. The newest few states per connection are kept; an
older or unknown `pos` is 400 `M_UNKNOWN_POS`, after which clients start again without
one (as with Synapse).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import Any

import attrs

from homeserver.core.errors import MatrixError
from homeserver.core.events import StoredEvent
from homeserver.core.records import Membership
from homeserver.core.state_groups import StateMap
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.e2e import E2eService
from homeserver.services.ephemeral import ReceiptService, TypingService
from homeserver.services.lru import LruCache
from homeserver.services.notifier import SyncToken
from homeserver.services.reader import EventReader
from homeserver.services.sync_engine import SyncEngine
from storage.stores.filters import AccountDataStore
from storage.stores.rooms import RoomStore
from storage.stores.sliding_sync import SlidingSyncStore

# MSC4186 "bump_stamp": the events that move a room up the list (as Synapse's
# DEFAULT_BUMP_EVENT_TYPES).
BUMP_TYPES = (
    "m.room.create", "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite",
    "m.poll.start", "m.beacon_info",
)
MAX_TIMELINE_LIMIT = 100
_HISTORY = 4  # positions remembered per connection: a retried request still works


@attrs.frozen
class RoomParams:
    timeline_limit: int = 0
    required_state: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class ListParams:
    ranges: tuple[tuple[int, int], ...] = ()
    timeline_limit: int = 0
    required_state: tuple[tuple[str, str], ...] = ()
    is_dm: bool | None = None
    is_invite: bool | None = None


@attrs.frozen
class SlidingRequest:
    lists: dict[str, ListParams] = attrs.Factory(dict)
    room_subscriptions: dict[str, RoomParams] = attrs.Factory(dict)
    extensions: dict[str, dict[str, Any]] = attrs.Factory(dict)
    conn_id: str = ""


_Lists = tuple[tuple[str, int, tuple[str, ...]], ...]


@attrs.frozen
class _ConnState:
    token: SyncToken
    sent: frozenset[str]  # rooms already given to this connection
    lists: _Lists  # (name, count, room ids) last given
    state_id: str = ""  # names (sent, lists) in the store; "" until stored


class SlidingSyncService:
    def __init__(
        self, *, engine: SyncEngine, events: EventReader, rooms: RoomStore, e2e: E2eService,
        receipts: ReceiptService, typing: TypingService, account_data: AccountDataStore,
        states: SlidingSyncStore,
    ) -> None:
        self._engine = engine
        self._notifier = engine.notifier
        self._events = events
        self._rooms = rooms
        self._e2e = e2e
        self._receipts = receipts
        self._typing = typing
        self._account_data = account_data
        self._store = states
        # (user, device, conn_id, state id) -> (sent, lists): read through to the store
        self._states: LruCache[tuple[str, str, str, str], tuple[frozenset[str], _Lists]] = LruCache(50_000)

    async def sync(
        self, requester: Requester, req: SlidingRequest, pos: str | None, timeout_ms: int,
    ) -> dict[str, Any]:
        prev = await self._lookup(requester, req.conn_id, pos)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_ms, 0) / 1000
        while True:
            waiter = self._notifier.register(requester.user_id)
            try:
                resp, state, changed = await self._compute(requester, req, prev)
                remaining = deadline - loop.time()
                if changed or prev is None or remaining <= 0 or self._notifier.closed:
                    return await self._answer(requester, req.conn_id, resp, state, prev)
                try:
                    await asyncio.wait_for(waiter, remaining)
                except TimeoutError:
                    pass
            finally:
                self._notifier.unregister(requester.user_id, waiter)

    async def _lookup(self, requester: Requester, conn_id: str, pos: str | None) -> _ConnState | None:
        if not pos:
            return None
        try:
            token_text, state_id = pos.rsplit(".", 1)
            token = SyncToken.parse(token_text)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid pos") from None
        key = (requester.user_id, requester.device_id, conn_id, state_id)
        found = self._states.get(key)
        if found is None:
            found = await self._store.get(*key)
            if found is None:
                raise MatrixError(400, "M_UNKNOWN_POS", "Unknown position: start again without pos")
            self._states.put(key, found)
        return _ConnState(token, found[0], found[1], state_id)

    async def _answer(
        self, requester: Requester, conn_id: str, resp: dict[str, Any], state: _ConnState,
        prev: _ConnState | None,
    ) -> dict[str, Any]:
        """The state is stored only when it differs from the one the request named (most
        long-polls that time out, or bring only new events in rooms already sent, do not)."""
        if prev is not None and prev.sent == state.sent and prev.lists == state.lists:
            state_id = prev.state_id
        else:
            state_id = secrets.token_urlsafe(9)  # unique across workers, no dots
            await self._store.put(requester.user_id, requester.device_id, conn_id, state_id,
                                  state.sent, state.lists, now_ms(), _HISTORY)
            self._states.put((requester.user_id, requester.device_id, conn_id, state_id), (state.sent, state.lists))
        resp["pos"] = f"{state.token.encode()}.{state_id}"
        return resp

    async def _compute(
        self, requester: Requester, req: SlidingRequest, prev: _ConnState | None,
    ) -> tuple[dict[str, Any], _ConnState, bool]:
        now = self._notifier.current_token()
        user = requester.user_id
        since = prev.token if prev is not None else None
        memberships = await self._rooms.memberships_for_user(user, ["join", "invite"])
        membership = {m.room_id: m for m in memberships if m.stream_ordering <= now.events}
        room_ids = sorted(membership)
        bumps = await self._events.latest_of_types(room_ids, BUMP_TYPES, now.events)
        direct = await self._direct_rooms(user)

        # -- lists: sorted by bump_stamp (newest first), then windows over them
        order = sorted(room_ids, key=lambda r: (-bumps.get(r, membership[r].stream_ordering), r))
        wanted: dict[str, RoomParams] = {}
        lists_out: dict[str, Any] = {}
        list_state = []
        for name, lp in sorted(req.lists.items()):
            members = [
                r for r in order
                if (lp.is_invite is None or (membership[r].membership == "invite") == lp.is_invite)
                and (lp.is_dm is None or (r in direct) == lp.is_dm)
            ]
            ops = []
            for lo, hi in lp.ranges:
                ids = members[lo:hi + 1]
                ops.append({"op": "SYNC", "range": [lo, hi], "room_ids": ids})
                for r in ids:
                    _want(wanted, r, lp.timeline_limit, lp.required_state)
            lists_out[name] = {"count": len(members), "ops": ops}
            list_state.append((name, len(members), tuple(r for op in ops for r in op["room_ids"])))
        for room_id, rp in req.room_subscriptions.items():
            if room_id in membership:
                _want(wanted, room_id, rp.timeline_limit, rp.required_state)

        # -- rooms: new to this connection (initial), or changed since `pos`
        sent = set(prev.sent) if prev is not None else set()
        changed_rooms: set[str] = set()
        if since is not None and now.events > since.events:
            changed_rooms = {
                se.event.room_id
                for se in await self._events.room_events_after(list(wanted), since.events, now.events, 5000)
            }
            changed_rooms |= {r for r, m in membership.items() if m.stream_ordering > since.events}
        rooms_out: dict[str, Any] = {}
        counts = await self._engine.unread_counts(
            user, [r for r in wanted if membership[r].membership == "join"], now.events,
        )
        for room_id, params in wanted.items():
            initial = room_id not in sent
            if not initial and room_id not in changed_rooms:
                continue
            section = await self._room(requester, room_id, params, membership[room_id],
                                       initial, since, now, bumps.get(room_id), room_id in direct)
            if section is None:
                continue
            section.update(counts.get(room_id, {"notification_count": 0, "highlight_count": 0}))
            rooms_out[room_id] = section
            sent.add(room_id)

        extensions = await self._extensions(requester, req.extensions, list(wanted), since, now, rooms_out)
        state = _ConnState(now, frozenset(sent), tuple(list_state))
        lists_changed = prev is None or prev.lists != state.lists
        changed = bool(rooms_out) or lists_changed or _extensions_carry(extensions)
        resp: dict[str, Any] = {"rooms": rooms_out, "extensions": extensions}
        if lists_out:
            resp["lists"] = lists_out
        return resp, state, changed

    async def _direct_rooms(self, user_id: str) -> set[str]:
        # m.direct: {user: [room, ...]} (spec "Direct Messaging")
        content = await self._account_data.get(user_id, "", "m.direct")
        if not isinstance(content, dict):
            return set()
        return {r for rooms in content.values() if isinstance(rooms, list) for r in rooms if isinstance(r, str)}

    async def _room(
        self, requester: Requester, room_id: str, params: RoomParams, membership: Membership, initial: bool,
        since: SyncToken | None, now: SyncToken, bump: int | None, is_dm: bool,
    ) -> dict[str, Any] | None:
        head = await self._events.room_head(room_id)
        if head is None:
            return None
        user = requester.user_id
        out: dict[str, Any] = {}
        if initial:
            out["initial"] = True
        if membership.membership == "invite":
            out["invite_state"] = (await self._engine.invite_section(membership))["invite_state"]["events"]
            return out
        after = 0 if initial or since is None else since.events
        window: list[StoredEvent] = []
        if params.timeline_limit > 0:
            window, limited, prev_batch = await self._engine.room_timeline(
                requester, room_id, after, now.events, params.timeline_limit,
            )
            out["timeline"] = await self._engine.format_events(window, requester, bundle=True)
            out["limited"] = limited
            out["prev_batch"] = prev_batch
            out["num_live"] = sum(
                1 for se in window if since is not None and se.stream_ordering > since.events
            )
        # required_state is the room's current state (MSC4186), all of it that matches on
        # the first time, what changed since `pos` afterwards.
        current = head.state
        if not initial and since is not None:
            before = await self._events.state_at_stream(room_id, since.events)
            candidates: StateMap = {k: v for k, v in current.items() if before.get(k) != v}
        else:
            candidates = current
        keys = _match_required(params.required_state, candidates, user, window, current)
        state_events = await self._events.get_events(current[k] for k in keys)
        ordered = sorted(state_events.values(), key=lambda se: se.stream_ordering)
        if ordered:
            out["required_state"] = await self._engine.format_events(ordered, requester, bundle=False)
        joined = [u for u, m in head.members.items() if m == "join"]
        invited = [u for u, m in head.members.items() if m == "invite"]
        if initial or any(k[0] == "m.room.member" for k in candidates if not initial):
            out["joined_count"] = len(joined)
            out["invited_count"] = len(invited)
        names = await self._events.get_events(
            current[k] for k in (("m.room.name", ""), ("m.room.avatar", "")) if k in current
        )
        by_type = {se.event.type: se.event.content for se in names.values()}
        name = by_type.get("m.room.name", {}).get("name")
        if isinstance(name, str) and name:
            if initial or ("m.room.name", "") in candidates:
                out["name"] = name
        elif initial or any(k[0] == "m.room.member" for k in candidates):
            out["heroes"] = await self._heroes(user, joined + invited, current)
        avatar = by_type.get("m.room.avatar", {}).get("url")
        if isinstance(avatar, str) and (initial or ("m.room.avatar", "") in candidates):
            out["avatar"] = avatar
        if bump is not None:
            out["bump_stamp"] = bump
        if is_dm:
            out["is_dm"] = True
        return out

    async def _heroes(self, user_id: str, members: list[str], state: StateMap) -> list[dict[str, Any]]:
        """Spec "Calculating the display name for a room": up to 5 other members, sorted."""
        heroes = sorted(u for u in members if u != user_id)[:5]
        events = await self._events.get_events(
            state[("m.room.member", u)] for u in heroes if ("m.room.member", u) in state
        )
        by_user = {se.event.state_key: se.event.content for se in events.values()}
        out = []
        for u in heroes:
            hero: dict[str, Any] = {"user_id": u}
            content = by_user.get(u, {})
            if isinstance(content.get("displayname"), str):
                hero["displayname"] = content["displayname"]
            if isinstance(content.get("avatar_url"), str):
                hero["avatar_url"] = content["avatar_url"]
            out.append(hero)
        return out

    async def _extensions(
        self, requester: Requester, asked: dict[str, dict[str, Any]], room_ids: list[str],
        since: SyncToken | None, now: SyncToken, rooms_out: dict[str, Any],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        user = requester.user_id

        def on(name: str) -> dict[str, Any] | None:
            ext = asked.get(name)
            return ext if isinstance(ext, dict) and ext.get("enabled") is True else None

        joined_rooms = room_ids
        if on("to_device") is not None or on("e2ee") is not None:
            td = on("to_device") or {}
            td_since = since
            given = td.get("since")
            if isinstance(given, str) and given.isdigit():
                td_since = attrs.evolve(since or SyncToken(), to_device=int(given))
            rooms = {"join": {r: {} for r in rooms_out}, "leave": {}, "invite": {}}
            device = await self._engine.device_part(requester, td_since, now, rooms)
            if on("to_device") is not None:
                out["to_device"] = {
                    "next_batch": str(SyncToken.parse(device["next_batch"]).to_device),
                    "events": device["to_device"]["events"],
                }
            if on("e2ee") is not None:
                e2ee: dict[str, Any] = {
                    "device_one_time_keys_count": device["device_one_time_keys_count"],
                    "device_unused_fallback_key_types": device["device_unused_fallback_key_types"],
                }
                if since is not None:
                    e2ee["device_lists"] = device["device_lists"]
                out["e2ee"] = e2ee
        if on("account_data") is not None:
            changed = await self._account_data.changed_since(user, since.account_data if since else 0)
            global_ = [{"type": t, "content": c} for r, t, c in changed if not r]
            by_room: dict[str, list[dict[str, Any]]] = {}
            for r, t, c in changed:
                if r and r in room_ids:
                    by_room.setdefault(r, []).append({"type": t, "content": c})
            out["account_data"] = {"global": global_, "rooms": by_room}
        if on("receipts") is not None:
            got = await self._receipts.events_for(
                joined_rooms, since.receipts if since else 0, now.receipts, user,
            )
            out["receipts"] = {"rooms": got}
        if on("typing") is not None:
            out["typing"] = {"rooms": self._typing.changed_rooms(joined_rooms, since.typing if since else 0)}
        return out


def _want(wanted: dict[str, RoomParams], room_id: str, limit: int, required: Sequence[tuple[str, str]]) -> None:
    """A room in several windows gets the largest timeline and every state asked for."""
    limit = min(max(limit, 0), MAX_TIMELINE_LIMIT)
    old = wanted.get(room_id)
    if old is None:
        wanted[room_id] = RoomParams(limit, tuple(required))
    else:
        merged = old.required_state + tuple(k for k in required if k not in old.required_state)
        wanted[room_id] = RoomParams(max(old.timeline_limit, limit), merged)


def _match_required(
    required: Sequence[tuple[str, str]], candidates: StateMap, user_id: str,
    window: list[StoredEvent], current: StateMap,
) -> set[tuple[str, str]]:
    """The state keys `required_state` selects (MSC4186): `*` wildcards, `$ME` for the
    user, `$LAZY` member events for the senders of the timeline."""
    keys: set[tuple[str, str]] = set()
    senders = {se.event.sender for se in window}
    for etype, skey in required:
        if etype == "m.room.member" and skey == "$LAZY":
            # the senders' members, even when unchanged: the client may not hold them
            keys |= {("m.room.member", s) for s in senders if ("m.room.member", s) in current}
            continue
        skey = user_id if skey == "$ME" else skey
        for k in candidates:
            if (etype == "*" or k[0] == etype) and (skey == "*" or k[1] == skey):
                keys.add(k)
    return keys


def _extensions_carry(ext: dict[str, Any]) -> bool:
    """Whether the extensions carry news (a to-device `next_batch` or key counts alone do not)."""
    lists = ext.get("e2ee", {}).get("device_lists", {})
    return bool(
        ext.get("to_device", {}).get("events") or lists.get("changed") or lists.get("left")
        or ext.get("account_data", {}).get("global") or ext.get("account_data", {}).get("rooms")
        or ext.get("receipts", {}).get("rooms") or ext.get("typing", {}).get("rooms")
    )
