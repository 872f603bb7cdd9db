"""The AI assistant end to end: homeserver, the assistant application service and a
fake AI service. Replies are seen over /sync and over the WebSocket transport."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import bcrypt
import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.exposition import generate_latest

from config.schema import AiAssistantConfig, AppServicesConfig, HomeserverConfig
from homeserver.http import observability
from storage.engine import create_engine
from storage.stores.users import UserStore
from tests.ai_assistant.conftest import AI, Deployment, make_group, records, replies_to, room_events
from tests.ai_assistant.fake_ai import FakeAI
from tests.appservice.conftest import free_port, wait_until
from tests.helpers import PASSWORD, Matrix, User, q, timeline
from tests.ws_client import WS_PATH, WsClient

Deploy = Callable[..., Awaitable[Deployment]]


async def reply_in_sync(user: User, room: str, event_id: str) -> dict[str, Any]:
    """Follow /sync until the assistant's reply to `event_id` arrives (bounded)."""
    since = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while loop.time() < deadline:
        got = await user.sync(since, timeout=2000)
        since = got["next_batch"]
        found = replies_to(timeline(got, room), event_id)
        if found:
            return found[0]
    raise AssertionError("no reply over /sync")


async def test_a_patient_message_is_answered_in_the_room(deploy: Deploy) -> None:
    dep = await deploy()
    g = await make_group(dep.hs)
    await g.patient.send(g.room, "I have had a headache since Monday")
    await g.doctor.send(g.room, "Please describe it")  # history for the next question
    question = await g.patient.send(g.room, "It is worse in the morning")
    reply = await reply_in_sync(g.doctor, g.room, question)
    assert reply["content"]["msgtype"] == "m.notice"
    assert reply["content"]["body"] == "echo: It is worse in the morning"
    sent = dep.ai.requests[-1]
    assert sent["message"] == "It is worse in the morning"
    assert {"role": "user", "content": "Please describe it"} in sent["history"]
    assert sent["history"][-1] == {"role": "user", "content": "Please describe it"}
    # the assistant shows under its configured name and marked itself AI_ASSISTANT
    assert (await g.doctor.get(f"/profile/{q(AI)}"))["displayname"] == "Dr. Bot"
    # the opt-in made the doctor give the assistant its role (it has no power to itself)
    role = await g.doctor.get(f"/rooms/{q(g.room)}/state/tricolor.member_role/{q('user:' + AI)}", params={"format": "event"})
    assert role["content"] == {"role": "AI_ASSISTANT"} and role["sender"] == g.doctor.user_id

    async def recorded() -> bool:
        chunk = (await records(g.doctor, g.room))["chunk"]
        return any(r["user_event_id"] == question and r["status"] == "success" for r in chunk)

    await wait_until(recorded, "the success record")
    rec = next(r for r in (await records(g.doctor, g.room))["chunk"] if r["user_event_id"] == question)
    assert rec["reply_event_id"] == reply["event_id"]
    assert rec["provider"] == "simple" and rec["user_id"] == g.patient.user_id
    assert rec["request"]["message"] == "It is worse in the morning"
    assert rec["response"] == {"reply": "echo: It is worse in the morning"}
    assert isinstance(rec["duration_ms"], int) and rec["error"] is None


async def test_doctors_and_rooms_without_opt_in_send_nothing(deploy: Deploy) -> None:
    dep = await deploy()
    g = await make_group(dep.hs)
    closed = await make_group(dep.hs, opt_in=False, names=("doc2", "pat2"))
    await g.doctor.send(g.room, "doctor's note: not for the AI")
    await closed.patient.send(closed.room, "private: no opt-in here")
    unassigned = (await dep.hs.users("visitor"))[0]
    await g.doctor.invite(g.room, unassigned)
    await unassigned.join(g.room)
    await unassigned.send(g.room, "a member without a role")
    marker = await g.patient.send(g.room, "marker")  # after the others in the same queue
    await reply_in_sync(g.patient, g.room, marker)
    assert [FakeMessage.of(r) for r in dep.ai.requests] == ["marker"]
    assert replies_to(await room_events(closed.doctor, closed.room), "") == []
    assert [e for e in await room_events(closed.doctor, closed.room) if e["sender"] == AI and e["type"] == "m.room.message"] == []


class FakeMessage:
    @staticmethod
    def of(body: dict[str, Any]) -> str:
        return str(body.get("message") or body["messages"][-1]["content"])


async def test_records_are_listed_for_doctors_room_admins_and_server_admins(
    deploy: Deploy, db_url: str,
) -> None:
    dep = await deploy()
    g = await make_group(dep.hs)
    asked = await g.patient.send(g.room, "question one")
    await reply_in_sync(g.doctor, g.room, asked)
    err = await records(g.patient, g.room, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    page = await g.doctor.get(f"/_tricolor/client/v1/rooms/{q(g.room)}/ai/interactions", params={"limit": 1})
    assert len(page["chunk"]) == 1
    # a patient cannot write records (only the assistant's as_token can)
    await g.patient.post(f"/_tricolor/client/v1/rooms/{q(g.room)}/ai/interactions",
                         {"user_event_id": asked, "provider": "x"}, expect=403)
    # server admins: the admin listing; others are refused
    engine = create_engine(db_url)
    try:
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        await UserStore(engine).create_user("@root:hs.test", hashed, 0, True, displayname="root")
    finally:
        await engine.dispose()
    root = await dep.hs.login_user("root")

    # The assistant marks the record a success just after posting the reply seen above.
    async def succeeded() -> bool:
        listing = await root.get("/_tricolor/admin/v1/ai/interactions", params={"status": "success"})
        return [r["user_event_id"] for r in listing["chunk"]] == [asked]

    await wait_until(succeeded, "the record marked a success")
    await g.doctor.get("/_tricolor/admin/v1/ai/interactions", expect=403)
    await root.get("/_tricolor/admin/v1/ai/interactions", params={"status": "weird"}, expect=400)


async def test_failures_are_recorded_and_retried_only_when_safe(deploy: Deploy) -> None:
    dep = await deploy()
    g = await make_group(dep.hs)

    async def failed(event_id: str) -> dict[str, Any]:
        async def done() -> bool:
            return any(r["user_event_id"] == event_id and r["status"] == "failed"
                       for r in (await records(g.doctor, g.room))["chunk"])

        await wait_until(done, "a failed record")
        return next(r for r in (await records(g.doctor, g.room))["chunk"] if r["user_event_id"] == event_id)

    dep.ai.mode = "error500"
    rec = await failed(await g.patient.send(g.room, "server error please"))
    assert "HTTP 500" in rec["error"]
    assert len(dep.ai.requests) == 2  # one retry (retries: 1): a 500 may succeed next time
    dep.ai.mode = "malformed"
    rec = await failed(await g.patient.send(g.room, "garbage please"))
    assert "malformed JSON" in rec["error"]
    assert len(dep.ai.requests) == 3  # garbage is not asked again
    events = await room_events(g.doctor, g.room)
    assert [e for e in events if e["sender"] == AI and e["type"] == "m.room.message"] == []  # breaker still closed


async def test_openai_streaming_reply_is_one_message_with_few_edits(deploy: Deploy) -> None:
    dep = await deploy(default_provider="openai-stream")
    dep.ai.mode, dep.ai.chunks, dep.ai.delay_s = "stream", 40, 0.03
    g = await make_group(dep.hs, provider="openai-stream")
    question = await g.patient.send(g.room, "stream it")
    full = dep.ai.full_text("stream it")

    async def complete() -> bool:
        for r in (await records(g.doctor, g.room))["chunk"]:
            if r["user_event_id"] == question and r["status"] == "success":
                return True
        return False

    await wait_until(complete, "the streamed reply to finish")
    events = await room_events(g.doctor, g.room)
    (first,) = replies_to(events, question)
    edits = [e for e in events if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
             and e["content"]["m.relates_to"]["event_id"] == first["event_id"]]
    assert 1 <= len(edits) <= 5  # max_edits, far fewer than the 40 chunks
    assert edits[-1]["content"]["m.new_content"]["body"] == full  # the last edit is complete
    assert dep.ai.requests[-1]["stream"] is True
    assert dep.ai.requests[-1]["messages"][-1] == {"role": "user", "content": "stream it"}
    # clients see the final text through the bundled edit
    shown = await g.doctor.get(f"/rooms/{q(g.room)}/event/{q(first['event_id'])}")
    assert shown["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]["body"] == full


async def test_openai_non_streaming(deploy: Deploy) -> None:
    dep = await deploy(default_provider="openai", reply_msgtype="m.text")
    g = await make_group(dep.hs, provider="openai")
    question = await g.patient.send(g.room, "plain please")
    reply = await reply_in_sync(g.patient, g.room, question)
    assert reply["content"] == {
        "msgtype": "m.text", "body": "echo: plain please",
        "m.relates_to": {"m.in_reply_to": {"event_id": question}},
    }


async def test_a_hanging_ai_never_blocks_chat_and_warns_once(deploy: Deploy) -> None:
    dep = await deploy(request_timeout_s=0.3, retries=0, breaker_failures=2, workers=2)
    dep.ai.mode = "hang"
    g = await make_group(dep.hs)
    start = await g.doctor.sync()
    sent = [await g.patient.send(g.room, f"message {i}") for i in range(50)]
    # every message persisted and synced, in order, while the AI hangs
    seen: list[str] = []
    since = start["next_batch"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len([e for e in seen if e in sent]) < 50 and loop.time() < deadline:
        got = await g.doctor.sync(since, timeout=2000, filter={"room": {"timeline": {"limit": 100}}})
        since = got["next_batch"]
        section = got["rooms"]["join"].get(g.room)
        assert section is None or not section["timeline"].get("limited")  # no gap: nothing skipped
        seen += [e["event_id"] for e in timeline(got, g.room)]
    assert [e for e in seen if e in sent] == sent

    async def all_failed() -> bool:
        chunk = (await g.doctor.get(f"/_tricolor/client/v1/rooms/{q(g.room)}/ai/interactions",
                                    params={"limit": 100}))["chunk"]
        return len(chunk) == 50 and all(r["status"] == "failed" for r in chunk)

    await wait_until(all_failed, "every interaction to fail", timeout=60)
    notices = [e for e in await room_events(g.doctor, g.room)
               if e["sender"] == AI and e["type"] == "m.room.message"]
    assert len(notices) == 1 and "unavailable" in notices[0]["content"]["body"]
    assert len(dep.ai.requests) <= 3  # the open circuit stopped calling the hanging service


async def test_a_killed_assistant_resumes_without_losing_or_repeating(deploy: Deploy) -> None:
    dep = await deploy(in_process=False)
    dep.ai.mode = "hang"
    g = await make_group(dep.hs)
    first = await g.patient.send(g.room, "asked before the crash")
    await wait_until(lambda: _async_true(len(dep.ai.requests) == 1), "the AI to be asked")
    dep.kill()  # SIGKILL while the AI is answering
    second = await g.patient.send(g.room, "asked while it was down")
    dep.ai.mode = "answer"
    dep.ai.release.set()
    dep.spawn()

    async def both_answered() -> bool:
        events = await room_events(g.doctor, g.room)
        return bool(replies_to(events, first)) and bool(replies_to(events, second))

    await wait_until(both_answered, "both messages answered after the restart", timeout=40)

    async def settled() -> bool:
        chunk = (await records(g.doctor, g.room))["chunk"]
        return len(chunk) == 2 and all(r["status"] == "success" for r in chunk)

    await wait_until(settled, "both records to succeed")
    events = await room_events(g.doctor, g.room)
    assert len(replies_to(events, first)) == 1 and len(replies_to(events, second)) == 1


async def _async_true(value: bool) -> bool:
    return value


async def test_the_embedded_assistant_answers_in_the_homeserver_process(
    tmp_path: Path, hs_config: HomeserverConfig, fake_ai: FakeAI,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> None:
    """`ai_assistant.config_file` in the homeserver config: the same application service,
    served by the homeserver itself under /_tricolor/ai-assistant."""
    from homeserver.app import create_app

    port = free_port()
    registration = tmp_path / "ai.registration.yaml"
    registration.write_text(yaml.safe_dump({
        "id": "ai-assistant", "url": f"http://127.0.0.1:{port}/_tricolor/ai-assistant", "as_token": "emb-as",
        "hs_token": "emb-hs", "sender_localpart": "ai-assistant",
        "namespaces": {"users": [{"exclusive": True, "regex": "@ai-assistant:hs\\.test"}]},
    }))
    assistant = tmp_path / "ai.yaml"
    assistant.write_text(yaml.safe_dump({
        "homeserver_url": f"http://127.0.0.1:{port}", "registration": str(registration),
        "providers": {"simple": {"kind": "simple", "url": f"{fake_ai.url}/simple"}},
    }))
    cfg = attrs.evolve(
        hs_config,
        app_services=AppServicesConfig(config_files=(str(registration),), retry_min_ms=50, retry_max_ms=400),
        ai_assistant=AiAssistantConfig(config_file=str(assistant)),
    )
    app = await create_app(cfg)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    hs = Matrix(client, "hs.test")
    g = await make_group(hs)
    question = await g.patient.send(g.room, "embedded?")
    reply = await reply_in_sync(g.patient, g.room, question)
    assert reply["content"]["body"] == "echo: embedded?"
    # The homeserver's /metrics counts the embedded assistant's answers.
    page = generate_latest(app[observability.METRICS].registry).decode()
    assert 'tricolor_ai_requests_total{outcome="success"} 1.0' in page
    assert 'tricolor_ai_requests_total{outcome="failed"} 0.0' in page


async def test_a_stalled_stream_is_cut_and_says_so(deploy: Deploy) -> None:
    dep = await deploy(default_provider="openai-stream", stall_timeout_s=0.5, retries=2)
    dep.ai.mode, dep.ai.delay_s = "stall", 0.01
    g = await make_group(dep.hs, provider="openai-stream")
    question = await g.patient.send(g.room, "then silence")

    async def failed() -> bool:
        return any(r["user_event_id"] == question and r["status"] == "failed"
                   for r in (await records(g.doctor, g.room))["chunk"])

    await wait_until(failed, "the stalled stream to be given up")
    rec = next(r for r in (await records(g.doctor, g.room))["chunk"] if r["user_event_id"] == question)
    assert "stalled" in rec["error"]
    assert len(dep.ai.requests) == 1  # text was already shown: asking again would repeat it
    events = await room_events(g.doctor, g.room)
    (first,) = replies_to(events, question)
    assert rec["reply_event_id"] == first["event_id"]
    last = [e for e in events if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"][-1]
    assert last["content"]["m.new_content"]["body"] == "w0 w1 w2 w3 w4 [the answer was interrupted]"


async def test_a_group_that_opts_in_gets_the_assistant_and_replies_over_websocket(deploy: Deploy) -> None:
    """No one invites the assistant by hand: the opt-in does (as the admin who opted in),
    the assistant joins and holds AI_ASSISTANT, and a patient's answer arrives over the
    WebSocket sync transport like any message, in real time."""
    dep = await deploy()
    doctor, patient = await dep.hs.users("doc", "pat")
    room = await doctor.create_room(name="Opt-in")
    await doctor.invite(room, patient)
    await patient.join(room)
    await doctor.put_state(room, "tricolor.member_role", {"role": "PATIENT"}, key="user:" + patient.user_id)
    await doctor.put_state(room, "tricolor.ai", {"enabled": True, "provider": "simple"})

    async def joined() -> bool:
        return AI in (await doctor.get(f"/rooms/{q(room)}/joined_members"))["joined"]

    await wait_until(joined, "the assistant to join on the opt-in")
    role = await doctor.get(f"/rooms/{q(room)}/state/tricolor.member_role/{q('user:' + AI)}", params={"format": "event"})
    assert role["content"] == {"role": "AI_ASSISTANT"} and role["sender"] == doctor.user_id
    members = await doctor.get(f"/rooms/{q(room)}/members")
    invite = next(
        e for e in members["chunk"] if e["state_key"] == AI and e["content"]["membership"] == "join"
    )
    assert invite["sender"] == AI  # it joined itself, after the doctor's invite

    ws = await WsClient.connect(dep.hs.client, WS_PATH, doctor.token)  # type: ignore[arg-type]
    try:
        question = await patient.send(room, "Is it normal to feel dizzy?")
        frame = await ws.sync_frame(lambda f: bool(replies_to(
            f.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", []), question,
        )), timeout=20)
        reply = replies_to(frame["rooms"]["join"][room]["timeline"]["events"], question)[0]
        assert reply["content"]["body"] == "echo: Is it normal to feel dizzy?"
    finally:
        await ws.close()


async def test_an_assistant_invited_by_hand_into_an_opted_in_group_gets_its_role(deploy: Deploy) -> None:
    dep = await deploy()
    (doctor,) = await dep.hs.users("doc")
    room = await doctor.create_room(name="By hand")
    await doctor.put_state(room, "tricolor.ai", {"enabled": False})  # not opted in: nobody is invited

    async def role_set() -> bool:
        got = await dep.hs.raw(
            "GET", f"/rooms/{q(room)}/state/tricolor.member_role/{q('user:' + AI)}", token=doctor.token,
        )
        return got.status == 200 and got.json == {"role": "AI_ASSISTANT"}

    await doctor.put_state(room, "tricolor.ai", {"enabled": True})
    await wait_until(role_set, "the role on the opt-in")
    await doctor.post(f"/rooms/{q(room)}/kick", {"user_id": AI})
    await doctor.put_state(room, "tricolor.member_role", {"role": "DOCTOR"}, key="user:" + AI)
    await doctor.invite(room, AI)
    await wait_until(role_set, "the role given again on the invite")

