"""The server administration API (Synapse-compatible paths under /_synapse/admin/):
users, their devices and rooms, rate-limit overrides, rooms and their state.

Every method takes the requester and refuses anyone who is not a server admin.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.core.paging import check_page, offset_page
from homeserver.core.roles import creators_of, user_level
from homeserver.services.accounts import AccountService
from homeserver.services.auth import AuthService, Requester
from homeserver.services.clock import now_ms
from homeserver.services.formatting import bare_client_event
from homeserver.services.profile import ProfileService
from homeserver.services.ratelimit import Limit, RateLimiter
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService
from storage.stores.admin import AdminStore
from storage.stores.reports import ReportStore
from storage.stores.users import UserStore

log = logging.getLogger(__name__)

SERVER_VERSION = "Tricolor 0.1"


def require_admin(requester: Requester) -> None:
    if not requester.is_admin:
        raise forbidden("You are not a server admin")


def as_user(user_id: str) -> Requester:
    """Act for a local user (the admin API acts in their name, as Synapse's does)."""
    return Requester(user_id, "", "", rate_limited=False)


class AdminService:
    def __init__(
        self, *, users: UserStore, store: AdminStore, accounts: AccountService, auth: AuthService,
        rooms: RoomService, events: EventReader, profile: ProfileService, limiter: RateLimiter,
        server_name: str,
    ) -> None:
        self._users = users
        self._store = store
        self._accounts = accounts
        self._auth = auth
        self._rooms = rooms
        self._events = events
        self._profile = profile
        self._limiter = limiter
        self.server_name = server_name

    def _local_user_id(self, user_id: str) -> str:
        if not ids.is_valid_user_id(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
        if ids.server_of(user_id) != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "Can only look up local users")
        return user_id

    async def _existing(self, user_id: str) -> Any:
        user = await self._users.get_user(self._local_user_id(user_id))
        if user is None:
            raise not_found("User not found")
        return user

    # -- users ------------------------------------------------------------------

    async def list_users(
        self, requester: Requester, *, offset: int, limit: int, name: str | None, guests: bool,
        deactivated: bool, admins: bool | None, order_by: str, backwards: bool,
    ) -> dict[str, Any]:
        require_admin(requester)
        limit = check_page(offset, limit)
        rows, total = await self._store.list_users(
            offset=offset, limit=limit, name=name, guests=guests, deactivated=deactivated, admins=admins,
            order_by=order_by, backwards=backwards,
        )
        return offset_page("users", rows, offset=offset, total=total, token=str)

    async def get_user(self, requester: Requester, user_id: str) -> dict[str, Any]:
        require_admin(requester)
        user = await self._existing(user_id)
        return {
            "name": user.user_id, "displayname": user.displayname, "avatar_url": user.avatar_url,
            "admin": user.is_admin, "deactivated": user.deactivated, "is_guest": user.is_guest,
            "user_type": None, "shadow_banned": False, "locked": False, "erased": False,
            "threepids": [], "external_ids": [],
        }

    async def put_user(
        self, requester: Requester, user_id: str, *, password: str | None, displayname: str | None,
        avatar_url: str | None, admin: bool | None, deactivated: bool | None, logout_devices: bool,
    ) -> tuple[dict[str, Any], bool]:
        """Create or modify a local user; (the user, whether it was created)."""
        require_admin(requester)
        user_id = self._local_user_id(user_id)
        existing = await self._users.get_user(user_id)
        created = existing is None
        if created:
            localpart = user_id[1:].split(":", 1)[0]
            await self._accounts.create_user(localpart, password, bool(admin))
            if displayname is None:
                displayname = localpart
        else:
            if deactivated is False and existing.deactivated:
                if password is None:
                    raise MatrixError(400, "M_MISSING_PARAM", "A password is needed to reactivate a user")
                await self._store.reactivate(user_id, await self._accounts.hash_password(password))
                password = None
            if password is not None:
                await self._users.set_password_hash(user_id, await self._accounts.hash_password(password))
                if logout_devices:
                    await self._auth.logout_all(user_id)
            if admin is not None and admin != existing.is_admin:
                await self._store.set_admin(user_id, admin)
                self._auth.forget_admin_flag(user_id)
        if displayname is not None:
            await self._profile.set_field(user_id, user_id, "displayname", displayname)
        if avatar_url is not None:
            await self._profile.set_field(user_id, user_id, "avatar_url", avatar_url)
        if deactivated is True and (existing is None or not existing.deactivated):
            await self._accounts.deactivate(as_user(user_id), erase=False)
        return await self.get_user(requester, user_id), created

    async def deactivate(self, requester: Requester, user_id: str, erase: bool) -> None:
        require_admin(requester)
        await self._existing(user_id)
        await self._accounts.deactivate(as_user(user_id), erase)

    async def reset_password(
        self, requester: Requester, user_id: str, new_password: str, logout_devices: bool,
    ) -> None:
        require_admin(requester)
        user = await self._existing(user_id)
        if user.deactivated:
            raise MatrixError(400, "M_FORBIDDEN", "The user is deactivated")
        await self._users.set_password_hash(user.user_id, await self._accounts.hash_password(new_password))
        if logout_devices:
            await self._auth.logout_all(user.user_id)

    async def devices(self, requester: Requester, user_id: str) -> dict[str, Any]:
        require_admin(requester)
        user = await self._existing(user_id)
        devices = [{**d, "user_id": user.user_id} for d in await self._users.list_devices(user.user_id)]
        return {"devices": devices, "total": len(devices)}

    async def whois(self, requester: Requester, user_id: str) -> dict[str, Any]:
        """Synapse's whois (and the spec's GET /admin/whois): the user's sessions."""
        if requester.user_id != user_id:
            require_admin(requester)
        user = await self._existing(user_id)
        devices = {
            d["device_id"]: {"sessions": [{"connections": [{
                "ip": d["last_seen_ip"], "last_seen": d["last_seen_ts"], "user_agent": None,
            }]}]}
            for d in await self._users.list_devices(user.user_id)
        }
        return {"user_id": user.user_id, "devices": devices}

    async def joined_rooms(self, requester: Requester, user_id: str) -> dict[str, Any]:
        require_admin(requester)
        user = await self._existing(user_id)
        rooms = await self._rooms.joined_rooms(user.user_id)
        return {"joined_rooms": rooms, "total": len(rooms)}

    # -- rate-limit overrides ---------------------------------------------------

    async def get_override(self, requester: Requester, user_id: str) -> dict[str, Any]:
        require_admin(requester)
        await self._existing(user_id)
        got = await self._store.get_override(user_id)
        if got is None:
            return {}
        return {"messages_per_second": got[0], "burst_count": got[1]}

    async def set_override(
        self, requester: Requester, user_id: str, per_second: float, burst: int,
    ) -> dict[str, Any]:
        require_admin(requester)
        await self._existing(user_id)
        if per_second < 0 or burst < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "messages_per_second and burst_count must not be negative")
        await self._store.set_override(user_id, per_second, burst)
        self._limiter.set_override(user_id, Limit(per_second, burst))
        return {"messages_per_second": per_second, "burst_count": burst}

    async def delete_override(self, requester: Requester, user_id: str) -> None:
        require_admin(requester)
        await self._existing(user_id)
        await self._store.delete_override(user_id)
        self._limiter.set_override(user_id, None)

    # -- rooms ------------------------------------------------------------------

    def _public_room(self, entry: dict[str, Any]) -> dict[str, Any]:
        joined = entry.pop("_joined")
        entry["joined_local_members"] = sum(1 for u in joined if ids.server_of(u) == self.server_name)
        return entry

    async def list_rooms(
        self, requester: Requester, *, offset: int, limit: int, order_by: str, backwards: bool,
        search_term: str | None,
    ) -> dict[str, Any]:
        require_admin(requester)
        limit = check_page(offset, limit)
        rooms = [self._public_room(r) for r in await self._store.room_details()]
        if search_term:
            term = search_term.lower()
            rooms = [
                r for r in rooms
                if term in (r["name"] or "").lower() or term in r["room_id"].lower()
                or term in (r["canonical_alias"] or "").lower()
            ]
        key = order_by if order_by in _ROOM_ORDERS else "name"

        def sort_key(r: dict[str, Any]) -> tuple[Any, str]:
            value = r[key]
            return ((value is None, value if not isinstance(value, str) else value.lower()) if value is not None
                    else (True, ""), r["room_id"])

        # Synapse sorts by size descending by default; `dir=b` reverses whichever order.
        descending = key in ("joined_members", "joined_local_members", "state_events")
        rooms.sort(key=sort_key, reverse=descending != backwards)
        page = rooms[offset:offset + limit]
        out: dict[str, Any] = {"rooms": page, "offset": offset, "total_rooms": len(rooms)}
        if offset + len(page) < len(rooms):
            out["next_batch"] = offset + len(page)
        if offset > 0:
            out["prev_batch"] = max(0, offset - limit)
        return out

    async def room(self, requester: Requester, room_id: str) -> dict[str, Any]:
        require_admin(requester)
        found = await self._store.room_details([room_id])
        if not found:
            raise not_found("Room not found")
        return self._public_room(found[0])

    async def room_members(self, requester: Requester, room_id: str) -> dict[str, Any]:
        require_admin(requester)
        head = await self._rooms.head_or_404(room_id)
        members = sorted(u for u, m in head.members.items() if m == "join")
        return {"members": members, "total": len(members)}

    async def room_state(self, requester: Requester, room_id: str) -> dict[str, Any]:
        require_admin(requester)
        head = await self._rooms.head_or_404(room_id)
        events = await self._events.state_events(head.state)
        return {"state": [bare_client_event(e) for e in events.values()]}

    async def block_room(self, requester: Requester, room_id: str, block: bool) -> dict[str, Any]:
        require_admin(requester)
        if not room_id.startswith("!"):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
        if block:
            await self._store.block_room(room_id, requester.user_id, now_ms())
        else:
            await self._store.unblock_room(room_id)
        return {"block": block}

    async def room_block(self, requester: Requester, room_id: str) -> dict[str, Any]:
        require_admin(requester)
        by = await self._store.room_block(room_id)
        return {"block": True, "user_id": by} if by else {"block": False}

    async def make_room_admin(self, requester: Requester, room_id: str, user_id: str | None) -> None:
        """Give ``user_id`` (default: the requester) the highest power level a local member of
        the room holds, inviting them when they are not in a room they cannot join freely
        (Synapse's make_room_admin)."""
        require_admin(requester)
        target = self._local_user_id(user_id or requester.user_id)
        await self._existing(target)
        head = await self._rooms.head_or_404(room_id)
        pl_event = await self._events.current_state_event(room_id, ("m.room.power_levels", ""))
        content = dict(pl_event.content) if pl_event else {}
        users = dict(content.get("users", {}))
        local = [u for u, m in head.members.items() if m == "join" and ids.server_of(u) == self.server_name]
        if not local:
            raise MatrixError(400, "M_UNKNOWN", "No local user in the room can grant power")
        create = await self._events.current_state_event(room_id, ("m.room.create", ""))
        creators = creators_of(create.content, create.sender) if create is not None else frozenset()
        actor = max(local, key=lambda u: user_level(content, u, creators))
        level = user_level(content, actor, creators)  # a v12 creator grants the owner's 100
        if level < int(content.get("events", {}).get("m.room.power_levels", content.get("state_default", 50))):
            raise MatrixError(400, "M_UNKNOWN", "No local user in the room can change power levels")
        if head.members.get(target) not in ("join", "invite"):
            rules = await self._events.current_state_event(room_id, ("m.room.join_rules", ""))
            if rules is None or rules.content.get("join_rule") != "public":
                # As Synapse: invited, so they can join; a public room they join themselves.
                await self._rooms.set_membership(as_user(actor), room_id, target, "invite", None)
        if target in creators:
            return  # a v12 creator already outranks everyone and cannot be listed
        users[target] = level
        content["users"] = users
        await self._rooms.send(as_user(actor), room_id, "m.room.power_levels", content, state_key="")


_ROOM_ORDERS = (
    "name", "canonical_alias", "joined_members", "joined_local_members", "version", "creator",
    "encryption", "federatable", "public", "join_rules", "guest_access", "history_visibility",
    "state_events", "room_id",
)


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")


class ReportAdminService:
    """Admins read and delete users' event reports (Synapse's event_reports admin API;
    users report through homeserver/services/reports.py). Also the admin CRUD of registration tokens
    (Synapse's registration_tokens API; their use at registration is a separate flow)."""

    def __init__(
        self, *, store: AdminStore, reports: ReportStore, rooms: RoomService, events: EventReader,
    ) -> None:
        self._store = store
        self._reports = reports
        self._rooms = rooms
        self._events = events

    async def _entry(self, row: dict[str, Any], with_event: bool) -> dict[str, Any]:
        details = await self._store.room_details([row["room_id"]])
        stored = await self._events.get_event(row["event_id"])
        out = {
            "id": row["id"], "received_ts": row["received_ts"], "room_id": row["room_id"],
            "event_id": row["event_id"], "user_id": row["user_id"], "reason": row["reason"],
            "score": row["score"], "sender": stored.event.sender if stored else None,
            "name": details[0]["name"] if details else None,
            "canonical_alias": details[0]["canonical_alias"] if details else None,
        }
        if with_event:
            out["event_json"] = stored.event.pdu if stored else None
        return out

    async def list_reports(
        self, requester: Requester, *, offset: int, limit: int, backwards: bool, room_id: str | None,
        user_id: str | None,
    ) -> dict[str, Any]:
        require_admin(requester)
        limit = check_page(offset, limit)
        rows, total = await self._reports.list_event_reports(
            offset=offset, limit=limit, backwards=backwards, room_id=room_id, user_id=user_id,
        )
        entries = [await self._entry(r, False) for r in rows]
        return offset_page("event_reports", entries, offset=offset, total=total)

    async def get_report(self, requester: Requester, report_id: int) -> dict[str, Any]:
        require_admin(requester)
        row = await self._reports.get_event_report(report_id)
        if row is None:
            raise not_found("Event report not found")
        return await self._entry(row, True)

    async def delete_report(self, requester: Requester, report_id: int) -> None:
        require_admin(requester)
        if not await self._reports.delete_event_report(report_id):
            raise not_found("Event report not found")

    # -- registration tokens --------------------------------------------------------

    async def list_tokens(self, requester: Requester, valid: bool | None) -> dict[str, Any]:
        require_admin(requester)
        now = now_ms()
        tokens = await self._store.list_tokens()
        if valid is not None:
            tokens = [t for t in tokens if _token_valid(t, now) == valid]
        return {"registration_tokens": tokens}

    async def get_token(self, requester: Requester, token: str) -> dict[str, Any]:
        require_admin(requester)
        got = await self._store.get_token(token)
        if got is None:
            raise not_found("No such registration token")
        return got

    async def new_token(
        self, requester: Requester, token: str | None, uses_allowed: int | None, expiry_time: int | None,
        length: int,
    ) -> dict[str, Any]:
        require_admin(requester)
        if uses_allowed is not None and uses_allowed < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "uses_allowed must be a non-negative integer or null")
        if expiry_time is not None and expiry_time < now_ms():
            raise MatrixError(400, "M_INVALID_PARAM", "expiry_time must not be in the past")
        if token is not None:
            if not token or len(token) > 64 or not set(token) <= _TOKEN_CHARS:
                raise MatrixError(400, "M_INVALID_PARAM", "token must be 1 to 64 characters of [A-Za-z0-9._~-]")
            if not await self._store.add_token(token, uses_allowed, expiry_time):
                raise MatrixError(400, "M_INVALID_PARAM", f"Token already exists: {token}")
            return await self.get_token(requester, token)
        if not 0 < length <= 64:
            raise MatrixError(400, "M_INVALID_PARAM", "length must be between 1 and 64")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"
        while True:
            candidate = ids.random_string(length, alphabet)
            if await self._store.add_token(candidate, uses_allowed, expiry_time):
                return await self.get_token(requester, candidate)

    async def update_token(self, requester: Requester, token: str, changes: dict[str, Any]) -> dict[str, Any]:
        require_admin(requester)
        if await self._store.get_token(token) is None:
            raise not_found("No such registration token")
        if changes.get("uses_allowed") is not None and changes["uses_allowed"] < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "uses_allowed must be a non-negative integer or null")
        if changes.get("expiry_time") is not None and changes["expiry_time"] < now_ms():
            raise MatrixError(400, "M_INVALID_PARAM", "expiry_time must not be in the past")
        await self._store.update_token(token, changes)
        return await self.get_token(requester, token)

    async def delete_token(self, requester: Requester, token: str) -> None:
        require_admin(requester)
        if not await self._store.delete_token(token):
            raise not_found("No such registration token")


def _token_valid(t: dict[str, Any], now: int) -> bool:
    uses_left = t["uses_allowed"] is None or t["pending"] + t["completed"] < t["uses_allowed"]
    return uses_left and (t["expiry_time"] is None or t["expiry_time"] > now)
