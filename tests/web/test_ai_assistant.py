"""The AI assistant in the browser: a PATIENT's question is answered (by the assistant
embedded in the homeserver, talking to the fake AI service) and the answer shows with
its AI badge; the room's DOCTOR sees the interaction record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer

from tests.ai_assistant.fake_ai import FakeAI
from tests.integration.conftest import _free_port
from tests.web.harness import register
from tests.web.test_chat import message, open_room, q, send

AI = "@ai-assistant:web.test"


@pytest.fixture
async def fake_ai(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[FakeAI]:
    ai = FakeAI()
    server = await aiohttp_server(ai.app())
    ai.url = str(server.make_url("")).rstrip("/")
    yield ai
    ai.release.set()


async def test_a_patients_question_is_answered_with_the_ai_badge(
    server_factory: Any, open_client: Any, shots: Any, fake_ai: FakeAI, tmp_path: Path,
) -> None:
    port = _free_port()
    registration = tmp_path / "ai.registration.yaml"
    registration.write_text(yaml.safe_dump({
        "id": "ai-assistant", "url": f"http://127.0.0.1:{port}/_tricolor/ai-assistant", "as_token": "web-ai-as",
        "hs_token": "web-ai-hs", "sender_localpart": "ai-assistant", "rate_limited": False,
        "namespaces": {"users": [{"exclusive": True, "regex": "@ai-assistant:web\\\\.test"}]},
    }))
    assistant = tmp_path / "ai.yaml"
    assistant.write_text(yaml.safe_dump({
        "homeserver_url": f"http://127.0.0.1:{port}", "registration": str(registration), "display_name": "Dr. Bot",
        "providers": {"simple": {"kind": "simple", "url": f"{fake_ai.url}/simple"}},
    }))
    # The fake AI answers from this test's event loop: start the server off the loop.
    hs = await asyncio.to_thread(
        server_factory, port=port,
        app_services={"config_files": [str(registration)], "retry_min_ms": 50, "retry_max_ms": 400},
        ai_assistant={"config_file": str(assistant)},
    )
    doctor, patient = register(hs.base_url, "doc"), register(hs.base_url, "pat")
    room = doctor.call("POST", "/_matrix/client/v3/createRoom", {
        "preset": "private_chat", "name": "Consultation", "invite": [patient.user_id],
    })["room_id"]
    state = f"/_matrix/client/v3/rooms/{q(room)}/state"
    doctor.call("PUT", f"{state}/tricolor.ai/", {"enabled": True, "provider": "simple"})
    patient.call("POST", f"/_matrix/client/v3/join/{q(room)}", {})
    doctor.call("PUT", f"{state}/tricolor.member_role/{q('user:' + patient.user_id)}", {"role": "PATIENT"})
    # Opting in invites the assistant and gives it AI_ASSISTANT (issue 11); it joins when invited.
    for _ in range(400):  # bounded wait
        joined = doctor.call("GET", f"/_matrix/client/v3/rooms/{q(room)}/joined_members")["joined"]
        if AI in joined:
            break
        await asyncio.sleep(0.05)
    assert AI in joined, "the assistant did not join"

    p = await open_client(hs, patient)
    await open_room(p, "Consultation")
    await send(p, "I have a headache")
    answer = message(p, "echo: I have a headache")
    await answer.wait_for()
    await answer.locator(".badge.ai", has_text="AI").wait_for()
    # The patient's own message carries no badge.
    assert await message(p, "I have a headache").filter(has_not_text="echo").locator(".badge.ai").count() == 0
    await shots.take(p, "ai-answer-with-badge")

    d = await open_client(hs, doctor)
    await open_room(d, "Consultation")
    await message(d, "echo: I have a headache").locator(".badge.ai").wait_for()
    await d.get_by_role("button", name="Details").click()
    records = d.get_by_role("region", name="AI interaction records")
    await records.get_by_role("cell", name="success").wait_for()
    await shots.take(d, "doctor-sees-records")

    # The patient is no DOCTOR: no records for them.
    await p.get_by_role("button", name="Details").click()
    await p.get_by_role("heading", name="Members").wait_for()
    assert await p.get_by_role("region", name="AI interaction records").count() == 0
