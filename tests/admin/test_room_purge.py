"""The admin API's room deletion with Synapse's options: ``purge`` erases the room from
the database, ``new_room_user_id`` moves the local members to a new room."""

from __future__ import annotations

import sqlalchemy as sa

from storage.engine import create_engine
from storage.schema import (
    current_state,
    event_relations,
    event_search,
    events,
    receipts,
    redactions,
    room_aliases,
    room_members,
    room_state_meta,
    rooms,
    state_group_entries,
    state_groups,
)
from tests.admin.conftest import ADMIN, promote
from tests.admin.test_groups import group, services_of
from tests.helpers import Matrix, User, assert_error, q


async def rows_of_room(db_url: str, room_id: str) -> dict[str, int]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            counts = {}
            for table in (events, current_state, room_members, room_state_meta, rooms, state_groups,
                          room_aliases, receipts, event_relations, event_search):
                counts[table.name] = (await conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(table.c.room_id == room_id))).scalar_one()
            room_events = sa.select(events.c.event_id).where(events.c.room_id == room_id)
            groups = sa.select(state_groups.c.id).where(state_groups.c.room_id == room_id)
            counts["state_group_entries"] = (await conn.execute(sa.select(sa.func.count()).select_from(
                state_group_entries).where(state_group_entries.c.group_id.in_(groups)))).scalar_one()
            counts["redactions"] = (await conn.execute(sa.select(sa.func.count()).select_from(
                redactions).where(redactions.c.redacts.in_(room_events)))).scalar_one()
            return counts
    finally:
        await engine.dispose()


async def admin_delete(admin: User, room: str, body: dict) -> dict:
    started = await admin.hs.call("DELETE", f"{ADMIN}/v2/rooms/{q(room)}", body, token=admin.token)
    await services_of(admin.hs).deletions.wait(started["delete_id"])
    return await admin.get(f"{ADMIN}/v2/rooms/delete_status/{started['delete_id']}")


async def test_purge_erases_the_room(hs: Matrix, db_url: str) -> None:
    admin = await promote(hs, await hs.register("root"))
    owner, ann, ben, room = await group(hs)
    await owner.put(f"/directory/room/{q('#gone:' + hs.server_name)}", {"room_id": room})
    first = await owner.send(room, "hello")
    await ann.send(room, {"msgtype": "m.text", "body": "a reply",
                          "m.relates_to": {"rel_type": "m.thread", "event_id": first}})
    mistake = await ben.send(room, "oops")
    await ben.put(f"/rooms/{q(room)}/redact/{q(mistake)}/r1", {})
    await ann.post(f"/rooms/{q(room)}/receipt/m.read/{q(first)}", {})
    other = await owner.create_room(name="Kept")
    await owner.send(other, "still here")
    before = await rows_of_room(db_url, room)
    assert before["events"] > 5 and before["state_group_entries"] > 0 and before["receipts"] == 1

    status = await admin_delete(admin, room, {"message": "Closed by the admin"})  # purge is the default
    assert status["status"] == "complete"
    assert status["shutdown_room"]["purged"] is True
    assert set(status["shutdown_room"]["kicked_users"]) == {owner.user_id, ann.user_id, ben.user_id}
    assert await rows_of_room(db_url, room) == dict.fromkeys(before, 0)

    # The server has forgotten the room; the other room is untouched.
    assert_error(await admin.get(f"{ADMIN}/v1/rooms/{q(room)}", expect=404), "M_NOT_FOUND")
    assert_error(await admin.get(f"{ADMIN}/v1/rooms/{q(room)}/state", expect=404), "M_NOT_FOUND")
    assert_error(await ann.get(f"/rooms/{q(room)}/event/{q(first)}", expect=404), "M_NOT_FOUND")
    assert room not in [r["room_id"] for r in (await admin.get(f"{ADMIN}/v1/rooms"))["rooms"]]
    await hs.call("GET", f"/directory/room/{q('#gone:' + hs.server_name)}", expect=404)
    assert [e["content"]["body"] for e in (await owner.messages(other))["chunk"]
            if e["type"] == "m.room.message"] == ["still here"]
    for user in (owner, ann, ben):
        synced = await user.sync()
        assert room not in synced["rooms"]["join"] and room not in synced["rooms"]["leave"]
    # The status still answers after the purge; deleting again reports the same run.
    again = await admin.hs.call("DELETE", f"{ADMIN}/v2/rooms/{q(room)}", {}, token=admin.token)
    assert again["delete_id"] == status["delete_id"]


async def test_delete_without_purge_keeps_history(hs: Matrix, db_url: str) -> None:
    admin = await promote(hs, await hs.register("root"))
    owner, _ann, _ben, room = await group(hs)
    await owner.send(room, "kept")
    status = await admin_delete(admin, room, {"purge": False})
    assert status["status"] == "complete" and status["shutdown_room"]["purged"] is False
    assert (await rows_of_room(db_url, room))["events"] > 0
    chunk = (await admin.get(f"{ADMIN}/v1/rooms/{q(room)}/messages", params={"limit": "50"}))["chunk"]
    assert "kept" in [e["content"].get("body") for e in chunk]


async def test_new_room_user_id_moves_members_with_the_message(hs: Matrix) -> None:
    admin = await promote(hs, await hs.register("root"))
    mod = await hs.register("moderator")
    owner, ann, ben, room = await group(hs)
    alias = "#family:" + hs.server_name
    await owner.put(f"/directory/room/{q(alias)}", {"room_id": room})

    status = await admin_delete(admin, room, {
        "new_room_user_id": mod.user_id, "room_name": "Moved here", "message": "The group broke the rules",
    })
    assert status["status"] == "complete"
    result = status["shutdown_room"]
    new_room = result["new_room_id"]
    assert new_room and new_room != room
    assert result["local_aliases"] == [alias]
    for user in (owner, ann, ben):
        joined = await user.joined_rooms()
        assert new_room in joined and room not in joined
    assert await ann.state(new_room, "m.room.name") == {"name": "Moved here"}
    chunk = (await ann.messages(new_room))["chunk"]
    bodies = [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]
    assert bodies == ["The group broke the rules"]
    # The old alias leads to the new room; members read there but cannot post.
    assert (await hs.call("GET", f"/directory/room/{q(alias)}"))["room_id"] == new_room
    assert_error(await ben.send(new_room, "hi", expect=403), "M_FORBIDDEN")
    assert_error(await admin.get(f"{ADMIN}/v1/rooms/{q(room)}", expect=404), "M_NOT_FOUND")


async def test_bad_new_room_user_id_changes_nothing(hs: Matrix) -> None:
    admin = await promote(hs, await hs.register("root"))
    owner, _ann, _ben, room = await group(hs)
    for bad in ("@someone:elsewhere.test", hs.uid("nobody"), "not-a-user"):
        err = await admin.hs.call("DELETE", f"{ADMIN}/v2/rooms/{q(room)}", {"new_room_user_id": bad},
                                  token=admin.token, expect=400)
        assert_error(err, "M_INVALID_PARAM")
    assert_error(await admin.get(f"{ADMIN}/v2/rooms/{q(room)}/delete_status", expect=404), "M_NOT_FOUND")
    assert room in await owner.joined_rooms()
