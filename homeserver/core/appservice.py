"""Application services (spec: "Application Service API"): registrations and which
events, users and aliases they are interested in. Pure: no I/O.

A registration's namespaces are regular expressions matched against the whole id
(Synapse and the spec's examples anchor nothing, so `@_irc_.*` must match from the
start and to the end: we use ``fullmatch``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from homeserver.core.ids import user_id as make_user_id


@attrs.frozen
class Namespace:
    regex: str
    exclusive: bool = False
    pattern: re.Pattern[str] = attrs.field(eq=False, repr=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.pattern is None:
            object.__setattr__(self, "pattern", re.compile(self.regex))

    def matches(self, value: str) -> bool:
        return self.pattern.fullmatch(value) is not None


@attrs.frozen
class AppService:
    """One registration file, as the homeserver uses it."""

    id: str
    url: str | None  # None: the service receives no transactions (spec: "url" may be null)
    as_token: str
    hs_token: str
    sender: str  # the user implied by sender_localpart
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False

    def is_user_in_namespace(self, user_id: str) -> bool:
        """Its own sender counts as inside (spec: the service acts as it by default)."""
        return user_id == self.sender or any(ns.matches(user_id) for ns in self.users)

    def is_alias_in_namespace(self, alias: str) -> bool:
        return any(ns.matches(alias) for ns in self.aliases)

    def is_room_in_namespace(self, room_id: str) -> bool:
        return any(ns.matches(room_id) for ns in self.rooms)

    def claims_user(self, user_id: str) -> bool:
        """An exclusive user namespace covers it (or it is the service's own sender)."""
        return user_id == self.sender or any(ns.exclusive and ns.matches(user_id) for ns in self.users)

    def claims_alias(self, alias: str) -> bool:
        return any(ns.exclusive and ns.matches(alias) for ns in self.aliases)

    def is_interested(
        self, event: Mapping[str, Any], members: Iterable[str], aliases: Iterable[str] = (),
    ) -> bool:
        """Spec "Application services" / "Associating events": the sender, a member of the
        room (or the target of a membership change) in the users namespace, the room id in
        the rooms namespace, or one of the room's aliases in the aliases namespace."""
        sender = event.get("sender")
        if isinstance(sender, str) and self.is_user_in_namespace(sender):
            return True
        if event.get("type") == "m.room.member":
            target = event.get("state_key")
            if isinstance(target, str) and self.is_user_in_namespace(target):
                return True
        room_id = event.get("room_id")
        if isinstance(room_id, str) and self.is_room_in_namespace(room_id):
            return True
        if any(self.is_alias_in_namespace(a) for a in aliases):
            return True
        return any(self.is_user_in_namespace(m) for m in members)


@attrs.frozen
class AppAnswer:
    """What a service answered: its status and JSON body, or why it could not be asked."""

    status: int = 0  # 0: no answer (see `failure`)
    body: Any = None
    text: str = ""
    failure: str | None = None  # "connection" | "timeout"


def sender_of(localpart: str, server_name: str) -> str:
    return make_user_id(localpart, server_name)


def exclusive_owner(services: Iterable[AppService], user_id: str) -> AppService | None:
    for service in services:
        if service.claims_user(user_id):
            return service
    return None
