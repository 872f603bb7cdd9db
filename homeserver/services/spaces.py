"""The space hierarchy: GET /_matrix/client/v1/rooms/{roomId}/hierarchy for our users,
GET /_matrix/federation/v1/hierarchy/{roomId} for other servers (spec v1.2+, "Spaces").

Rooms this server is in are summarised from local state; the others are asked of the
servers in the ``via`` of the ``m.space.child`` event that names them, and the answer is
kept a few minutes (the spec: "should be cached for a period of time").

Pagination is stateless: the ``from`` token records the root, ``suggested_only``,
``max_depth`` and how many rooms were already returned; the walk is repeated (remote
answers come from the cache) and the rooms already returned are skipped. The walk is
depth-first from the root, children in the spec's order, and never visits a room twice
(loops between spaces are possible).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.core.ids import server_of
from homeserver.core.spaces import (
    SPACE_CHILD,
    Child,
    room_summary,
    space_children,
    visible_to_server,
    visible_to_user,
)
from homeserver.services.auth import Requester
from homeserver.services.ports import FederationRequestError
from homeserver.services.reader import EventReader
from storage.stores.rooms import RoomStore

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_DEPTH = 25  # the default and the ceiling of max_depth
MAX_ROOMS = 1000  # rooms walked per request, whatever the tree looks like
MAX_VIA = 3  # servers asked for one remote room
REMOTE_CACHE_SECONDS = 300.0
_SUMMARY_KEYS = {
    ("m.room.name", ""), ("m.room.topic", ""), ("m.room.avatar", ""), ("m.room.canonical_alias", ""),
    ("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.guest_access", ""),
    ("m.room.encryption", ""), ("m.room.create", ""),
}
# What we keep of a summary another server sends (the spec's fields).
_SUMMARY_FIELDS = {
    "room_id", "num_joined_members", "world_readable", "guest_can_join", "join_rule", "room_version",
    "name", "topic", "avatar_url", "canonical_alias", "encryption", "room_type", "allowed_room_ids",
    "children_state",
}


class RemoteHierarchyPort(Protocol):
    async def hierarchy(self, server: str, room_id: str, suggested_only: bool) -> Any:
        """GET /_matrix/federation/v1/hierarchy/{roomId} on ``server``; raise
        FederationRequestError when it does not answer 200."""


def _token(root: str, suggested_only: bool, max_depth: int, offset: int) -> str:
    raw = json.dumps({"r": root, "s": suggested_only, "d": max_depth, "o": offset}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _parse_token(token: str) -> tuple[str, bool, int, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        root, suggested, depth, offset = data["r"], data["s"], data["d"], data["o"]
    except (ValueError, TypeError, KeyError):
        raise MatrixError(400, "M_INVALID_PARAM", "Unknown pagination token") from None
    if not (isinstance(root, str) and isinstance(suggested, bool) and isinstance(depth, int) and isinstance(offset, int)):
        raise MatrixError(400, "M_INVALID_PARAM", "Unknown pagination token")
    return root, suggested, depth, offset


def _clean_summary(raw: Any, room_id: str) -> dict[str, Any] | None:
    """A peer's summary of ``room_id`` with the spec's fields only, or None if unusable."""
    if not isinstance(raw, Mapping) or raw.get("room_id") != room_id:
        return None
    summary = {k: v for k, v in raw.items() if k in _SUMMARY_FIELDS}
    if not isinstance(summary.get("num_joined_members"), int):
        summary["num_joined_members"] = 0
    for flag in ("world_readable", "guest_can_join"):
        summary[flag] = summary.get(flag) is True
    state = summary.get("children_state")
    summary["children_state"] = [
        e for e in (state if isinstance(state, list) else [])
        if isinstance(e, Mapping) and e.get("type") == SPACE_CHILD and isinstance(e.get("state_key"), str)
    ]
    return summary


def _children_of(summary: Mapping[str, Any]) -> list[Child]:
    return space_children({(e["type"], e["state_key"]): e for e in summary.get("children_state", [])})


class SpaceService:
    def __init__(
        self, *, server_name: str, events: EventReader, rooms: RoomStore,
        remote: RemoteHierarchyPort | None,
    ) -> None:
        self.server_name = server_name
        self._events = events
        self._rooms = rooms
        self._remote = remote
        # (room id, suggested_only) -> (until, summary or None for "inaccessible").
        self._remote_cache: dict[tuple[str, bool], tuple[float, dict[str, Any] | None]] = {}

    # -- what we know ourselves -----------------------------------------------------------

    async def _local(self, room_id: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        """The summary of a room this server is in, and its members; None if we are not."""
        head = await self._events.room_head(room_id)
        if head is None or not head.joined_local(self.server_name):
            return None
        keys = {k: v for k, v in head.state.items() if k in _SUMMARY_KEYS or k[0] == SPACE_CHILD}
        state = {k: e.pdu for k, e in (await self._events.state_events(keys)).items()}
        joined = sum(1 for m in head.members.values() if m == "join")
        return room_summary(room_id, head.room_version, state, joined), head.members

    # -- the client API -------------------------------------------------------------------

    async def hierarchy(
        self, requester: Requester, room_id: str, *, suggested_only: bool, max_depth: int | None,
        limit: int | None, from_: str | None,
    ) -> dict[str, Any]:
        if limit is not None and limit < 1:
            raise MatrixError(400, "M_INVALID_PARAM", "limit must be greater than zero")
        if max_depth is not None and max_depth < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "max_depth must not be negative")
        depth = min(max_depth if max_depth is not None else MAX_DEPTH, MAX_DEPTH)
        offset = 0
        if from_ is not None:
            root, token_suggested, token_depth, offset = _parse_token(from_)
            # The spec: max_depth and suggested_only cannot change between pages.
            if root != room_id or token_suggested != suggested_only or (
                max_depth is not None and token_depth != depth
            ):
                raise MatrixError(400, "M_INVALID_PARAM", "Pagination parameters changed")
            depth = token_depth
        limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        user = requester.user_id
        joined = {m.room_id for m in await self._rooms.memberships_for_user(user, ["join"])}

        root = await self._local(room_id)
        if root is None or not visible_to_user(root[0], root[1].get(user), joined):
            raise forbidden("You cannot view this room")

        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        stack: list[tuple[str, tuple[str, ...], int]] = [(room_id, (), 0)]
        walked = 0
        while stack and len(found) <= offset + limit and walked < MAX_ROOMS:
            current, via, level = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            walked += 1
            summary = await self._summary_for_user(current, via, suggested_only, user, joined)
            if summary is None:
                continue
            found.append(summary)
            if level < depth:
                children = [c for c in _children_of(summary) if c.suggested or not suggested_only]
                stack.extend((c.room_id, c.via, level + 1) for c in reversed(children) if c.room_id not in seen)
        out: dict[str, Any] = {"rooms": found[offset:offset + limit]}
        if len(found) > offset + limit:
            out["next_batch"] = _token(room_id, suggested_only, depth, offset + limit)
        return out

    async def _summary_for_user(
        self, room_id: str, via: tuple[str, ...], suggested_only: bool, user: str, joined: set[str],
    ) -> dict[str, Any] | None:
        """The room's summary if ``user`` may see it; local data wins over a peer's."""
        local = await self._local(room_id)
        if local is not None:
            summary, members = local
            return summary if visible_to_user(summary, members.get(user), joined) else None
        summary = await self._remote_summary(room_id, via, suggested_only)
        if summary is None:
            return None
        head = await self._events.room_head(room_id)  # e.g. an invite we hold
        membership = head.members.get(user) if head is not None else None
        return summary if visible_to_user(summary, membership, joined) else None

    async def remote_room_summary(
        self, room_id: str, via: tuple[str, ...], user: str | None,
    ) -> dict[str, Any] | None:
        """A room we hold nothing of, as the servers in ``via`` summarise it (their GET
        /hierarchy), if ``user`` (None: anonymous) may see it: the room summary endpoint's
        answer for rooms known only over federation (MSC3266, as Synapse serves it)."""
        summary = await self._remote_summary(room_id, via, False)
        if summary is None:
            return None
        joined: set[str] = set()
        membership = None
        if user is not None:
            joined = {m.room_id for m in await self._rooms.memberships_for_user(user, ["join"])}
            head = await self._events.room_head(room_id)  # e.g. an invite we hold
            membership = head.members.get(user) if head is not None else None
        if not visible_to_user(summary, membership, joined):
            return None
        out = {k: v for k, v in summary.items() if k not in ("children_state", "allowed_room_ids")}
        if membership is not None:
            out["membership"] = membership
        return out

    async def _remote_summary(
        self, room_id: str, via: tuple[str, ...], suggested_only: bool,
    ) -> dict[str, Any] | None:
        if self._remote is None:
            return None
        loop = asyncio.get_running_loop()
        cached = self._remote_cache.get((room_id, suggested_only))
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        servers = [s for s in dict.fromkeys(via) if s != self.server_name][:MAX_VIA]
        for server in servers:
            try:
                answer = await self._remote.hierarchy(server, room_id, suggested_only)
            except FederationRequestError as e:
                log.info("hierarchy of %s from %s failed: %s", room_id, server, e)
                continue
            summary = _clean_summary(answer.get("room") if isinstance(answer, Mapping) else None, room_id)
            if summary is None:
                continue
            until = loop.time() + REMOTE_CACHE_SECONDS
            self._remember(room_id, suggested_only, until, summary)
            # The children's summaries came along: a child that is no space needs no
            # request of its own. Inaccessible ones are inaccessible from anywhere.
            for child in answer.get("children") or []:
                child_id = child.get("room_id") if isinstance(child, Mapping) else None
                clean = _clean_summary(child, child_id) if isinstance(child_id, str) else None
                if clean is not None and clean.get("room_type") != "m.space":
                    self._remember(child_id, suggested_only, until, clean)
            for child_id in answer.get("inaccessible_children") or []:
                if isinstance(child_id, str):
                    self._remember(child_id, suggested_only, until, None)
            return summary
        return None

    def _remember(self, room_id: str, suggested_only: bool, until: float, summary: dict[str, Any] | None) -> None:
        if len(self._remote_cache) >= 10 * MAX_ROOMS:
            self._remote_cache.pop(next(iter(self._remote_cache)))
        self._remote_cache[(room_id, suggested_only)] = (until, summary)

    # -- the federation API ---------------------------------------------------------------

    async def hierarchy_for_server(self, origin: str, room_id: str, suggested_only: bool) -> dict[str, Any]:
        """The room and the children ``origin`` could peek or join; 404 when we are not in
        the room or ``origin`` could not (server-server API, GET /hierarchy)."""
        local = await self._local(room_id)
        if local is None or not visible_to_server(local[0], self._has_member(local[1], origin)):
            raise not_found("Unknown room")
        summary = local[0]
        children, inaccessible = [], []
        for child in _children_of(summary):
            if suggested_only and not child.suggested:
                continue
            known = await self._local(child.room_id)
            if known is None:
                continue  # no details to give: left out (the spec)
            if visible_to_server(known[0], self._has_member(known[1], origin)):
                children.append(known[0])
            else:
                inaccessible.append(child.room_id)
        return {"room": summary, "children": children, "inaccessible_children": inaccessible}

    @staticmethod
    def _has_member(members: Mapping[str, str], server: str) -> bool:
        return any(m == "join" and server_of(u) == server for u, m in members.items())
