"""End-to-end encryption across servers (server-server API, "End-to-End Encryption"
and "Send-to-Device messaging"): what E2eService asks of other servers.

Remote users' keys are not cached: every /keys/query for them asks their server, so a
missed m.device_list_update can never leave us serving stale keys; the EDU only tells
our users (through device_lists.changed) to query again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from homeserver.core.ids import server_of
from homeserver.services.ports import FederationClientPort, FederationSenderPort
from homeserver.services.reader import EventReader

REQUEST_TIMEOUT_S = 10.0


class RemoteKeys:
    """Implements RemoteKeysPort over the signed client and the federation sender."""

    def __init__(
        self, *, server_name: str, client: FederationClientPort, sender: FederationSenderPort,
        events: EventReader,
    ) -> None:
        self._server_name = server_name
        self._client = client
        self._sender = sender
        self._events = events

    async def query(self, server: str, device_keys: dict[str, list[str]]) -> dict[str, Any]:
        answer = await self._client.request(
            "POST", server, "/_matrix/federation/v1/user/keys/query",
            body={"device_keys": device_keys}, timeout=REQUEST_TIMEOUT_S,
        )
        return answer if isinstance(answer, dict) else {}

    async def claim(self, server: str, one_time_keys: dict[str, dict[str, str]]) -> dict[str, Any]:
        answer = await self._client.request(
            "POST", server, "/_matrix/federation/v1/user/keys/claim",
            body={"one_time_keys": one_time_keys}, timeout=REQUEST_TIMEOUT_S,
        )
        return answer if isinstance(answer, dict) else {}

    async def user_devices(self, server: str, user_id: str) -> dict[str, Any]:
        answer = await self._client.request(
            "GET", server, f"/_matrix/federation/v1/user/devices/{quote(user_id, safe='')}",
            timeout=REQUEST_TIMEOUT_S,
        )
        return answer if isinstance(answer, dict) else {}

    async def send_to_device(self, server: str, sender: str, ev_type: str, message_id: str,
                             messages: dict[str, dict[str, Any]]) -> None:
        # Persisted like a PDU: a peer that is briefly down still gets it (spec expects delivery).
        await self._sender.send_durable_edu([server], "m.direct_to_device", {
            "sender": sender, "type": ev_type, "message_id": message_id, "messages": messages,
        })

    async def device_list_changed(self, user_id: str, device_id: str, stream_id: int, prev_id: int | None,
                                  deleted: bool, keys: dict[str, Any] | None) -> None:
        """m.device_list_update to every server sharing a room with the user; a receiver
        that missed `prev_id` resyncs through /user/devices."""
        servers = {server_of(u) for u in await self._events.users_sharing_rooms(user_id)} - {self._server_name}
        if not servers:
            return
        content: dict[str, Any] = {
            "user_id": user_id, "device_id": device_id, "stream_id": stream_id,
            "prev_id": [] if prev_id is None else [prev_id], "deleted": deleted,
        }
        if keys is not None:
            content["keys"] = keys
        # Durable like to-device messages: a peer that is down now would otherwise keep
        # serving its users a stale device list (server-server "Device Management").
        await self._sender.send_durable_edu(servers, "m.device_list_update", content)

    async def signing_keys_changed(self, user_id: str, keys: dict[str, dict[str, Any]]) -> None:
        """m.signing_key_update to every server sharing a room with the user, durable like
        m.device_list_update. The user-signing key is private to its owner: never sent."""
        public = {f"{t}_key": keys[t] for t in ("master", "self_signing") if t in keys}
        servers = {server_of(u) for u in await self._events.users_sharing_rooms(user_id)} - {self._server_name}
        if public and servers:
            await self._sender.send_durable_edu(servers, "m.signing_key_update", {"user_id": user_id, **public})
