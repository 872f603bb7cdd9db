"""The fixture world of the federation fuzz run, and the signing hook.

Signed operations are sent as ``evil.test``, a small peer (tests/federation/peer.py) that
serves its signing key over TLS from a test CA; the server under test is configured to
reach it (``federation.static_map``) and trust that CA, so it verifies every signature for
real. :class:`SignAs` is a requests auth hook: it signs the request as it will be sent
(path and query exactly as encoded, the JSON body), which is what X-Matrix covers.
Unauthenticated operations (version, the key server, OpenID userinfo) go out as drawn.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import requests
import requests.auth

from tests.federation.peer import EvilPeer
from tests.fuzz.client_world import CS, ClientWorld


class PeerThread:
    """The evil.test peer served from its own event loop in a thread (the fuzz driver is
    synchronous)."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.peer: EvilPeer = asyncio.run_coroutine_threadsafe(EvilPeer(tmp_path).start(), self.loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.peer.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class SignAs(requests.auth.AuthBase):
    def __init__(self, peer: EvilPeer, destination: str) -> None:
        self.peer = peer
        self.destination = destination

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        content: Any = None
        if r.body:
            try:
                content = json.loads(r.body)
            except ValueError:
                content = None  # not JSON: signed without content, the server must still refuse it
        try:
            r.headers["Authorization"] = self.peer.auth(r.method or "GET", r.path_url, self.destination, content)
        except ValueError:  # no canonical form (floats, huge ints): a signature that cannot match
            r.headers["Authorization"] = self.peer.auth(r.method or "GET", r.path_url, self.destination, None)
        return r


class FederationWorld:
    def __init__(self, base_url: str, server_name: str, peer: EvilPeer) -> None:
        self.base_url = base_url
        self.server_name = server_name
        self.peer = peer
        # A public room with a message, made by a local user through the client API.
        self.local = ClientWorld(base_url, server_name).fixture
        r = requests.post(
            f"{base_url}{CS}/rooms/{self.local['roomId']}/invite",
            json={"user_id": peer.user("mallory")},
            headers={"Authorization": f"Bearer {self.local['token']}"}, timeout=30,
        )
        self.invited = r.status_code == 200

    def path_ids(self, operation: str) -> dict[str, str]:
        return {
            "roomId": self.local["roomId"], "eventId": self.local["eventId"],
            "userId": self.peer.user("mallory") if "make_" in operation else self.local["userId"],
            "mediaId": self.local["mediaId"], "serverName": self.server_name,
            "queryType": "profile",
        }

    def prepare(self, operation: str, case: Any) -> dict[str, Any]:
        security = json.dumps(case.operation.definition.raw.get("security") or [])
        # The spec marks timestamp_to_event with an "accessToken" scheme; it is signed like
        # every other federation request (spec "Request Authentication").
        if "signedRequest" in security or "accessToken" in security:
            return {"auth": SignAs(self.peer, self.server_name)}
        return {}
