"""Two users of one server chat in the browser: messages, typing, read receipts, recall
(and its window), replies, edits, an image with its thumbnail, presence, unread counts."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image

from tests.web.harness import UI_TIMEOUT_MS, register


def q(value: str) -> str:
    return quote(value, safe="")


def direct_chat(alice: Any, bob: Any) -> str:
    """A direct chat between the two, made through the API (the UI's own is tested below)."""
    room = alice.call("POST", "/_matrix/client/v3/createRoom", {
        "preset": "trusted_private_chat", "is_direct": True, "invite": [bob.user_id],
    })["room_id"]
    bob.call("POST", f"/_matrix/client/v3/join/{q(room)}", {})
    return room


def message(page: Any, text: str) -> Any:
    return page.locator("li.message", has_text=text)


async def open_room(page: Any, name: str) -> None:
    await page.get_by_role("button", name=name).first.click()
    await page.get_by_role("textbox", name="Message").wait_for()


async def send(page: Any, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    await box.fill(text)
    await box.press("Enter")


async def test_two_users_chat_see_typing_receipts_and_recall(server_factory: Any, open_client: Any, shots: Any) -> None:
    # m.emote gets a short recall window so "too late" can be shown without a long wait.
    hs = server_factory(recall_windows_ms={"m.emote": 1500, "m.file": 10_800_000})
    alice, bob = register(hs.base_url, "alice"), register(hs.base_url, "bob")
    # A group: Alice owns it, Bob is a member, so the recall window applies to Bob (owners
    # and admins may remove any message at any time).
    room = alice.call("POST", "/_matrix/client/v3/createRoom", {
        "preset": "private_chat", "name": "Lunch", "invite": [bob.user_id],
    })["room_id"]
    bob.call("POST", f"/_matrix/client/v3/join/{q(room)}", {})
    a = await open_client(hs, alice)
    b = await open_client(hs, bob)
    await a.get_by_text("live (WebSocket)").wait_for()
    await open_room(a, "Lunch")
    await open_room(b, "Lunch")

    await send(a, "Hello Bob, lunch today?")
    await message(b, "Hello Bob, lunch today?").wait_for()
    await shots.take(b, "bob-receives")

    # Typing: Bob types without sending, Alice sees it.
    await b.get_by_role("textbox", name="Message").type("Sure, wh")
    await a.get_by_text("bob is typing…").wait_for()
    await b.get_by_role("textbox", name="Message").fill("")
    # Receipts: Bob has the chat open, so he has read it.
    await message(a, "Hello Bob, lunch today?").get_by_text("read by 1").wait_for()
    await shots.take(a, "typing-and-read-by-1")

    # Reply and edit from Bob's side.
    await message(b, "Hello Bob, lunch today?").hover()
    await message(b, "Hello Bob, lunch today?").get_by_role("button", name="Reply").click()
    await b.get_by_role("textbox", name="Message").fill("Sure, at noon")
    await b.get_by_role("textbox", name="Message").press("Enter")
    reply = message(a, "Sure, at noon")
    await reply.locator("blockquote", has_text="Hello Bob, lunch today?").wait_for()
    await b.get_by_role("textbox", name="Message").press("ArrowUp")  # edit the last message
    await b.get_by_role("textbox", name="Message").fill("Sure, at half past twelve")
    await b.get_by_role("textbox", name="Message").press("Enter")
    await message(a, "Sure, at half past twelve").get_by_text("(edited)").wait_for()
    await shots.take(a, "reply-and-edit")

    # Recall within the window: both see the trace, the text is gone.
    await send(b, "Oops, wrong chat")
    await message(a, "Oops, wrong chat").wait_for()
    await message(b, "Oops, wrong chat").hover()
    await message(b, "Oops, wrong chat").get_by_role("button", name="Recall").click()
    await a.locator("li.message.recalled", has_text="Message recalled").wait_for()
    assert await message(a, "Oops, wrong chat").count() == 0
    await shots.take(a, "recalled")

    # Too late: an emote older than its 1.5 s window cannot be recalled, and says why.
    await send(b, "/me waves")
    emote = message(b, "* bob waves")
    await emote.wait_for()
    deadline = time.monotonic() + 30
    ts = None
    while ts is None or time.time() * 1000 - ts < 1600:  # the window passes (a bounded wait on a condition)
        assert time.monotonic() < deadline, "the emote was not stored, or its window did not pass"
        if ts is None:
            sent = bob.call("GET", f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=10")
            ts = next((e["origin_server_ts"] for e in sent["chunk"] if e["content"].get("msgtype") == "m.emote"), None)
        await b.wait_for_timeout(100)
    await message(a, "* bob waves").wait_for()
    await emote.hover()
    await emote.get_by_role("button", name="Recall").click()
    await b.get_by_role("alert").filter(has_text="can only be recalled within").wait_for()
    await shots.take(b, "recall-too-late")
    assert await message(a, "* bob waves").count() == 1


async def test_an_image_is_uploaded_shown_as_thumbnail_and_downloaded(
    server_factory: Any, open_client: Any, shots: Any, tmp_path: Path,
) -> None:
    hs = server_factory()
    alice, bob = register(hs.base_url, "alice"), register(hs.base_url, "bob")
    direct_chat(alice, bob)
    a = await open_client(hs, alice)
    b = await open_client(hs, bob)
    await open_room(a, "bob")
    await open_room(b, "alice")

    # Presence: Bob steps away, Alice sees it in the chat header.
    await b.get_by_label("Your status").select_option("unavailable")
    await a.locator(".presence-line", has_text="unavailable").wait_for()

    picture = tmp_path / "sunset.png"
    image = Image.new("RGB", (900, 600), (240, 120, 40))
    for x in range(900):
        image.putpixel((x, 300), (20, 20, 160))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    picture.write_bytes(buf.getvalue())
    await a.locator("input[type=file]").set_input_files(str(picture))

    thumb = b.locator("li.message img.thumb[alt='sunset.png']")
    await thumb.wait_for()
    await b.wait_for_function(
        "() => { const i = document.querySelector(\"img.thumb[alt='sunset.png']\"); return i && i.complete && i.naturalWidth > 0; }",
        timeout=UI_TIMEOUT_MS,
    )
    natural = await thumb.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert natural[0] <= 320 and natural[1] <= 240, f"a thumbnail, not the 900x600 original: {natural}"
    await shots.take(b, "thumbnail")

    async with b.expect_download() as download_info:
        await b.get_by_role("button", name="Download sunset.png").click()
    download = await download_info.value
    saved = tmp_path / "downloaded.png"
    await download.save_as(str(saved))
    assert saved.read_bytes() == picture.read_bytes()


async def test_phone_width_and_keyboard_only(server_factory: Any, open_client: Any, shots: Any) -> None:
    """At a phone's width one pane shows at a time; everything works from the keyboard."""
    hs = server_factory()
    alice, bob = register(hs.base_url, "alice"), register(hs.base_url, "bob")
    direct_chat(alice, bob)
    bob.call("PUT", "/_matrix/client/v3/presence/" + q(bob.user_id) + "/status", {"presence": "online"})
    a = await open_client(hs, alice, width=390, height=800)
    room_button = a.get_by_role("button", name="bob")
    await room_button.wait_for()
    composer = a.get_by_role("textbox", name="Message")
    assert not await composer.is_visible()
    await shots.take(a, "phone-list")

    await room_button.focus()
    await a.keyboard.press("Enter")  # opens the chat, focus lands in the composer
    await composer.wait_for()
    assert await composer.evaluate("el => el === document.activeElement")
    assert not await room_button.is_visible()
    await a.keyboard.type("Typed on a phone")
    await a.keyboard.press("Enter")
    await message(a, "Typed on a phone").wait_for()
    await shots.take(a, "phone-chat")

    await a.get_by_role("button", name="Back to conversations").click()
    await room_button.wait_for()
    assert not await composer.is_visible()


async def test_history_is_loaded_when_scrolled_back(server_factory: Any, open_client: Any, shots: Any) -> None:
    hs = server_factory()
    alice, bob = register(hs.base_url, "alice"), register(hs.base_url, "bob")
    room = direct_chat(alice, bob)
    for i in range(1, 71):
        bob.call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/h{i}",
                 {"msgtype": "m.text", "body": f"history line {i}"})
    a = await open_client(hs, alice)
    # The list shows the unread count and the last message before the chat is opened.
    await a.get_by_label("70 unread").wait_for()
    await a.get_by_role("button", name="bob").get_by_text("bob: history line 70").wait_for()
    await open_room(a, "bob")
    await message(a, "history line 70").wait_for()
    assert await message(a, "history line 1").count() == 0  # only the latest page came with sync
    for _ in range(20):  # scroll to the top until the first line is there (bounded)
        if await a.get_by_text("history line 1", exact=True).count():
            break
        await a.locator(".scroller").evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
        await a.wait_for_timeout(250)
    await a.get_by_text("history line 1", exact=True).wait_for()
    await a.get_by_text("alice joined").wait_for()
    assert not await a.get_by_role("button", name="Load older messages").is_visible()
    bodies = await a.locator("li.message p.body").all_inner_texts()
    assert bodies == [f"history line {i}" for i in range(1, 71)]  # in order, none twice
    await shots.take(a, "history")
