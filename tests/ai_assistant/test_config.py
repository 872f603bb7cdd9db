"""The assistant's config: one clear line per problem, and `tricolor ai-assistant` exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ai_assistant.breaker import CircuitBreaker
from ai_assistant.config import load_assistant_config
from config.errors import ConfigError
from homeserver.__main__ import main


def _write(tmp_path: Path, **overrides: object) -> Path:
    reg = tmp_path / "reg.yaml"
    reg.write_text(yaml.safe_dump({
        "id": "ai", "url": "http://127.0.0.1:9010", "as_token": "a", "hs_token": "h", "sender_localpart": "ai-assistant",
    }))
    cfg = {"homeserver_url": "http://127.0.0.1:8008", "server_name": "hs.test", "registration": "reg.yaml",
           "providers": {"main": {"kind": "simple", "url": "http://127.0.0.1:9000/ai"}}}
    cfg.update(overrides)
    path = tmp_path / "assistant.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_assistant_config_errors(tmp_path: Path) -> None:
    cfg = load_assistant_config(str(_write(tmp_path)))
    assert cfg.registration.sender == "@ai-assistant:hs.test" and cfg.default_provider == "main"
    assert cfg.request_timeout_s == 30 and cfg.max_edits == 25 and cfg.edit_interval_s == 1.5
    cases = [
        ({"providers": {"main": {"kind": "gpt", "url": "http://x"}}}, "providers.main.kind: must be one of simple, openai"),
        ({"providers": {"main": {"kind": "openai", "url": "http://x"}}}, "providers.main.model: is required"),
        ({"default_provider": "other"}, "default_provider: 'other' is not one of the providers"),
        ({"request_timeout_s": "soon"}, "request_timeout_s: must be a non-negative number"),
        ({"reply_msgtype": "m.emote"}, "reply_msgtype: must be m.notice or m.text"),
        ({"homeserver_url": "localhost"}, "homeserver_url: 'localhost' is not an http(s) URL"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError) as err:
            load_assistant_config(str(_write(tmp_path, **overrides)))
        assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_reports_a_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, providers={})
    assert main(["ai-assistant", "-c", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("config error: ") and "providers: must name at least one provider" in err
    assert "\n" not in err


def test_circuit_breaker_opens_once_and_half_opens_after_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(2, 10, lambda: now[0])
    assert breaker.allow() and not breaker.failure()
    assert not breaker.refusing
    assert breaker.failure()  # the second failure opens it: the caller warns once
    assert breaker.refusing  # (the assistant then skips fetching history: nothing is sent)
    assert not breaker.allow() and not breaker.failure()
    now[0] = 11
    assert not breaker.refusing  # the cooldown is over: a trial may go out
    assert breaker.allow() and not breaker.allow()  # one trial request
    assert breaker.refusing
    assert not breaker.failure()  # the trial failed: open again, no new warning
    now[0] = 22
    assert breaker.allow()
    breaker.success()
    assert breaker.allow() and not breaker.is_open
