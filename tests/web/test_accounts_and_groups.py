"""Accounts, groups and administration in the browser: registration and sign-in (also as
`name@server`), a group created, an admin appointed, an announcement posted, the group
dissolved by its owner; a server admin's broadcast."""

from __future__ import annotations

from typing import Any

from tests.web.harness import register, register_admin
from tests.web.test_chat import open_room, q


async def test_register_sign_out_and_sign_in_as_name_at_server(server_factory: Any, open_client: Any, shots: Any) -> None:
    hs = server_factory()
    page = await open_client(hs)
    assert await page.get_by_label("Homeserver URL").input_value() == hs.base_url  # the serving server
    await page.get_by_label("User name").fill("carol")
    await page.get_by_label("Password").fill("a long password")
    await shots.take(page, "register")
    await page.get_by_role("button", name="Create account").click()
    await page.get_by_text("@carol:web.test").wait_for()
    await page.get_by_text("live (WebSocket)").wait_for()

    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("User name").fill("carol@web.test")
    await page.get_by_label("Password").fill("not her password")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("alert").filter(has_text="M_FORBIDDEN").wait_for()
    await shots.take(page, "wrong-password")
    await page.get_by_label("Password").fill("a long password")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("@carol:web.test").wait_for()
    # Keyboard only: the conversation forms are reachable and labelled.
    await page.get_by_text("New chat or group").focus()
    await page.keyboard.press("Enter")
    await page.get_by_label("Chat with").wait_for()


async def test_owner_appoints_an_admin_posts_an_announcement_and_dissolves(
    server_factory: Any, open_client: Any, shots: Any,
) -> None:
    hs = server_factory()
    alice, bob = register(hs.base_url, "alice"), register(hs.base_url, "bob")
    a = await open_client(hs, alice)
    await a.get_by_text("New chat or group").click()
    await a.get_by_label("New group").fill("Project")
    await a.get_by_label("Members (optional)").fill("bob@web.test")
    await a.get_by_role("button", name="Create group").click()
    await a.get_by_role("heading", name="Project").wait_for()
    rooms = alice.call("GET", "/_matrix/client/v3/joined_rooms")["joined_rooms"]
    assert len(rooms) == 1
    room = rooms[0]
    bob.call("POST", f"/_matrix/client/v3/join/{q(room)}", {})

    b = await open_client(hs, bob)
    await open_room(b, "Project")

    await a.get_by_role("button", name="Details").click()
    role = a.get_by_label("Role of bob")
    await role.select_option("admin")
    await a.get_by_role("status").filter(has_text="bob is now admin").wait_for()
    members = alice.call("GET", f"/_tricolor/client/v1/rooms/{q(room)}/members")["members"]
    assert {m["user_id"]: m["role"] for m in members}[bob.user_id] == "admin"

    await a.get_by_label("Announcement").fill("Stand-up moves to 10:00")
    await a.get_by_role("button", name="Post announcement").click()
    await b.get_by_role("note").filter(has_text="Stand-up moves to 10:00").wait_for()
    await shots.take(a, "owner-details")
    await shots.take(b, "announcement-banner")

    # Bob, an admin now, sees the announcement form but no dissolve button.
    await b.get_by_role("button", name="Details").click()
    await b.get_by_role("button", name="Post announcement").wait_for()
    assert await b.get_by_role("button", name="Dissolve group").count() == 0

    await a.get_by_role("button", name="Dissolve group").click()
    await a.get_by_role("button", name="Yes, dissolve it for everyone").click()
    await b.get_by_text("You are no longer in this conversation.").wait_for()
    await shots.take(b, "dissolved")
    assert room not in bob.call("GET", "/_matrix/client/v3/joined_rooms")["joined_rooms"]


async def test_a_server_admin_broadcasts_and_others_see_no_admin_page(
    server_factory: Any, open_client: Any, shots: Any,
) -> None:
    hs = server_factory()
    root = register_admin(hs, "root")
    bob = register(hs.base_url, "bob")
    b = await open_client(hs, bob)
    await b.locator("#app[data-admin=no]").wait_for(state="attached")  # the client asked the server
    assert await b.get_by_role("button", name="Admin").count() == 0

    r = await open_client(hs, root)
    await r.get_by_role("button", name="Admin").click()
    await r.get_by_label("Notice to every user of this server").fill("Maintenance tonight at 22:00")
    await r.get_by_role("button", name="Broadcast").click()
    await r.get_by_role("status").filter(has_text="complete").wait_for()
    await shots.take(r, "broadcast")
    # Bob gets the notice in a server-notices conversation.
    await b.get_by_role("button", name="Accept invitation to Server Notices").click()
    await b.locator("li.message", has_text="Maintenance tonight at 22:00").wait_for()
    await shots.take(b, "notice-received")
