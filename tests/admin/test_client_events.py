"""Client event reports (POST /_tricolor/client/v1/events) and the OpenAPI docs."""

from __future__ import annotations

from tests.admin.conftest import promote
from tests.admin.test_groups import services_of
from tests.helpers import Matrix, assert_error

T = "/_tricolor"


async def test_report_and_list_client_events(hs: Matrix) -> None:
    admin = await promote(hs, await hs.register("root"))
    alice, bob = await hs.users("alice", "bob")
    heard = []
    services_of(hs).client_events._listeners.append(heard.append)
    got = await alice.post(f"{T}/client/v1/events", {"type": "app.opened", "content": {"screen": "chats"}, "ts": 1234})
    assert got["id"] > 0 and got["received_ts"] > 0
    await bob.post(f"{T}/client/v1/events", {"type": "app.opened", "content": {}})
    await alice.post(f"{T}/client/v1/events", {"type": "call.quality", "content": {"mos": 4.2}})
    assert [(e.user_id, e.type) for e in heard] == [
        (alice.user_id, "app.opened"), (bob.user_id, "app.opened"), (alice.user_id, "call.quality"),
    ]
    err = await alice.get(f"{T}/admin/v1/client_events", expect=403)
    assert_error(err, "M_FORBIDDEN")
    listed = await admin.get(f"{T}/admin/v1/client_events")
    assert [(e["user_id"], e["type"]) for e in listed["events"]] == [
        (alice.user_id, "app.opened"), (bob.user_id, "app.opened"), (alice.user_id, "call.quality"),
    ]
    first = listed["events"][0]
    assert first["device_id"] == alice.device_id and first["client_ts"] == 1234 and first["payload"] == {"screen": "chats"}
    by_user = await admin.get(f"{T}/admin/v1/client_events", params={"user_id": alice.user_id, "type": "call.quality"})
    assert [e["payload"] for e in by_user["events"]] == [{"mos": 4.2}]
    page = await admin.get(f"{T}/admin/v1/client_events", params={"limit": 1})
    assert page["next_token"] == first["id"]
    rest = await admin.get(f"{T}/admin/v1/client_events", params={"from": page["next_token"]})
    assert len(rest["events"]) == 2


async def test_bad_client_events_are_refused_and_not_stored(hs: Matrix) -> None:
    admin = await promote(hs, await hs.register("root"))
    alice = await hs.register("alice")
    assert_error(await hs.call("POST", f"{T}/client/v1/events", {"type": "x", "content": {}}, expect=401), "M_MISSING_TOKEN")
    assert_error(await alice.post(f"{T}/client/v1/events", {"content": {}}, expect=400), "M_MISSING_PARAM")
    assert_error(await alice.post(f"{T}/client/v1/events", {"type": "x", "content": []}, expect=400), "M_BAD_JSON")
    assert_error(await alice.post(f"{T}/client/v1/events", {"type": "", "content": {}}, expect=400), "M_INVALID_PARAM")
    big = {"type": "x", "content": {"blob": "a" * 70_000}}
    assert_error(await alice.post(f"{T}/client/v1/events", big, expect=413), "M_TOO_LARGE")
    assert (await admin.get(f"{T}/admin/v1/client_events"))["events"] == []


async def test_openapi_is_generated_from_the_handlers_schemas(hs: Matrix) -> None:
    doc = await hs.call("GET", f"{T}/docs/openapi.json")
    assert doc["openapi"].startswith("3.")
    role = doc["paths"]["/_tricolor/client/v1/rooms/{room_id}/roles/{user_id}"]["put"]
    ref = role["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["properties"]["role"] == {"enum": ["admin", "member"]} and schema["required"] == ["role"]
    users = doc["paths"]["/_synapse/admin/{v}/users"]["get"]
    assert {"from", "limit", "name", "deactivated", "admins"} <= {p["name"] for p in users["parameters"]}
    assert "/_tricolor/client/v1/events" in doc["paths"] and "/_tricolor/admin/v1/broadcast" in doc["paths"]
    assert "spec.matrix.org" in doc["externalDocs"]["url"]
    page = await hs.client.get(f"{T}/docs")
    text = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    assert "/_tricolor/client/v1/rooms/{room_id}/announcement" in text and "openapi.json" in text
