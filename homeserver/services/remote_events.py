"""Writing what other servers send: checked events with the state before them,
outliers (auth chains, state from a join, invites to rooms we are not in) and
backfilled history. The local send path is in events.py; both commit through
EventService, the one owner of event and state truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from homeserver.core.errors import MatrixError
from homeserver.core.events import Event
from homeserver.core.state_res import resolve_state_v2
from homeserver.services.clock import now_ms
from homeserver.services.events import EventService, RoomHead
from storage.stores.events import Membership, NewRoom, PersistBatch, RoomUpdate, StoredEvent
from storage.stores.state import StateKey, StateMap


class RemoteEvents:
    def __init__(self, events: EventService) -> None:
        self._events = events

    async def resolve_states(
        self, room_version: str, states: Sequence[StateMap], pending: Sequence[Event] = (),
    ) -> StateMap:
        """State resolution v2 over several state maps (forks meeting). `pending` are
        events not stored yet (the one being persisted) that the states may name."""
        distinct = {tuple(sorted(s.items())) for s in states}
        if len(distinct) == 1:
            return dict(states[0])
        unstored = {e.event_id: e for e in pending}

        async def fetch(event_ids: Iterable[str]) -> dict[str, Event]:
            ids = list(event_ids)
            found = {i: unstored[i] for i in ids if i in unstored}
            stored = await self._events.get_events(i for i in ids if i not in unstored)
            found.update({k: v.event for k, v in stored.items()})
            return found

        return await resolve_state_v2(room_version, states, fetch)

    async def persist_received(
        self, room_id: str, event: Event, state_before: StateMap, *, before_group: int | None,
        soft_failed: bool = False, new_room: NewRoom | None = None, apply_redaction: bool = True,
    ) -> StoredEvent:
        """Persist a checked event with the state before it (the caller holds the room
        lock). Moves the room forward (extremities, current state, members) unless it was
        soft-failed; forks are merged with state resolution."""
        ev = self._events
        head = await ev.room_head(room_id)
        if head is None:
            if new_room is None:
                raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
            head = RoomHead(room_id, new_room.room_version, {}, 0, 0, [], 0, {})
        batch = PersistBatch(received_ts=now_ms())
        if new_room is not None:
            batch.new_rooms.append(new_room)

        if before_group is None:
            g = ev.new_state_group(room_id, head.state_group or None, head.chain_length, head.state, state_before)
            batch.state_groups.append(g)
            before_group, before_chain = g.id, g.chain_length
        else:
            before_chain = (await ev.state_and_chain(before_group))[1]
        state_after, after_group, after_chain = state_before, before_group, before_chain
        if event.is_state:
            state_after = {**state_before, event.state_tuple: event.event_id}
            g = ev.new_state_group(room_id, before_group, before_chain, state_before, state_after)
            batch.state_groups.append(g)
            after_group, after_chain = g.id, g.chain_length

        new_head: RoomHead | None = None
        member_events: dict[str, Event] = {}
        delta: dict[StateKey, str | None] = {}
        batch.edges = [(event.event_id, p) for p in event.prev_event_ids]
        # An event some later event already builds on arrived late: it is history,
        # already reflected in its descendants' state, not a new head of the room.
        late = await ev.store.has_children(event.event_id)
        if not soft_failed and not late:
            new_head, delta, member_events = await self._advance(
                head, event, state_after, after_group, after_chain, batch,
            )
        elif late and not soft_failed:
            # Its parents are no longer heads either (a known event now builds on them);
            # state stays as it is: the descendants already carry this event's effects.
            prevs = set(event.prev_event_ids)
            extremities = [e for e in head.extremities if e not in prevs]
            if extremities != head.extremities and extremities:
                new_head = attrs.evolve(head, extremities=extremities)
                batch.room_updates.append(RoomUpdate(
                    room_id, head.state_group, head.max_depth, {}, tuple(extremities),
                ))
            else:
                new_head = head

        # No awaits from here to enqueue: stream ids must commit in order.
        stream = ev.next_stream()
        for k, v in delta.items():
            if k[0] == "m.room.member":
                member = member_events.get(v or "")
                batch.memberships.append(Membership(
                    room_id, k[1], (member.membership or "leave") if member else "leave",
                    v or event.event_id, member.sender if member else event.sender, stream,
                ))
        replaces = state_before.get(event.state_tuple) if event.is_state else None
        se = StoredEvent(
            event, stream, before_group, after_group, soft_failed=soft_failed, replaces_state=replaces,
        )
        batch.events.append(se)
        if event.type == "m.room.redaction" and event.redacts and not soft_failed and apply_redaction:
            batch.redactions.append((event.event_id, event.redacts))
        await ev.commit(batch, [se], new_head)
        return se

    async def _advance(
        self, head: RoomHead, event: Event, state_after: StateMap, after_group: int,
        after_chain: int, batch: PersistBatch,
    ) -> tuple[RoomHead, dict[StateKey, str | None], dict[str, Event]]:
        """The room head after a new forward extremity: current state (resolved if
        forks remain), extremities, members, and the room update to write."""
        ev = self._events
        prevs = set(event.prev_event_ids)
        forked = any(e not in prevs for e in head.extremities)
        current = (
            await self.resolve_states(head.room_version, [head.state, state_after], [event])
            if forked else state_after
        )
        cur_group, cur_chain = after_group, after_chain
        if current != state_after:
            g = ev.new_state_group(head.room_id, after_group, after_chain, state_after, current)
            batch.state_groups.append(g)
            cur_group, cur_chain = g.id, g.chain_length
        delta: dict[StateKey, str | None] = {k: v for k, v in current.items() if head.state.get(k) != v}
        delta.update({k: None for k in head.state.keys() - current.keys()})
        changed = [v for k, v in delta.items() if k[0] == "m.room.member" and v and v != event.event_id]
        member_events = {eid: se.event for eid, se in (await ev.get_events(changed)).items()}
        if event.type == "m.room.member":
            member_events[event.event_id] = event
        members = dict(head.members)
        for k, v in delta.items():
            if k[0] == "m.room.member":
                member = member_events.get(v or "")
                members[k[1]] = (member.membership or "leave") if member else "leave"
        extremities = [e for e in head.extremities if e not in prevs] + [event.event_id]
        new_head = RoomHead(
            head.room_id, head.room_version, current, cur_group, cur_chain, extremities[-20:],
            max(head.max_depth, event.depth), members,
        )
        batch.room_updates.append(RoomUpdate(
            head.room_id, cur_group, new_head.max_depth, delta, tuple(new_head.extremities),
        ))
        return new_head, delta, member_events

    async def persist_outliers(
        self, events: Sequence[Event], new_room: NewRoom | None = None, invite_for: str | None = None,
    ) -> list[StoredEvent]:
        """Store events that sit outside the room's timeline: auth chains and state
        from a join, or an invite to a room we are not in (`invite_for`, a local user,
        then sees it in /sync)."""
        ev = self._events
        known = await ev.store.known_event_ids(e.event_id for e in events)
        fresh = [e for e in events if e.event_id not in known]
        if not fresh and new_room is None:
            return []
        batch = PersistBatch(received_ts=now_ms())
        if new_room is not None:
            batch.new_rooms.append(new_room)
        stored = []
        invite_stream = None
        for e in fresh:
            if invite_for is not None and e.state_key == invite_for:
                invite_stream = ev.next_stream()
                batch.memberships.append(Membership(
                    e.room_id, invite_for, e.membership or "invite", e.event_id, e.sender, invite_stream,
                ))
                stored.append(StoredEvent(e, invite_stream, None, None, outlier=True))
            else:
                stored.append(StoredEvent(e, ev.next_outlier_position(), None, None, outlier=True))
        batch.events = stored
        await ev.commit(batch, stored, None)
        if invite_for is not None and invite_stream is not None:
            ev.notify_membership(invite_for, invite_stream)
        return stored

    async def persist_backfilled(self, events: Sequence[Event]) -> list[StoredEvent]:
        """Older history fetched from another server: visible to /messages, never to
        /sync, and it does not move the room's state."""
        ev = self._events
        ids = [e.event_id for e in events]
        in_timeline = await ev.store.known_event_ids(ids, include_outliers=False)
        as_outlier = await ev.store.known_event_ids(ids) - in_timeline
        if as_outlier:
            # Already held outside the timeline (e.g. room state from the join): place them in it.
            await ev.store.mark_in_timeline(as_outlier)
            ev.forget_cached(as_outlier)
        fresh = sorted(
            (e for e in events if e.event_id not in in_timeline and e.event_id not in as_outlier),
            key=lambda e: -e.depth,
        )
        batch = PersistBatch(received_ts=now_ms())
        batch.events = [StoredEvent(e, ev.next_outlier_position(), None, None) for e in fresh]
        if fresh:
            await ev.commit(batch, batch.events, None)
        return batch.events + list((await ev.get_events(as_outlier)).values())
