"""Tiny builders for auth-rule tests: events without hashes/signatures."""

from __future__ import annotations

import itertools
from typing import Any

from homeserver.core.events import Event

ALICE = "@alice:a.test"
BOB = "@bob:b.test"
CAROL = "@carol:b.test"
DAVE = "@dave:c.test"
ROOM = "!room:a.test"

_ids = itertools.count()


def make_event(
    event_type: str,
    sender: str,
    content: dict[str, Any] | None = None,
    state_key: str | None = None,
    *,
    version: str = "10",
    prev_events: list[str] | None = None,
    room_id: str = ROOM,
    rejected: bool = False,
    **extra: Any,
) -> Event:
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "room_id": room_id,
        "content": content or {},
        "prev_events": prev_events if prev_events is not None else ["$prev"],
        "auth_events": [],
        "depth": 10,
        "origin_server_ts": 0,
        "hashes": {"sha256": "x"},
        "signatures": {sender.split(":", 1)[1]: {"ed25519:1": "x"}},
        **extra,
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    return Event(f"$ev{next(_ids)}", pdu, version, rejected)


def member(sender: str, membership: str, target: str | None = None, **kw: Any) -> Event:
    content = {"membership": membership, **kw.pop("content", {})}
    return make_event("m.room.member", sender, content, target or sender, **kw)


class Room:
    """A mutable state map built up event by event (no checks)."""

    def __init__(
        self, version: str = "10", join_rule: str | None = "public", pl: dict | None = None
    ):
        self.version = version
        self.state: dict[tuple[str, str], Event] = {}
        content: dict[str, Any] = {"room_version": version}
        if int(version) <= 10:
            content["creator"] = ALICE
        create = make_event("m.room.create", ALICE, content, "", version=version, prev_events=[])
        if int(version) >= 12:  # the room id is the create event's id (rooms/v12)
            pdu = {k: v for k, v in create.pdu.items() if k != "room_id"}
            create = Event("$" + ROOM[1:], pdu, version)
        self.create = self.add(create)
        self.add(member(ALICE, "join", version=version, prev_events=[self.create.event_id]))
        self.add(
            make_event(
                "m.room.power_levels",
                ALICE,
                pl if pl is not None else {"users": {ALICE: 100}},
                "",
                version=version,
            )
        )
        if join_rule is not None:
            self.add(
                make_event(
                    "m.room.join_rules", ALICE, {"join_rule": join_rule}, "", version=version
                )
            )

    def add(self, event: Event) -> Event:
        self.state[event.state_tuple] = event
        return event

    def set_pl(self, content: dict) -> Event:
        return self.add(make_event("m.room.power_levels", ALICE, content, "", version=self.version))

    def join(self, user: str) -> Event:
        return self.add(member(user, "join", version=self.version))

    def ev(self, *args: Any, **kw: Any) -> Event:
        return make_event(*args, version=self.version, **kw)

    def member(self, *args: Any, **kw: Any) -> Event:
        return member(*args, version=self.version, **kw)
