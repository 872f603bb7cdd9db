"""/sync: initial and incremental, long-polling on the notifier.

An idle long-poll costs one future; a token that is already current skips
the database entirely until the notifier says something concerns the user.
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.core.events import Event, StoredEvent
from homeserver.core.records import Membership
from homeserver.core.state_groups import StateMap
from homeserver.services.auth import Requester
from homeserver.services.e2e import E2eService
from homeserver.services.ephemeral import PresenceService, ReceiptService, TypingService
from homeserver.services.filtering import EventFilter, SyncFilter, lazy_members
from homeserver.services.formatting import stripped_state
from homeserver.services.lru import LruCache
from homeserver.services.notifier import NotifierPort, SyncToken
from homeserver.services.push_sync import PushSync
from homeserver.services.reader import EventReader
from homeserver.services.room_heads import RoomHead
from homeserver.services.rooms import RoomService
from homeserver.services.timeline import Timeline, before_event, encode_topo
from storage.stores.filters import AccountDataStore
from storage.stores.rooms import RoomStore

DEFAULT_TIMELINE_LIMIT = 10
_INVITE_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.topic",
    "m.room.canonical_alias", "m.room.encryption",
)


def empty_response(next_batch: str) -> dict[str, Any]:
    return {
        "next_batch": next_batch,
        "account_data": {"events": []},
        "presence": {"events": []},
        "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []},
        "device_one_time_keys_count": {"signed_curve25519": 0},
        "device_unused_fallback_key_types": [],
        "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
    }


def _has_data(resp: dict[str, Any]) -> bool:
    rooms = resp["rooms"]
    return bool(
        rooms["join"] or rooms["invite"] or rooms["leave"] or rooms["knock"] or resp["account_data"]["events"]
        or resp["presence"]["events"] or resp["to_device"]["events"]
        or resp["device_lists"]["changed"] or resp["device_lists"]["left"]
    )


class SyncService:
    def __init__(
        self, *, events: EventReader, rooms: RoomStore, timeline: Timeline, notifier: NotifierPort,
        account_data: AccountDataStore, server_name: str, typing: TypingService,
        receipts: ReceiptService, presence: PresenceService, room_service: RoomService,
        e2e: E2eService,
        push: PushSync,
    ) -> None:
        self._e2e = e2e
        self._push = push
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._joined_cache: LruCache[str, tuple[int, list[str]]] = LruCache(100_000)
        self._rooms_svc = room_service
        self._events = events
        self._rooms = rooms
        self._timeline = timeline
        self._notifier = notifier
        self._account_data = account_data
        self.server_name = server_name

    async def sync(
        self, requester: Requester, since: str | None, timeout_ms: int, sync_filter: SyncFilter,
        full_state: bool = False, set_presence: str = "online",
    ) -> dict[str, Any]:
        if set_presence != "offline":
            await self._presence.touch(requester.user_id, set_presence)
        since_token: SyncToken | None = None
        if since:
            try:
                since_token = SyncToken.parse(since)
            except ValueError:
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid since token") from None
        if since_token is None or full_state or timeout_ms <= 0:
            return await self._compute(requester, since_token, sync_filter, full_state)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        user = requester.user_id
        while True:
            waiter = self._notifier.register(user)
            try:
                current = self._notifier.current_token()
                if current.is_after(since_token):
                    resp = await self._compute(requester, since_token, sync_filter, False, current)
                    if _has_data(resp):
                        return resp
                    since_token = current
                remaining = deadline - loop.time()
                # Shutting down: an empty answer now lets the client resume from the same
                # token on the next server, instead of the poll holding the shutdown.
                if remaining <= 0 or self._notifier.closed:
                    return empty_response(since_token.encode())
                try:
                    await asyncio.wait_for(waiter, remaining)
                except TimeoutError:
                    return empty_response(self._notifier.current_token().encode())
            finally:
                self._notifier.unregister(user, waiter)

    async def _compute(
        self, requester: Requester, since: SyncToken | None, f: SyncFilter, full_state: bool,
        now: SyncToken | None = None,
    ) -> dict[str, Any]:
        now = now or self._notifier.current_token()
        resp = empty_response(now.encode())
        user = requester.user_id
        ignored = await self._account_data.ignored_users(user)
        f = f.ignoring(ignored)
        since_ev = since.events if since is not None else 0
        if since is None or full_state:
            wanted = ["join", "invite", "knock"] + (["leave", "ban"] if f.include_leave else [])
            rows = await self._rooms.memberships_for_user(user, wanted)
            changed_since = {r.room_id: r for r in rows}
            incremental_join: list[str] = []
        else:
            recent = self._events.recent
            changed = (
                [] if recent.no_membership_change(user, since_ev)
                else await self._rooms.membership_changes_since(user, since_ev)
            )
            changed_since = {r.room_id: r for r in changed}
            joined = await self._joined_rooms(user)
            incremental_join = [r for r in joined if r not in changed_since]

        rooms = resp["rooms"]
        for row in changed_since.values():
            if not f.room_allowed(row.room_id) or row.stream_ordering > now.events:
                continue
            if row.membership == "join":
                # A room joined since the token is synced as in an initial sync (its recent
                # history, `limited` when there is more), so clients can paginate back.
                after = since_ev if full_state else 0
                section = await self._room_full(requester, row.room_id, now.events, f, after)
                if section is not None:
                    rooms["join"][row.room_id] = section
            elif row.membership == "invite":
                if row.sender not in ignored:  # spec "Ignoring Users": their invites are not sent
                    rooms["invite"][row.room_id] = await self._invite(row)
            elif row.membership == "knock":
                # Spec "Knocking on rooms": rooms.knock, the room's stripped state and the knock.
                knock = await self._invite(row, "knock_room_state")
                rooms["knock"][row.room_id] = {"knock_state": knock["invite_state"]}
            elif row.membership in ("leave", "ban") and (since is not None or f.include_leave):
                section = await self._room_full(requester, row.room_id, row.stream_ordering, f, since_ev)
                if section is not None:
                    section.pop("ephemeral", None)
                    section.pop("summary", None)
                    section.pop("unread_notifications", None)
                    rooms["leave"][row.room_id] = section
        if incremental_join and since is not None:
            await self._incremental_rooms(requester, incremental_join, since, now, f, rooms["join"])
        joined_ids = incremental_join + [
            r.room_id for r in changed_since.values()
            if r.membership == "join" and f.room_allowed(r.room_id)
        ]
        await self._ephemeral(requester, joined_ids, since or SyncToken(), now, rooms["join"])
        resp["presence"]["events"] = await self._presence.events_for(user, since.presence if since else 0)

        ad_since = since.account_data if since else 0
        changed_ad = (
            await self._account_data.changed_since(user, ad_since)
            if self._notifier.maybe_changed("account_data", user, ad_since) else []
        )
        joined_set = set(joined_ids)
        for room_id, type_, content in changed_ad:
            event = {"type": type_, "content": content}
            if not room_id:
                resp["account_data"]["events"].append(event)
            elif room_id in joined_set:
                section = await self._ensure_section(requester, room_id, now, rooms["join"])
                if section is not None:
                    section["account_data"]["events"].append(event)
        await self._e2e.sync_into(requester, since, now, resp)
        await self._push.add_to(
            user, resp, now.events, since is None, f.timeline.unread_thread_notifications,
        )
        f.trim_response(resp)
        return resp

    async def _joined_rooms(self, user_id: str) -> list[str]:
        """The user's joined rooms, cached until their memberships change."""
        stamp = self._events.recent.member_stamp(user_id)
        cached = self._joined_cache.get(user_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        rooms = [r.room_id for r in await self._rooms.memberships_for_user(user_id, ["join"])]
        self._joined_cache.put(user_id, (stamp, rooms))
        return rooms

    # -- sections --------------------------------------------------------------

    async def _ephemeral(
        self, requester: Requester, room_ids: list[str], since: SyncToken, now: SyncToken,
        out: dict[str, Any],
    ) -> None:
        typing = self._typing.changed_rooms(room_ids, since.typing)
        receipts = await self._receipts.events_for(room_ids, since.receipts, now.receipts, requester.user_id)
        for room_id in typing.keys() | receipts.keys():
            section = await self._ensure_section(requester, room_id, now, out)
            if section is not None:
                section["ephemeral"]["events"] += [e for e in (typing.get(room_id), receipts.get(room_id)) if e]

    async def _ensure_section(
        self, requester: Requester, room_id: str, now: SyncToken, out: dict[str, Any],
    ) -> dict[str, Any] | None:
        """The room's join section, created empty when only ephemeral data or account data changed."""
        section = out.get(room_id)
        if section is None:
            head = await self._events.room_head(room_id)
            if head is None:
                return None
            topo = await self._events.topo_at_stream(room_id, now.events)
            section = out[room_id] = await self._section(
                requester, head, [], False, encode_topo(topo or (0, 0)), {}, SyncFilter(),
            )
        return section

    def _limit(self, f: SyncFilter) -> int:
        return f.timeline.limit if f.timeline.limit is not None else DEFAULT_TIMELINE_LIMIT

    async def _window(
        self, room_id: str, after: int, upto: int, limit: int, flt: EventFilter,
    ) -> tuple[list[StoredEvent], bool]:
        """The newest `limit` matching events in (after, upto], oldest first, and whether more exist."""
        picked: list[StoredEvent] = []
        cursor = upto
        page_size = max(limit + 1, 10)
        while len(picked) <= limit:
            page = await self._events.room_events_after([room_id], after, cursor, page_size)
            picked += [se for se in page if flt.matches(se.event)]
            if len(page) < page_size:
                break
            cursor = page[-1].stream_ordering - 1
        limited = len(picked) > limit
        chosen = picked[:limit]
        chosen.reverse()
        return chosen, limited

    async def _room_full(
        self, requester: Requester, room_id: str, upto: int, f: SyncFilter, after: int,
    ) -> dict[str, Any] | None:
        """A room section with the complete state at the start of its timeline (initial
        sync, or a room that became ours since the token)."""
        head = await self._events.room_head(room_id)
        if head is None:
            return None
        limit = self._limit(f)
        visible = await self._rooms_svc.visible_window(requester, room_id)
        if visible.since is not None:
            after = max(after, visible.since - 1)  # history visibility 'joined'/'invited'
        window, limited = await self._window(room_id, after, upto, limit, f.timeline)
        if window and not limited and window[0].event.prev_event_ids:
            # History we do not hold (a room joined over federation): let clients paginate.
            prevs = window[0].event.prev_event_ids
            limited = len(await self._events.known_event_ids(prevs, include_outliers=False)) < len(set(prevs))
        if window:
            state = await self._events.state_at_group(window[0].state_before)
            prev_batch = encode_topo(before_event(window[0]))
        else:
            state = await self._events.state_at_stream(room_id, upto)
            topo = await self._events.topo_at_stream(room_id, upto)
            prev_batch = encode_topo(topo or (0, 0))
        return await self._section(requester, head, window, limited, prev_batch, state, f)

    async def _incremental_rooms(
        self, requester: Requester, room_ids: list[str], since: SyncToken, now: SyncToken,
        f: SyncFilter, out: dict[str, Any],
    ) -> None:
        room_ids = [r for r in room_ids if f.room_allowed(r)]
        if now.events <= since.events or not room_ids:
            return
        limit = self._limit(f)
        if self._events.recent.covers(since.events):
            recent = self._events.recent.room_events_after(room_ids, since.events, now.events, 2000)
        else:
            recent = await self._events.room_events_after(room_ids, since.events, now.events, 2000)
        by_room: dict[str, list[StoredEvent]] = {}
        for se in recent:
            by_room.setdefault(se.event.room_id, []).append(se)
        for room_id, evs in by_room.items():
            head = await self._events.room_head(room_id)
            if head is None:
                continue
            window, limited = await self._window(room_id, since.events, now.events, limit, f.timeline) \
                if len(evs) >= 2000 else self._cut([se for se in evs if f.timeline.matches(se.event)], limit)
            if not window:
                continue
            state: StateMap = {}
            if limited:
                at_since = await self._events.state_at_stream(room_id, since.events)
                at_start = await self._events.state_at_group(window[0].state_before)
                state = {k: v for k, v in at_start.items() if at_since.get(k) != v}
            prev_batch = encode_topo(before_event(window[0]))
            out[room_id] = await self._section(requester, head, window, limited, prev_batch, state, f)

    @staticmethod
    def _cut(newest_first: list[StoredEvent], limit: int) -> tuple[list[StoredEvent], bool]:
        chosen = newest_first[:limit]
        chosen.reverse()
        return chosen, len(newest_first) > limit

    async def _section(
        self, requester: Requester, head: RoomHead, window: list[StoredEvent], limited: bool,
        prev_batch: str, state: StateMap, f: SyncFilter,
    ) -> dict[str, Any]:
        if f.state.lazy_load_members:
            state = await self._lazy_members(requester.user_id, window, state)
        # Spec "Filtering", event_format: "federation" asks for the events as PDUs.
        federation = f.event_format == "federation"
        state_events = await self._events.get_events(state.values())
        state_list = sorted(
            (se for se in state_events.values() if f.state.matches(se.event)),
            key=lambda se: se.stream_ordering,
        )
        return {
            "timeline": {
                "events": await self._timeline.format(
                    window, requester, include_room_id=False, bundle=True, federation=federation,
                ),
                "limited": limited, "prev_batch": prev_batch,
            },
            "state": {"events": await self._timeline.format(
                state_list, requester, include_room_id=False, federation=federation,
            )},
            "ephemeral": {"events": []},
            "account_data": {"events": []},
            "unread_notifications": {"notification_count": 0, "highlight_count": 0},
            "summary": self._summary(head, requester.user_id),
        }

    async def _lazy_members(self, user_id: str, window: list[StoredEvent], state: StateMap) -> StateMap:
        """Spec: "Lazy-loading room members": only the member events of the timeline's
        senders (and the user's own), and those senders' members even when the state is a
        delta that did not change them. We keep no record of what a client already holds,
        so they are always sent, which `include_redundant_members: false` allows."""
        senders = {se.event.sender for se in window}
        kept = lazy_members(state, senders | {user_id})
        if window:
            before = await self._events.state_at_group(window[0].state_before)
            for sender in senders:
                key = ("m.room.member", sender)
                if key in before:
                    kept.setdefault(key, before[key])
        return kept

    @staticmethod
    def _summary(head: RoomHead, user_id: str) -> dict[str, Any]:
        joined = [u for u, m in head.members.items() if m == "join"]
        invited = [u for u, m in head.members.items() if m == "invite"]
        heroes = sorted(u for u in joined + invited if u != user_id)[:5]
        return {
            "m.heroes": heroes, "m.joined_member_count": len(joined),
            "m.invited_member_count": len(invited),
        }

    async def _invite(self, row: Membership, sent_as: str = "invite_room_state") -> dict[str, Any]:
        invite = await self._events.get_event(row.event_id)
        if invite is None:
            return {"invite_state": {"events": []}}
        if invite.state_after is None:
            # An invite from another server: it sent the room's stripped state along.
            sent = invite.event.pdu.get("unsigned", {}).get(sent_as)
            stripped = [
                e for e in (sent if isinstance(sent, list) else [])
                if isinstance(e, dict) and isinstance(e.get("type"), str) and isinstance(e.get("content"), dict)
            ]
            return {"invite_state": {"events": [*stripped, *stripped_state([invite.event])]}}
        state = await self._events.state_at_group(invite.state_after)
        wanted = {k: v for k, v in state.items() if k[0] in _INVITE_STATE_TYPES and k[1] == ""}
        events: list[Event] = [*(await self._events.state_events(wanted)).values(), invite.event]
        return {"invite_state": {"events": stripped_state(events)}}
