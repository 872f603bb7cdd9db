"""Typing, receipts and presence across servers (EDUs), both directions: EduOutbound
listens to the ephemeral services and sends our users' changes; EduInbound takes
what peers send (spec: "Typing Notifications", "Receipts", "Presence" EDUs)."""

from __future__ import annotations

import logging
from typing import Any

from homeserver.core.ids import server_of
from homeserver.core.records import Receipt
from homeserver.services.e2e import E2eService
from homeserver.services.ephemeral import PresenceService, ReceiptService, TypingService
from homeserver.services.ports import FederationSenderPort
from homeserver.services.reader import EventReader

log = logging.getLogger(__name__)


class EduOutbound:
    """An EphemeralListener: our users' typing, receipts and presence go to the servers
    that share a room with them."""

    def __init__(self, *, server_name: str, events: EventReader, sender: FederationSenderPort) -> None:
        self.server_name = server_name
        self._events = events
        self._sender = sender

    def _is_local(self, user_id: str) -> bool:
        return server_of(user_id) == self.server_name

    def _room_servers(self, room_id: str) -> set[str]:
        head = self._events.cached_head(room_id)
        if head is None:
            return set()
        return {server_of(u) for u, m in head.members.items() if m == "join"} - {self.server_name}

    def typing_changed(self, room_id: str, user_id: str, typing: bool) -> None:
        if self._is_local(user_id):
            self._sender.send_edu(
                self._room_servers(room_id), "m.typing",
                {"room_id": room_id, "user_id": user_id, "typing": typing},
            )

    def receipt_changed(self, r: Receipt) -> None:
        if not self._is_local(r.user_id) or r.receipt_type != "m.read":
            return  # m.read.private never leaves the server
        data: dict[str, Any] = {"ts": r.ts}
        if r.thread_id:
            data["thread_id"] = r.thread_id
        self._sender.send_edu(self._room_servers(r.room_id), "m.receipt", {
            r.room_id: {"m.read": {r.user_id: {"event_ids": [r.event_id], "data": data}}},
        })

    def presence_changed(self, user_id: str, content: dict[str, Any], audience: set[str]) -> None:
        if not self._is_local(user_id):
            return
        servers = {server_of(u) for u in audience} - {self.server_name}
        self._sender.send_edu(servers, "m.presence", {"push": [{"user_id": user_id, **content}]})


class EduInbound:
    def __init__(
        self, *, events: EventReader, typing: TypingService, receipts: ReceiptService,
        presence: PresenceService, e2e: E2eService,
    ) -> None:
        self._e2e = e2e
        self._events = events
        self._typing = typing
        self._receipts = receipts
        self._presence = presence

    async def on_edu(self, origin: str, edu: dict[str, Any]) -> None:
        kind, content = edu.get("edu_type"), edu.get("content")
        if not isinstance(content, dict):
            return
        if kind == "m.typing":
            room_id, user_id = content.get("room_id"), content.get("user_id")
            if (isinstance(room_id, str) and isinstance(user_id, str) and server_of(user_id) == origin
                    and await self._joined_async(room_id, user_id)):
                self._typing.set_typing(room_id, user_id, content.get("typing") is True, 30_000)
        elif kind == "m.receipt":
            for room_id, by_type in content.items():
                if not isinstance(by_type, dict) or not isinstance(by_type.get("m.read"), dict):
                    continue
                for user_id, receipt in by_type["m.read"].items():
                    if (server_of(user_id) != origin or not isinstance(receipt, dict)
                            or not await self._joined_async(room_id, user_id)):
                        continue
                    ids = receipt.get("event_ids") or []
                    data = receipt.get("data") if isinstance(receipt.get("data"), dict) else {}
                    if ids and isinstance(ids[0], str):
                        ts = data.get("ts") if isinstance(data.get("ts"), int) else None
                        await self._receipts.put(room_id, user_id, "m.read", ids[0], data.get("thread_id"), ts)
        elif kind == "m.direct_to_device":
            await self._e2e.receive_to_device(origin, content)
        elif kind in ("m.device_list_update", "m.signing_key_update"):
            await self._e2e.receive_device_list_update(origin, content)
        elif kind == "m.presence":
            for update in content.get("push") or []:
                if not isinstance(update, dict) or not isinstance(update.get("user_id"), str):
                    continue
                if server_of(update["user_id"]) != origin:
                    continue
                ago = update.get("last_active_ago")
                await self._presence.set_remote(
                    update["user_id"], update.get("presence", "offline"),
                    update.get("status_msg") if isinstance(update.get("status_msg"), str) else None,
                    ago if isinstance(ago, int) else 0,
                )

    async def _joined_async(self, room_id: str, user_id: str) -> bool:
        """The user is joined and their server is not banned from the room by its ACL."""
        head = await self._events.room_head(room_id)
        return (
            head is not None and head.members.get(user_id) == "join"
            and await self._events.server_allowed(room_id, server_of(user_id))
        )
