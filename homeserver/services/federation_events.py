"""Receiving PDUs from other servers: the spec's checklist, one room at a time.

Numbered as in the spec ("Checks performed on receipt of a PDU"):
 1. valid format and size          4. passes auth against its own auth events
 2. valid signatures               5. passes auth against the state before it
 3. content hash (else redact)     6. passes auth against current state (else soft-fail)
Missing prev events are fetched with /get_missing_events; when a gap remains,
the state before the event is fetched with /state and its events kept as outliers.
Missing auth events come from /event_auth. Each of these asks the origin first and then
the other servers in the room (spec: "the server may request them from the origin or
from other servers in the room"), so an origin that cannot or will not answer does not
make us refuse an event that others can vouch for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from homeserver.core import auth_rules
from homeserver.core.errors import AuthError, MatrixError, SignatureError, forbidden
from homeserver.core.events import (
    Event,
    check_content_hash,
    compute_event_id,
    event_from_pdu,
    validate_pdu,
)
from homeserver.core.ids import server_of
from homeserver.core.redaction import redact_pdu
from homeserver.core.room_versions import get_room_version
from homeserver.core.state_groups import StateMap
from homeserver.services.clock import now_ms
from homeserver.services.ports import FederationClientPort, FederationRequestError, KeyringPort
from homeserver.services.reader import EventReader
from homeserver.services.writer import RoomWriterPort
from storage.stores.federation import InboundTxnStore
from storage.stores.rooms import RoomStore

log = logging.getLogger(__name__)

MAX_PDUS_PER_TXN = 50
MAX_EDUS_PER_TXN = 100
# Asked per /get_missing_events request (servers answer fewer: Synapse 20, we 100).
MISSING_EVENTS_LIMIT = 100
# Events fetched for one gap at most before the state is fetched instead: enough to
# bridge a peer's catch-up after a long outage (it sends each room's newest event only),
# bounded so that one gap cannot hold the room's lock, or memory, for long.
MISSING_EVENTS_BUDGET = 1_000
# Besides the origin, how many other servers of the room are asked for what we lack.
OTHER_SERVERS_ASKED = 5


class PduRejected(Exception):
    pass


class EduReceiver(Protocol):
    async def on_edu(self, origin: str, edu: dict[str, Any]) -> None:
        """One EDU of a transaction from `origin` (typing, receipt, presence...)."""


class FederationEventHandler:
    def __init__(
        self, *, server_name: str, events: EventReader, writer: RoomWriterPort, rooms: RoomStore,
        keyring: KeyringPort, client: FederationClientPort, txns: InboundTxnStore,
        edus: EduReceiver,
    ) -> None:
        self.server_name = server_name
        self._events = events
        self._writer = writer
        self._rooms = rooms
        self._keyring = keyring
        self._client = client
        self._txns = txns
        self._edus = edus

    # -- transactions ----------------------------------------------------------

    async def receive_transaction(self, origin: str, txn_id: str, body: Any) -> dict[str, Any]:
        """A transaction from ``origin`` (already authenticated by the transport: X-Matrix for
        HTTP PUT /send/{txnId}, the broker for AMQP); returns the response body. A repeated
        (origin, txn_id) gets the stored response and changes nothing (spec: "Transactions")."""
        if isinstance(body, dict) and body.get("origin") not in (None, origin):
            raise forbidden("Transaction origin does not match the signing server")
        cached = await self._txns.get_response(origin, txn_id)
        if cached is not None:
            return cached
        if not isinstance(body, dict):
            raise MatrixError(400, "M_BAD_JSON", "Transaction must be an object")
        pdus, edus = body.get("pdus", []), body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise MatrixError(400, "M_BAD_JSON", "pdus and edus must be lists")
        if len(pdus) > MAX_PDUS_PER_TXN or len(edus) > MAX_EDUS_PER_TXN:
            raise MatrixError(400, "M_BAD_JSON", "Too many PDUs or EDUs in one transaction")
        results: dict[str, dict[str, str]] = {}
        for pdu in pdus:
            event_id, error = await self._one_pdu(origin, pdu)
            if event_id is not None:
                results[event_id] = {"error": error} if error else {}
        for edu in edus:
            if isinstance(edu, dict):
                try:
                    await self._edus.on_edu(origin, edu)
                except Exception:
                    log.exception("bad EDU from %s", origin)
        response = {"pdus": results}
        await self._txns.put_response(origin, txn_id, response, now_ms())
        return response

    async def _one_pdu(self, origin: str, pdu: Any) -> tuple[str | None, str | None]:
        if not isinstance(pdu, dict) or not isinstance(pdu.get("room_id"), str):
            return None, None
        room = await self._rooms.get_room(pdu["room_id"])
        if room is None:
            return None, None  # not a room we are in: nothing to say about it
        try:
            event_id = compute_event_id(room.room_version, pdu)
        except Exception:
            return None, None
        if not await self._events.server_allowed(room.room_id, origin):
            return event_id, "Server is banned from this room (m.room.server_acl)"
        try:
            await self.on_pdu(origin, room.room_version, pdu)
        except PduRejected as e:
            log.info("rejected %s from %s: %s", event_id, origin, e)
            return event_id, str(e)
        except Exception as e:
            log.exception("failed to process %s from %s", event_id, origin)
            return event_id, f"internal error: {type(e).__name__}"
        return event_id, None

    # -- one PDU ---------------------------------------------------------------

    async def check_pdu(self, room_version: str, pdu: dict[str, Any]) -> Event:
        """Steps 1-3: format, signatures, hash. Returns the event (redacted if its hash is wrong)."""
        try:
            validate_pdu(room_version, pdu)
        except MatrixError as e:
            raise PduRejected(f"invalid PDU: {e.error}") from None
        try:
            await self._keyring.verify_event_signatures(room_version, pdu)
        except SignatureError as e:
            raise PduRejected(f"bad signature: {e.error}") from None
        except FederationRequestError as e:
            raise PduRejected(f"could not fetch signing keys: {e}") from None
        if not check_content_hash(pdu):
            pdu = redact_pdu(room_version, pdu)
        return event_from_pdu(room_version, pdu)

    async def on_pdu(self, origin: str, room_version: str, pdu: dict[str, Any]) -> None:
        event = await self.check_pdu(room_version, pdu)
        known = await self._events.get_event(event.event_id)
        if known is not None:
            if known.event.rejected:
                raise PduRejected("this event was rejected before")
            return
        await self.accept(origin, room_version, event)

    async def accept(self, origin: str, room_version: str, event: Event, *, forward: bool = False) -> StateMap:
        """Checks 4-6 of "Checks performed on receipt of a PDU" and the write, under the
        room's lock (https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu).
        Returns the room's current state just before the event (send_join answers with it);
        raises PduRejected when the event fails auth."""
        async with self._writer.lock(event.room_id):
            head = await self._events.room_head(event.room_id)
            before = dict(head.state) if head is not None else {}
            await self._process_locked(
                origin, room_version, event, fetch_missing=True, forward_from=origin if forward else None,
            )
            return before

    async def _process_locked(
        self, origin: str, rv: str, event: Event, *, fetch_missing: bool, forward_from: str | None = None,
    ) -> None:
        if await self._events.get_event(event.event_id) is not None:
            return
        head = await self._events.room_head(event.room_id)
        if head is None:
            raise PduRejected("unknown room")
        prevs = event.prev_event_ids
        have = await self._events.get_events(prevs)
        missing = [p for p in prevs if p not in have or have[p].state_after is None]
        if missing and fetch_missing:
            await self._fetch_missing(origin, rv, event, head.extremities)
            have = await self._events.get_events(prevs)
            missing = [p for p in prevs if p not in have or have[p].state_after is None]

        # 4. auth against the event's own auth events
        auth_events = await self._auth_events(origin, rv, event)
        try:
            auth_rules.check_event_auth(
                rv, event, auth_events, create_event=await self._create_of(rv, event, {})
            )
        except AuthError as e:
            await self._keep_rejected(event)
            raise PduRejected(f"auth events: {e.error}") from None

        # 5. auth against the state before the event
        before_group: int | None = None
        if missing:
            state_before = await self._state_from_remote(origin, rv, event)
        elif len(prevs) == 1:
            before_group = have[prevs[0]].state_after
            state_before = await self._events.state_at_group(before_group)
        else:
            states = [await self._events.state_at_group(have[p].state_after) for p in prevs]
            state_before = await self._events.resolve_states(rv, states)
        keys = auth_rules.auth_types_for_event(rv, event.type, event.sender, event.state_key, event.content)
        try:
            auth_rules.check_auth_rules(rv, event, await self._state_subset(state_before, keys))
        except AuthError as e:
            await self._keep_rejected(event)
            raise PduRejected(f"state before: {e.error}") from None

        # 6. soft-fail against the current state
        soft_failed = False
        try:
            auth_rules.check_auth_rules(rv, event, await self._state_subset(head.state, keys))
        except AuthError:
            soft_failed = True
            log.info("soft-failed %s", event.event_id)

        apply_redaction = True
        if event.type == "m.room.redaction":
            apply_redaction = await self._redaction_allowed(event, state_before)
        await self._writer.append_received(
            event.room_id, event, state_before, before_group=before_group,
            soft_failed=soft_failed, apply_redaction=apply_redaction, forward_from=forward_from,
        )

    async def _keep_rejected(self, event: Event) -> None:
        """Remember a rejected event (spec: it stays in the graph, flagged), so it is not
        fetched again and nothing that cites it as an auth event can pass."""
        await self._writer.append_outliers([attrs.evolve(event, rejected=True)])

    async def _state_subset(self, state: StateMap, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Event]:
        return await self._events.state_events({k: state[k] for k in keys if k in state})

    async def _redaction_allowed(self, event: Event, state: StateMap) -> bool:
        target = await self._events.get_event(event.redacts or "")
        if target is None:
            return False
        if server_of(target.event.sender) == server_of(event.sender):
            return True
        pl_state = await self._state_subset(state, [("m.room.power_levels", ""), ("m.room.create", "")])
        return auth_rules.user_power_level(pl_state, event.sender) >= auth_rules.named_power_level(pl_state, "redact")

    # -- fetching what we lack ---------------------------------------------------

    async def _servers_to_ask(self, origin: str, room_id: str) -> list[str]:
        """The origin, then up to OTHER_SERVERS_ASKED other servers joined to the room
        (never ourselves), in a stable order."""
        head = await self._events.room_head(room_id)
        others = sorted({
            server_of(u) for u, m in (head.members.items() if head is not None else ()) if m == "join"
        } - {origin, self.server_name})
        return [origin, *others[:OTHER_SERVERS_ASKED]]

    async def _fetch_missing(self, origin: str, rv: str, event: Event, earliest: list[str]) -> None:
        for server in await self._servers_to_ask(origin, event.room_id):
            await self._fetch_missing_from(server, rv, event, earliest)
            have = await self._events.get_events(event.prev_event_ids)
            if all(p in have and have[p].state_after is not None for p in event.prev_event_ids):
                return

    async def _fetch_missing_from(self, server: str, rv: str, event: Event, earliest: list[str]) -> None:
        """/get_missing_events from ``server``, walking back from ``event`` in rounds
        (each answers what the server will, at most MISSING_EVENTS_LIMIT) until the gap
        closes or MISSING_EVENTS_BUDGET events came: a peer catching up after an outage
        sends only each room's newest events and leaves the history between to be fetched.
        Then the events are applied oldest first; one whose prev events are still missing
        gets the state before it from /state (a gap in the timeline, as the spec allows)."""
        fetched: dict[str, Event] = {}
        latest = [event.event_id]
        while len(fetched) < MISSING_EVENTS_BUDGET:
            try:
                resp = await self._client.request(
                    "POST", server, f"/_matrix/federation/v1/get_missing_events/{event.room_id}",
                    body={
                        "earliest_events": earliest, "latest_events": latest,
                        "limit": min(MISSING_EVENTS_LIMIT, MISSING_EVENTS_BUDGET - len(fetched)),
                        "min_depth": 0,
                    },
                )
            except FederationRequestError as e:
                log.info("get_missing_events from %s failed: %s", server, e)
                break
            new = 0
            for pdu in resp.get("events", []) if isinstance(resp, dict) else []:
                if not isinstance(pdu, dict):
                    continue
                try:
                    ev = await self.check_pdu(rv, pdu)
                except PduRejected as e:
                    log.info("missing event from %s rejected: %s", server, e)
                    continue
                if ev.event_id not in fetched:
                    fetched[ev.event_id] = ev
                    new += 1
            if not new:
                break
            # The frontier: fetched events whose prev events we neither hold nor fetched.
            wanted = {p for ev in fetched.values() for p in ev.prev_event_ids if p not in fetched}
            known = await self._events.known_event_ids(wanted, include_outliers=False)
            frontier = [ev.event_id for ev in fetched.values() if set(ev.prev_event_ids) & (wanted - known)]
            if not frontier:
                break
            latest = frontier
        for ev in sorted(fetched.values(), key=lambda e: e.depth):
            try:
                await self._process_locked(server, rv, ev, fetch_missing=False)
            except PduRejected as e:
                log.info("missing event %s rejected: %s", ev.event_id, e)

    async def _create_of(self, rv: str, event: Event, batch: dict[str, Event]) -> Event | None:
        """rooms/v12: the create event, named by the room id rather than auth_events."""
        if not get_room_version(rv).room_id_is_create_hash or event.type == "m.room.create":
            return None
        create_id = auth_rules.create_event_id_for_room(event.room_id)
        if create_id in batch:
            return batch[create_id]
        stored = await self._events.get_event(create_id)
        return stored.event if stored is not None else None

    async def _auth_events(self, origin: str, rv: str, event: Event) -> list[Event]:
        ids = event.auth_event_ids
        have = await self._events.get_events(ids)
        if len(have) < len(set(ids)):
            failures: list[str] = []
            for server in await self._servers_to_ask(origin, event.room_id):
                try:
                    resp = await self._client.request(
                        "GET", server, f"/_matrix/federation/v1/event_auth/{event.room_id}/{event.event_id}",
                    )
                except FederationRequestError as e:
                    failures.append(f"{server}: {e}")
                    continue
                await self.store_outliers(rv, resp.get("auth_chain", []) if isinstance(resp, dict) else [])
                have = await self._events.get_events(ids)
                if len(have) == len(set(ids)):
                    break
                failures.append(f"{server}: auth chain incomplete")
            if len(have) < len(set(ids)):
                raise PduRejected(f"cannot fetch auth events: {'; '.join(failures)}")
        if any(se.event.rejected for se in have.values()):
            raise PduRejected("an auth event was rejected")
        return [have[i].event for i in ids if i in have]

    async def _state_from_remote(self, origin: str, rv: str, event: Event) -> StateMap:
        failures: list[str] = []
        for server in await self._servers_to_ask(origin, event.room_id):
            try:
                resp = await self._client.request(
                    "GET", server, f"/_matrix/federation/v1/state/{event.room_id}",
                    query={"event_id": event.event_id},
                )
            except FederationRequestError as e:
                failures.append(f"{server}: {e}")
                continue
            if not isinstance(resp, dict):
                failures.append(f"{server}: bad /state response")
                continue
            await self.store_outliers(rv, resp.get("auth_chain", []))
            state_events = await self.store_outliers(rv, resp.get("pdus", []))
            return {e.state_tuple: e.event_id for e in state_events if e.is_state}
        raise PduRejected(f"cannot fetch state before event: {'; '.join(failures)}")

    async def store_outliers(self, rv: str, pdus: Any) -> list[Event]:
        """Check events that arrive outside the timeline (auth chains, state) and keep
        them as outliers: format, signatures and hash, then each one against its own
        auth events, oldest first. Events that fail are kept flagged as rejected (so
        nothing citing them can pass); the accepted ones are returned."""
        checked: dict[str, Event] = {}
        for pdu in pdus if isinstance(pdus, list) else []:
            if not isinstance(pdu, dict):
                continue
            try:
                event = await self.check_pdu(rv, pdu)
            except PduRejected as e:
                log.info("dropping outlier: %s", e)
                continue
            checked[event.event_id] = event
        verdicts: dict[str, Event] = {}
        for event in sorted(checked.values(), key=lambda e: (e.depth, e.event_id)):
            verdicts[event.event_id] = await self._auth_checked(rv, event, verdicts)
        await self._writer.append_outliers(list(verdicts.values()))
        return [e for e in verdicts.values() if not e.rejected]

    async def _auth_checked(self, rv: str, event: Event, batch: dict[str, Event]) -> Event:
        """The event, flagged rejected unless it passes auth against its own auth events."""
        ids = event.auth_event_ids
        known = await self._events.get_events(i for i in ids if i not in batch)
        auth = [batch[i] if i in batch else known[i].event for i in ids if i in batch or i in known]
        try:
            if len(auth) < len(set(ids)):
                raise AuthError("missing auth events")
            auth_rules.check_event_auth(
                rv, event, auth, create_event=await self._create_of(rv, event, batch)
            )
        except AuthError as e:
            log.info("outlier %s rejected: %s", event.event_id, e.error)
            return attrs.evolve(event, rejected=True)
        return event
