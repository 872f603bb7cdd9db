"""Every server-server operation of spec v1.19 (docs/spec/server-server-operations-v1.19.tsv)
is served by a running server: asked as a peer would, with real ids, none answers 404
M_UNRECOGNIZED or 405. Bad bodies may be refused (400/403): that is still the operation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from homeserver.services.clock import now_ms
from tests.federation.test_hostile_peer import (  # noqa: F401  (fixtures)
    EVIL,
    VICTIM,
    World,
    peer,
    raw,
    victim,
    world,
)
from tests.helpers import q

OPERATIONS = Path(__file__).parents[2] / "docs" / "spec" / "server-server-operations-v1.19.tsv"


def _operations() -> list[tuple[str, str, str]]:
    rows = []
    for line in OPERATIONS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            method, path, operation_id = line.split("\t")
            rows.append((method, path, operation_id))
    return rows


# Not served, on purpose or not yet (each must answer 404 M_UNRECOGNIZED, so the list
# stays honest: serving one of these makes its test fail until it moves out of here).
NOT_SERVED = {
    # Only policy servers implement it ("otherwise optional", Unsupported Endpoints).
    "askPolicyServerToSign": "this server is not a policy server",
    # Third-party (email) invites need identity-server support, which Tricolor lacks.
    "onBindThirdPartyIdentifier": "no identity-server support",
    "exchangeThirdPartyInvite": "no identity-server support",
    # Delegation is configured at the web server in front of Tricolor.
    "getWellKnown": "served by the reverse proxy, not the homeserver",
}


def test_the_list_holds_the_36_operations() -> None:
    ops = _operations()
    assert len(ops) == 36 and len({o[2] for o in ops}) == 36


async def _request(w: World, method: str, path: str, operation_id: str) -> Any:
    alice = w.alice.user_id
    event_id = await w.mallory_says("an event to ask about")
    upload = await w.victim.raw_bytes(
        "POST", "/_matrix/media/v3/upload", b"hello", token=w.alice.token,
        headers={"Content-Type": "text/plain"},
    )
    media_id = json.loads(upload.body)["content_uri"].rsplit("/", 1)[1]
    alias = f"#ops{now_ms()}:{VICTIM}"
    await w.alice.put(f"/directory/room/{q(alias)}", {"room_id": w.room})
    params = {
        "roomId": w.room, "eventId": event_id, "userId": w.peer.user("eve"), "txnId": f"ops{now_ms()}",
        "mediaId": media_id, "serverName": VICTIM, "queryType": "profile",
    }
    if operation_id == "getUserDevices":
        params["userId"] = alice
    for name, value in params.items():
        path = path.replace("{" + name + "}", q(value))
    query = {
        "backfillRoom": f"?v={q(event_id)}&limit=2", "makeJoin": "?ver=10", "makeKnock": "?ver=10",
        "getRoomState": f"?event_id={q(event_id)}", "getRoomStateIds": f"?event_id={q(event_id)}",
        "getEventByTimestamp": f"?ts={now_ms()}&dir=b", "queryProfile": f"?user_id={q(alice)}",
        "queryInfo": f"?user_id={q(alice)}", "queryRoomDirectory": f"?room_alias={q(alias)}",
        "exchangeOpenIdToken": "?access_token=nonsense",
    }.get(operation_id, "")
    body: Any = {
        "sendTransaction": {"origin": EVIL, "origin_server_ts": now_ms(), "pdus": []},
        "getMissingPreviousEvents": {"earliest_events": [], "latest_events": [event_id], "limit": 3},
        "queryPublicRooms": {"limit": 5},
        "claimUserEncryptionKeys": {"one_time_keys": {}},
        "queryUserEncryptionKeys": {"device_keys": {alice: []}},
        "bulkPerspectivesKeyQuery": {"server_keys": {VICTIM: {}}},
    }.get(operation_id, {} if method in ("PUT", "POST") else None)
    target = path + query
    if target.startswith("/_matrix/federation/"):
        return await (w.fed(method, target, body) if body is not None else w.fed(method, target))
    return await raw(w.victim, method, target, body) if body is not None else await raw(w.victim, method, target)


@pytest.mark.parametrize("operation", _operations(), ids=lambda o: o[2])
async def test_operation_is_served(world: World, operation: tuple[str, str, str]) -> None:  # noqa: F811
    method, path, operation_id = operation
    r = await _request(world, method, path, operation_id)
    errcode = r.json.get("errcode") if isinstance(r.json, dict) else None
    if operation_id in NOT_SERVED:
        assert (r.status, errcode) == (404, "M_UNRECOGNIZED"), (operation_id, r.status, r.text)
        return
    assert r.status not in (404, 405) and errcode != "M_UNRECOGNIZED", (operation_id, r.status, r.text)
