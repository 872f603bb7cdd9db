"""The sync engine: what a device gets since a position.

One object decides, for every transport (long-poll /sync, the WebSocket push, sliding
sync), which rooms, timelines (limits, `prev_batch`), state, ephemeral events, account
data, to-device messages, device lists, presence and unread counts a device receives
between two stream positions. Transports only decide *when* to ask.
"""

from __future__ import annotations

from typing import Any

import attrs

from homeserver.core.events import Event, StoredEvent
from homeserver.core.records import Membership
from homeserver.core.state_groups import StateMap
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.e2e import E2eService
from homeserver.services.ephemeral import PresenceService, ReceiptService, TypingService
from homeserver.services.filtering import EventFilter, SyncFilter, lazy_members
from homeserver.services.formatting import stripped_state
from homeserver.services.ignore import IgnoreLists
from homeserver.services.lru import LruCache
from homeserver.services.notifier import NotifierPort, SyncToken
from homeserver.services.push_sync import PushSync
from homeserver.services.reader import EventReader
from homeserver.services.room_heads import RoomHead
from homeserver.services.room_material import RoomMaterial, RoomMaterialCache, SharedEvent, fragment
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


def has_data(resp: dict[str, Any]) -> bool:
    rooms = resp["rooms"]
    return bool(
        rooms["join"] or rooms["invite"] or rooms["leave"] or rooms["knock"] or resp["account_data"]["events"]
        or resp["presence"]["events"] or resp["to_device"]["events"]
        or resp["device_lists"]["changed"] or resp["device_lists"]["left"]
    )


class SyncEngine:
    def __init__(
        self, *, events: EventReader, rooms: RoomStore, timeline: Timeline, notifier: NotifierPort,
        account_data: AccountDataStore, server_name: str, typing: TypingService,
        receipts: ReceiptService, presence: PresenceService, room_service: RoomService,
        e2e: E2eService,
        push: PushSync, material: RoomMaterialCache, ignores: IgnoreLists, incremental_scan: int,
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
        self._material = material
        self._ignores = ignores
        # An incremental sync reads at most this many of the newest events of all joined rooms at once.
        self._scan = incremental_scan

    @property
    def notifier(self) -> NotifierPort:
        return self._notifier

    async def compute(
        self, requester: Requester, since: SyncToken | None, f: SyncFilter, full_state: bool,
        now: SyncToken | None = None, *, device: bool = True,
    ) -> dict[str, Any]:
        """The sync response for `requester` between `since` (None: initial) and `now`.
        `device=False` leaves out the per-device sections (`device_part` gives them), so
        the rest can be serialised once for every device of the user at that position."""
        now = now or self._notifier.current_token()
        resp = empty_response(now.encode())
        user = requester.user_id
        ignored = await self._ignores.ignored_users(user)
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
        if device:
            await self._e2e.sync_into(requester, since, now, resp)
        await self._push.add_to(
            user, resp, now.events, since is None, f.timeline.unread_thread_notifications,
        )
        f.trim_response(resp)
        return resp

    async def device_part(
        self, requester: Requester, since: SyncToken | None, now: SyncToken, rooms: dict[str, Any],
        acked_to_device: int | None = None,
    ) -> dict[str, Any]:
        """The per-device sections of a response whose `rooms` were computed with
        `device=False`: to-device messages (deleted only up to `acked_to_device` when the
        transport acknowledges explicitly), device lists, key counts; and `next_batch`,
        which stops early when more to-device messages wait."""
        part: dict[str, Any] = {
            "next_batch": now.encode(), "rooms": rooms, "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
        }
        await self._e2e.sync_into(requester, since, now, part, acked_to_device)
        del part["rooms"]
        return part

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

    async def room_timeline(
        self, requester: Requester, room_id: str, after: int, upto: int, limit: int,
    ) -> tuple[list[StoredEvent], bool, str]:
        """The newest `limit` visible events of a room in (after, upto], oldest first,
        whether more exist, and the `prev_batch` before them (sliding sync's timeline)."""
        visible = await self._rooms_svc.visible_window(requester, room_id)
        if visible.since is not None:
            after = max(after, visible.since - 1)
        window, limited = await self._window(room_id, after, upto, limit, EventFilter())
        if window:
            return window, limited, encode_topo(before_event(window[0]))
        topo = await self._events.topo_at_stream(room_id, upto)
        return window, limited, encode_topo(topo or (0, 0))

    async def format_events(self, events: list[StoredEvent], requester: Requester, bundle: bool) -> list[dict[str, Any]]:
        return await self._timeline.format(events, requester, include_room_id=False, bundle=bundle)

    async def unread_counts(self, user_id: str, room_ids: list[str], upto: int) -> dict[str, dict[str, int]]:
        """Per room, `notification_count` and `highlight_count` (what /sync's
        unread_notifications says)."""
        resp: dict[str, Any] = {"rooms": {"join": {r: {} for r in room_ids}}, "account_data": {"events": []}}
        await self._push.add_to(user_id, resp, upto, False, False)
        return {
            r: section.get("unread_notifications", {"notification_count": 0, "highlight_count": 0})
            for r, section in resp["rooms"]["join"].items()
        }

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
        # The whole history readable: the room's material is everyone's (room_material.py).
        key = (
            self._material.key(room_id, upto, (limit, f.timeline, f.state.lazy_load_members))
            if after == 0 else None
        )
        material = self._material.get(key) if key is not None else None
        if material is None:
            material = await self._room_material(room_id, after, upto, limit, f)
            if key is not None:
                self._material.put(key, material)
        return await self._section(
            requester, head, material.window, material.limited, material.prev_batch, material.state, f,
            material=material,
        )

    async def _room_material(
        self, room_id: str, after: int, upto: int, limit: int, f: SyncFilter,
    ) -> RoomMaterial:
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
        # The state is the one before the window, so the senders' members are in it.
        lazy = lazy_members(state, {se.event.sender for se in window}) if f.state.lazy_load_members else {}
        return RoomMaterial(window, limited, prev_batch, state, lazy)

    async def _incremental_rooms(
        self, requester: Requester, room_ids: list[str], since: SyncToken, now: SyncToken,
        f: SyncFilter, out: dict[str, Any],
    ) -> None:
        room_ids = [r for r in room_ids if f.room_allowed(r)]
        if now.events <= since.events or not room_ids:
            return
        limit = self._limit(f)
        if self._events.recent.covers(since.events):
            recent = self._events.recent.room_events_after(room_ids, since.events, now.events, self._scan)
        else:
            recent = await self._events.room_events_after(room_ids, since.events, now.events, self._scan)
        by_room: dict[str, list[StoredEvent]] = {}
        for se in recent:
            by_room.setdefault(se.event.room_id, []).append(se)
        # The scan holds the newest events of all the rooms together. When it was cut, a
        # room with fewer than `limit + 1` matching events in it may have older ones in the
        # gap (or be absent altogether): those rooms are read on their own, so their
        # timeline is the newest events, `limited` says whether more exist and
        # `prev_batch` points before them.
        complete = {
            r for r, evs in by_room.items()
            if sum(1 for se in evs if f.timeline.matches(se.event)) > limit
        } if len(recent) >= self._scan else set(by_room)
        for room_id in room_ids:
            if room_id not in complete and len(recent) < self._scan:
                continue  # the scan was whole: nothing happened in this room
            head = await self._events.room_head(room_id)
            if head is None:
                continue
            if room_id in complete:
                evs = by_room[room_id]
                window, limited = self._cut([se for se in evs if f.timeline.matches(se.event)], limit)
            else:
                window, limited = await self._window(room_id, since.events, now.events, limit, f.timeline)
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
        prev_batch: str, state: StateMap, f: SyncFilter, material: RoomMaterial | None = None,
    ) -> dict[str, Any]:
        if f.state.lazy_load_members and material is not None:
            # Shared senders' members, plus the user's own (spec "Lazy-loading room members").
            own = ("m.room.member", requester.user_id)
            lazy = material.lazy_state
            state = {**lazy, own: state[own]} if own in state else lazy
        elif f.state.lazy_load_members:
            state = await self._lazy_members(requester.user_id, window, state)
        # Spec "Filtering", event_format: "federation" asks for the events as PDUs.
        federation = f.event_format == "federation"
        state_events = await self._events.get_events(state.values())
        state_list = sorted(
            (se for se in state_events.values() if f.state.matches(se.event)),
            key=lambda se: se.stream_ordering,
        )
        timeline_out: list[Any]
        state_out: list[Any]
        if material is not None and not federation and f.event_fields is None:
            timeline_out = await self._shared_events(material, window, requester, bundle=True)
            state_out = await self._shared_events(material, state_list, requester, bundle=False)
        else:
            timeline_out = await self._timeline.format(
                window, requester, include_room_id=False, bundle=True, federation=federation,
            )
            state_out = await self._timeline.format(
                state_list, requester, include_room_id=False, federation=federation,
            )
        return {
            "timeline": {"events": timeline_out, "limited": limited, "prev_batch": prev_batch},
            "state": {"events": state_out},
            "ephemeral": {"events": []},
            "account_data": {"events": []},
            "unread_notifications": {"notification_count": 0, "highlight_count": 0},
            "summary": self._summary(head, requester.user_id),
        }

    async def _shared_events(
        self, material: RoomMaterial, events: list[StoredEvent], requester: Requester, bundle: bool,
    ) -> list[Any]:
        """Events serialised once per room material and shared by every reader (as
        SharedEvent, `age` spliced in now); the few that depend on the reader (their own
        transaction ids, bundled aggregations, redactions) are formatted for them."""
        frags = material.fragments
        missing = [se for se in events if (se.event.event_id, bundle) not in frags]
        if missing:
            anonymous = attrs.evolve(requester, device_id="")  # no transaction ids in shared bytes
            formatted = await self._timeline.format(missing, anonymous, include_room_id=False, bundle=bundle)
            for se, ev in zip(missing, formatted, strict=True):
                frags[(se.event.event_id, bundle)] = fragment(ev)
        personal = [
            se for se in events
            if frags[(se.event.event_id, bundle)] is None
            or (se.txn_id is not None and se.txn_device == requester.device_id)
        ]
        own: dict[str, dict[str, Any]] = {}
        if personal:
            formatted = await self._timeline.format(personal, requester, include_room_id=False, bundle=bundle)
            own = {se.event.event_id: ev for se, ev in zip(personal, formatted, strict=True)}
        now = now_ms()
        out: list[Any] = []
        for se in events:
            mine = own.get(se.event.event_id)
            if mine is not None:
                out.append(mine)
            else:
                frag = frags[(se.event.event_id, bundle)]
                assert frag is not None
                out.append(SharedEvent(frag.event, frag.with_age(now)))
        return out

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

    async def invite_section(self, row: Membership) -> dict[str, Any]:
        """`{"invite_state": {"events": [stripped state]}}` for an invite membership row."""
        return await self._invite(row)

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
