"""The AI assistant against a fake AI service: a homeserver (in process) with the
assistant's registration, the assistant (in process on its own port, or as its own
`tricolor ai-assistant` process), and a group with a DOCTOR (its creator) and a PATIENT."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from config.schema import AppServicesConfig, HomeserverConfig
from tests.ai_assistant.fake_ai import FakeAI
from tests.appservice.conftest import free_port, wait_until
from tests.helpers import Matrix, User, q

REPO = Path(__file__).resolve().parents[2]
AI = "@ai-assistant:hs.test"
AS_TOKEN = "ai-as-token"
HS_TOKEN = "ai-hs-token"


@pytest.fixture
async def fake_ai(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[FakeAI]:
    ai = FakeAI()
    server = await aiohttp_server(ai.app())
    ai.url = str(server.make_url(""))
    yield ai
    ai.release.set()


@attrs.define
class Deployment:
    hs: Matrix
    tmp: Path
    port: int
    ai: FakeAI
    config_path: Path
    runner: web.AppRunner | None = None
    proc: subprocess.Popen[bytes] | None = None

    async def start_in_process(self) -> None:
        from ai_assistant.app import create_app
        from ai_assistant.config import load_assistant_config

        self.runner = web.AppRunner(create_app(load_assistant_config(str(self.config_path))))
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop_in_process(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def spawn(self) -> None:
        """`tricolor ai-assistant` as its own process."""
        log = (self.tmp / "assistant.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "ai-assistant", "-c", str(self.config_path)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
async def deploy(
    tmp_path: Path, hs_config: HomeserverConfig, start_hs: Callable[[HomeserverConfig], Awaitable[Matrix]],
    fake_ai: FakeAI,
) -> AsyncIterator[Callable[..., Awaitable[Deployment]]]:
    """``await deploy(provider="simple", **assistant_settings)``: homeserver + assistant."""
    made: list[Deployment] = []

    async def make(in_process: bool = True, **settings: Any) -> Deployment:
        port = free_port()
        registration = tmp_path / "ai-assistant.registration.yaml"
        registration.write_text(yaml.safe_dump({
            "id": "ai-assistant", "url": f"http://127.0.0.1:{port}", "as_token": AS_TOKEN, "hs_token": HS_TOKEN,
            "sender_localpart": "ai-assistant", "rate_limited": False,
            "namespaces": {"users": [{"exclusive": True, "regex": "@ai-assistant:hs\\.test"}]},
        }))
        cfg = attrs.evolve(hs_config, app_services=AppServicesConfig(
            config_files=(str(registration),), retry_min_ms=50, retry_max_ms=400,
        ))
        hs = await start_hs(cfg)
        base = fake_ai.url
        assistant = {
            "homeserver_url": str(hs.client.make_url("")).rstrip("/"), "server_name": "hs.test",
            "registration": str(registration), "listen": {"host": "127.0.0.1", "port": port},
            "display_name": "Dr. Bot", "history_limit": 4, "request_timeout_s": 5, "stall_timeout_s": 2,
            "retries": 1, "retry_backoff_s": 0.05, "breaker_failures": 3, "breaker_cooldown_s": 600,
            "edit_interval_s": 0.2, "max_edits": 5, "workers": 2,
            "default_provider": "simple",
            "providers": {
                "simple": {"kind": "simple", "url": f"{base}/simple", "api_key": "k1"},
                "openai": {"kind": "openai", "url": f"{base}/v1/chat/completions", "model": "fake", "api_key": "k2"},
                "openai-stream": {"kind": "openai", "url": f"{base}/v1/chat/completions", "model": "fake",
                                  "stream": True},
            },
        }
        assistant.update(settings)
        config_path = tmp_path / "ai-assistant.yaml"
        config_path.write_text(yaml.safe_dump(assistant))
        dep = Deployment(hs, tmp_path, port, fake_ai, config_path)
        made.append(dep)
        if in_process:
            await dep.start_in_process()
        else:
            dep.spawn()
        return dep

    yield make
    for dep in made:
        dep.kill()
        await dep.stop_in_process()


@attrs.define
class Group:
    room: str
    doctor: User
    patient: User


async def make_group(hs: Matrix, provider: str | None = "simple", opt_in: bool = True, names: tuple[str, str] = ("doc", "pat")) -> Group:
    """A group created by its doctor, with a PATIENT and the assistant joined: invited by the
    homeserver on the opt-in, by the doctor by hand in a room that did not opt in."""
    doctor, patient = await hs.users(*names)
    room = await doctor.create_room(name="Consultation")
    if opt_in:
        content: dict[str, Any] = {"enabled": True}
        if provider:
            content["provider"] = provider
        await doctor.put_state(room, "tricolor.ai", content)
    await doctor.invite(room, patient)
    await patient.join(room)
    await doctor.put_state(room, "tricolor.member_role", {"role": "PATIENT"}, key="user:" + patient.user_id)
    if not opt_in:
        await doctor.invite(room, AI)

    async def joined() -> bool:
        members = await doctor.get(f"/rooms/{q(room)}/joined_members")
        return AI in members["joined"]

    await wait_until(joined, "the assistant to join")
    return Group(room, doctor, patient)


async def room_events(user: User, room: str) -> list[dict[str, Any]]:
    """Every event of the room, oldest first."""
    got = await user.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 1000})
    return list(reversed(got["chunk"]))


def replies_to(events: list[dict[str, Any]], event_id: str) -> list[dict[str, Any]]:
    return [
        e for e in events if e["sender"] == AI and e["type"] == "m.room.message"
        and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id
    ]


async def records(user: User, room: str, expect: int = 200) -> Any:
    return await user.get(f"/_tricolor/client/v1/rooms/{q(room)}/ai/interactions", expect=expect)
