"""Groups: roles on power levels, promotion rules, ownership transfer, leaving,
announcements (state, /sync, history) and dissolving."""

from __future__ import annotations

from tests.admin.conftest import ADMIN, promote
from tests.helpers import Matrix, User, assert_error, q

T = "/_tricolor/client/v1"


async def group(hs: Matrix) -> tuple[User, User, User, str]:
    owner, ann, ben = await hs.users("owner", "ann", "ben")
    room = await owner.create_room(name="Family", preset="public_chat")
    await ann.join(room)
    await ben.join(room)
    return owner, ann, ben, room


def roles(listing: dict) -> dict[str, str]:
    return {m["user_id"]: m["role"] for m in listing["members"]}


async def test_members_with_roles_and_promotion_rules(hs: Matrix) -> None:
    owner, ann, ben, room = await group(hs)
    listing = await ann.get(f"{T}/rooms/{q(room)}/members")
    assert roles(listing) == {owner.user_id: "owner", ann.user_id: "member", ben.user_id: "member"}
    assert listing["members"][0]["user_id"] == owner.user_id  # owner first

    await owner.put(f"{T}/rooms/{q(room)}/roles/{q(ann.user_id)}", {"role": "admin"})
    assert roles(await ben.get(f"{T}/rooms/{q(room)}/members"))[ann.user_id] == "admin"
    # Real clients see it as a power level.
    assert (await ben.state(room, "m.room.power_levels"))["users"][ann.user_id] == 50

    # Only the owner appoints admins; an admin manages members (kicks) but appoints no one.
    err = await ann.put(f"{T}/rooms/{q(room)}/roles/{q(ben.user_id)}", {"role": "admin"}, expect=403)
    assert_error(err, "M_FORBIDDEN")
    await ann.post(f"/rooms/{q(room)}/kick", {"user_id": ben.user_id})
    err = await ben.get(f"{T}/rooms/{q(room)}/members", expect=403)
    assert_error(err, "M_FORBIDDEN")

    await owner.put(f"{T}/rooms/{q(room)}/roles/{q(ann.user_id)}", {"role": "member"})
    assert roles(await owner.get(f"{T}/rooms/{q(room)}/members"))[ann.user_id] == "member"
    err = await owner.put(f"{T}/rooms/{q(room)}/roles/{q(ann.user_id)}", {"role": "owner"}, expect=400)
    assert_error(err, "M_INVALID_PARAM")
    err = await owner.put(f"{T}/rooms/{q(room)}/roles/{q(ben.user_id)}", {"role": "admin"}, expect=404)
    assert_error(err, "M_NOT_FOUND")


async def test_transfer_ownership_then_leave(hs: Matrix) -> None:
    owner, ann, ben, room = await group(hs)
    # The only owner cannot walk away from members.
    err = await owner.post(f"{T}/rooms/{q(room)}/leave", expect=403)
    assert_error(err, "M_FORBIDDEN")
    err = await ann.post(f"{T}/rooms/{q(room)}/transfer_ownership", {"user_id": ben.user_id}, expect=403)
    assert_error(err, "M_FORBIDDEN")
    await owner.post(f"{T}/rooms/{q(room)}/transfer_ownership", {"user_id": ann.user_id})
    listed = roles(await ben.get(f"{T}/rooms/{q(room)}/members"))
    # The old owner becomes an admin; in a version 12 room its creator cannot be demoted
    # (rooms/v12: creators outrank every power level), so it stays an owner beside the new one.
    created = await owner.state(room, "m.room.create")
    was = "owner" if created.get("room_version") == "12" else "admin"
    assert listed[ann.user_id] == "owner" and listed[owner.user_id] == was
    await owner.post(f"{T}/rooms/{q(room)}/leave")
    assert room not in await owner.joined_rooms()
    await ben.post(f"{T}/rooms/{q(room)}/leave")
    # The last member, the owner, may leave an empty group.
    await ann.post(f"{T}/rooms/{q(room)}/leave")


async def test_announcements_by_admins_in_sync_with_history(hs: Matrix) -> None:
    owner, ann, ben, room = await group(hs)
    since = (await ben.sync())["next_batch"]
    err = await ben.put(f"{T}/rooms/{q(room)}/announcement", {"text": "I rule"}, expect=403)
    assert_error(err, "M_FORBIDDEN")
    await owner.put(f"{T}/rooms/{q(room)}/announcement", {"text": "Dinner at 7"})
    await owner.put(f"{T}/rooms/{q(room)}/roles/{q(ann.user_id)}", {"role": "admin"})
    await ann.put(f"{T}/rooms/{q(room)}/announcement", {"text": "Dinner at 8"})

    synced = await ben.sync(since)
    state_like = synced["rooms"]["join"][room]["timeline"]["events"]
    texts = [e["content"]["text"] for e in state_like if e["type"] == "tricolor.announcement"]
    assert texts == ["Dinner at 7", "Dinner at 8"]

    got = await ben.get(f"{T}/rooms/{q(room)}/announcement")
    assert got["current"]["content"]["text"] == "Dinner at 8"
    assert got["current"]["content"]["author"] == ann.user_id
    assert [e["content"]["text"] for e in got["history"]] == ["Dinner at 8", "Dinner at 7"]
    assert (await ben.state(room, "tricolor.announcement"))["text"] == "Dinner at 8"
    err = await ann.put(f"{T}/rooms/{q(room)}/announcement", {"text": 7}, expect=400)
    assert_error(err, "M_BAD_JSON")


async def test_owner_dissolves_group(hs: Matrix) -> None:
    owner, ann, ben, room = await group(hs)
    await owner.put(f"/directory/room/{q('#family:' + hs.server_name)}", {"room_id": room})
    await owner.put(f"/directory/list/room/{q(room)}", {"visibility": "public"})
    since = (await ann.sync())["next_batch"]
    err = await ann.post(f"{T}/rooms/{q(room)}/dissolve", {}, expect=403)
    assert_error(err, "M_FORBIDDEN")
    started = await owner.post(f"{T}/rooms/{q(room)}/dissolve", {"message": "Bye all"})
    again = await owner.post(f"{T}/rooms/{q(room)}/dissolve", {})
    assert again["delete_id"] == started["delete_id"]  # idempotent
    await services_of(hs).deletions.wait(started["delete_id"])
    status = await owner.get(f"{T}/rooms/{q(room)}/dissolve")
    result = status["results"][0]
    assert result["status"] == "complete"
    assert set(result["shutdown_room"]["kicked_users"]) == {owner.user_id, ann.user_id, ben.user_id}
    assert result["shutdown_room"]["local_aliases"] == ["#family:" + hs.server_name]

    synced = await ann.sync(since)
    left = synced["rooms"]["leave"][room]["timeline"]["events"]
    assert any(e["type"] == "m.room.message" and e["content"]["body"] == "Bye all" for e in left)
    assert any(e["type"] == "m.room.join_rules" and e["content"]["join_rule"] == "invite" for e in left)
    mine = next(e for e in left if e["type"] == "m.room.member" and e["state_key"] == ann.user_id)
    assert mine["content"]["membership"] == "leave" and mine["content"]["reason"] == "Bye all"
    for user in (owner, ann, ben):
        assert room not in await user.joined_rooms()
    await hs.call("GET", f"/directory/room/{q('#family:' + hs.server_name)}", expect=404)
    public = await hs.call("GET", "/publicRooms")
    assert room not in [r["room_id"] for r in public["chunk"]]
    # Nobody of this server is left in it: the room is gone from here.
    assert_error(await ben.join(room, expect=404), "M_NOT_FOUND")


async def test_admin_api_deletes_and_blocks_a_room(hs: Matrix) -> None:
    admin = await promote(hs, await hs.register("root"))
    owner, ann, _ben, room = await group(hs)
    err = await owner.delete(f"{ADMIN}/v2/rooms/{q(room)}", expect=403)
    assert_error(err, "M_FORBIDDEN")
    started = await admin.hs.call("DELETE", f"{ADMIN}/v2/rooms/{q(room)}", {"block": True, "purge": False, "message": "Closed"}, token=admin.token)
    await services_of(hs).deletions.wait(started["delete_id"])
    status = await admin.get(f"{ADMIN}/v2/rooms/{q(room)}/delete_status")
    assert status["results"][0]["status"] == "complete"
    by_id = await admin.get(f"{ADMIN}/v2/rooms/delete_status/{started['delete_id']}")
    assert by_id["room_id"] == room and by_id["status"] == "complete"
    assert await admin.get(f"{ADMIN}/v1/rooms/{q(room)}/block") == {"block": True, "user_id": admin.user_id}
    assert (await admin.get(f"{ADMIN}/v1/rooms/{q(room)}/members"))["total"] == 0
    assert_error(await ann.join(room, expect=403), "M_FORBIDDEN")
    err = await admin.get(f"{ADMIN}/v2/rooms/{q('!none:hs.test')}/delete_status", expect=404)
    assert_error(err, "M_NOT_FOUND")


def services_of(hs: Matrix):  # type: ignore[no-untyped-def]
    from aiohttp import web

    from client_api.http import SERVICES

    for resource in hs.client.app.router.resources():  # type: ignore[union-attr]
        if isinstance(resource, web.PrefixedSubAppResource) and SERVICES in resource._app:
            return resource._app[SERVICES]
    raise AssertionError("no services")
