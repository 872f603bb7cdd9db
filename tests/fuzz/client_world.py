"""The fixture world the client-server fuzz run plays in.

A fixture user owns a room (with an alias, a message, a state event), a filter, an uploaded
file and a key-backup version; ordinary operations run as that user with those ids in their
paths. Destructive operations (logout, deactivation, password change, device deletion,
leaving/forgetting/upgrading a room, kicks and bans, state changes, redactions, alias and
backup deletion) run as a throwaway user registered for that one request, with its own room,
alias, event, device and backup, so the fixture survives the whole run.
"""

from __future__ import annotations

import secrets
from typing import Any

import requests

CS = "/_matrix/client/v3"
PASSWORD = "fuzz-password-1"

# Operations that end or damage what they act on (labels "METHOD /path" of the bundled spec).
DESTRUCTIVE = {
    "POST /_matrix/client/v3/logout",
    "POST /_matrix/client/v3/logout/all",
    "POST /_matrix/client/v3/account/deactivate",
    "POST /_matrix/client/v3/account/password",
    "DELETE /_matrix/client/v3/devices/{deviceId}",
    "POST /_matrix/client/v3/delete_devices",
    "POST /_matrix/client/v3/rooms/{roomId}/leave",
    "POST /_matrix/client/v3/rooms/{roomId}/forget",
    "POST /_matrix/client/v3/rooms/{roomId}/kick",
    "POST /_matrix/client/v3/rooms/{roomId}/ban",
    "POST /_matrix/client/v3/rooms/{roomId}/upgrade",
    "PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
    "PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}",
    "DELETE /_matrix/client/v3/directory/room/{roomAlias}",
    "DELETE /_matrix/client/v3/room_keys/version/{version}",
    "DELETE /_matrix/client/v3/room_keys/keys",
    "DELETE /_matrix/client/v3/room_keys/keys/{roomId}",
    "DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
    "POST /_matrix/client/v3/keys/device_signing/upload",
    "POST /_matrix/client/v1/login/get_token",
}

# Query parameters that make the server wait: capped so a drawn `timeout=10**9` long poll
# cannot stall the run (the server's own caps are tested elsewhere).
WAIT_PARAMS = ("timeout", "timeout_ms")
MAX_WAIT_MS = 200


class ClientWorld:
    def __init__(self, base_url: str, server_name: str) -> None:
        self.base_url = base_url
        self.server_name = server_name
        self.http = requests.Session()
        self.fixture = self._make_world("fuzzer")

    def _post(self, path: str, body: Any, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.http.post(self.base_url + path, json=body, headers=headers, timeout=30)
        r.raise_for_status()
        return r.json()

    def _put(self, path: str, body: Any, token: str) -> Any:
        r = self.http.put(self.base_url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        r.raise_for_status()
        return r.json()

    def _make_world(self, prefix: str) -> dict[str, str]:
        localpart = f"{prefix}{secrets.token_hex(4)}"
        reg = self._post(f"{CS}/register", {
            "username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"},
        })
        token = reg["access_token"]
        alias_local = f"fuzz{secrets.token_hex(4)}"
        room = self._post(f"{CS}/createRoom", {"room_alias_name": alias_local, "preset": "public_chat"}, token)
        room_id = room["room_id"]
        event = self._put(f"{CS}/rooms/{room_id}/send/m.room.message/t1", {"msgtype": "m.text", "body": "hi"}, token)
        self._put(f"{CS}/rooms/{room_id}/state/m.room.topic/", {"topic": "fuzzing"}, token)
        filter_id = self._post(f"{CS}/user/{reg['user_id']}/filter", {"room": {"timeline": {"limit": 5}}}, token)
        r = self.http.post(
            self.base_url + "/_matrix/media/v3/upload", data=b"fuzz media",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}, timeout=30,
        )
        r.raise_for_status()
        media_id = r.json()["content_uri"].rsplit("/", 1)[1]
        version = self._post(f"{CS}/room_keys/version", {
            "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
            "auth_data": {"public_key": "abcdefg", "signatures": {}},
        }, token)["version"]
        return {
            "token": token, "roomId": room_id, "roomIdOrAlias": room_id,
            "roomAlias": f"#{alias_local}:{self.server_name}", "userId": reg["user_id"],
            "eventId": event["event_id"], "serverName": self.server_name, "mediaId": media_id,
            "deviceId": reg["device_id"], "filterId": filter_id["filter_id"], "version": version,
            "sessionId": "fuzzsession", "eventType": "m.room.topic", "type": "m.fuzz", "stateKey": "",
            "keyName": "displayname", "kind": "override", "ruleId": "fuzzrule", "tag": "m.favourite",
            "relType": "m.annotation", "receiptType": "m.read", "fileName": "fuzz.txt",
            "protocol": "fuzzproto",
        }

    def path_ids(self, operation: str) -> dict[str, str]:
        ids = dict(self.fixture)
        ids.pop("token")
        return ids

    def prepare(self, operation: str, case: Any) -> dict[str, Any]:
        world = self.fixture
        if operation in DESTRUCTIVE:
            world = self._make_world("throwaway")
            # The drawn ids that were the fixture's become the throwaway world's.
            for key, value in list((case.path_parameters or {}).items()):
                if value == self.fixture.get(key):
                    case.path_parameters[key] = world[key]
        if case.query is None:
            case.query = {}
        if isinstance(case.query, dict):
            # Schemathesis fills the spec's deprecated query-token scheme too; the world sends
            # the header (a token in both places is refused, tested in tests/client_api).
            case.query.pop("access_token", None)
            declared = {p.name for p in case.operation.query}
            for key in WAIT_PARAMS:
                if key in declared and key not in case.query:  # a server default may be a long wait
                    case.query[key] = MAX_WAIT_MS
                wait = _as_int(case.query.get(key))
                if wait is not None and wait > MAX_WAIT_MS:  # invalid values stay, to be refused
                    case.query[key] = MAX_WAIT_MS
        security = case.operation.definition.raw.get("security") if hasattr(case.operation, "definition") else None
        if security is None or security == []:
            return {}
        return {"headers": {"Authorization": f"Bearer {world['token']}"}}


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None
