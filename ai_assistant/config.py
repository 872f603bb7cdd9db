"""The assistant's YAML config. Every problem is one ConfigError line (file: key: problem).

    homeserver_url: http://127.0.0.1:8008
    registration: ai-assistant.registration.yaml   # the file the homeserver lists too
    server_name: example.org
    listen: {host: 127.0.0.1, port: 9010}            # where transactions arrive (own process)
    display_name: AI Assistant
    history_limit: 10
    reply_msgtype: m.notice
    default_provider: main
    providers:
      main: {kind: openai, url: http://127.0.0.1:8080/v1/chat/completions, model: m, api_key: k, stream: true}
      design: {kind: simple, url: http://127.0.0.1:9000/ai, api_key: k}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from config.appservice import load_registration
from config.errors import ConfigError
from homeserver.core.appservice import AppService

PROVIDER_KINDS = ("simple", "openai")


@attrs.frozen
class ProviderConfig:
    name: str
    kind: str  # "simple": {"message","history"} -> {"reply"}; "openai": /v1/chat/completions
    url: str
    api_key: str | None = None
    model: str | None = None
    stream: bool = False
    system_prompt: str | None = None


@attrs.frozen
class AssistantConfig:
    homeserver_url: str
    registration: AppService
    providers: Mapping[str, ProviderConfig]
    default_provider: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 9010
    display_name: str = "AI Assistant"
    history_limit: int = 10
    reply_msgtype: str = "m.notice"
    queue_size: int = 100  # messages waiting for the AI; past it, transactions are refused (503)
    workers: int = 4
    request_timeout_s: float = 30.0  # one AI request, in total
    stall_timeout_s: float = 10.0  # a stream that sends nothing for this long is dead
    retries: int = 2  # extra attempts, only for failures that are safe to repeat
    retry_backoff_s: float = 0.5
    breaker_failures: int = 3  # consecutive failures that open the circuit
    breaker_cooldown_s: float = 60.0
    edit_interval_s: float = 1.5
    max_edits: int = 25
    unavailable_notice: str = "The assistant is unavailable right now; your message was not answered."


_NUMBERS: dict[str, type] = {
    "listen_port": int, "history_limit": int, "queue_size": int, "workers": int, "request_timeout_s": float,
    "stall_timeout_s": float, "retries": int, "retry_backoff_s": float, "breaker_failures": int,
    "breaker_cooldown_s": float, "edit_interval_s": float, "max_edits": int,
}


def load_assistant_config(path: str, server_name: str | None = None) -> AssistantConfig:
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"assistant config not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}".splitlines()[0], file=path) from None
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping of settings", file=path)

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(problem, file=path, key=key)

    def text(key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise fail(key, f"must be a non-empty string, got {value!r}")
        return value

    known = {"homeserver_url", "registration", "server_name", "listen", "providers", "default_provider",
             "display_name", "reply_msgtype", "unavailable_notice", *_NUMBERS}
    for key in raw:
        if key not in known:
            raise fail(str(key), f"unknown key (known: {', '.join(sorted(known - {'listen_port'}))})")
    hs_url = text("homeserver_url", raw.get("homeserver_url"))
    if not hs_url.startswith(("http://", "https://")):
        raise fail("homeserver_url", f"{hs_url!r} is not an http(s) URL")
    name = server_name or text("server_name", raw.get("server_name"))
    reg_path = text("registration", raw.get("registration"))
    if not os.path.isabs(reg_path):
        reg_path = os.path.join(os.path.dirname(path), reg_path)
    registration = load_registration(reg_path, name)
    providers_raw = raw.get("providers")
    if not isinstance(providers_raw, dict) or not providers_raw:
        raise fail("providers", "must name at least one provider (kind: simple or openai, url)")
    providers: dict[str, ProviderConfig] = {}
    for pname, p in providers_raw.items():
        where = f"providers.{pname}"
        if not isinstance(p, dict):
            raise fail(where, "must be a mapping with kind and url")
        kind = p.get("kind")
        if kind not in PROVIDER_KINDS:
            raise fail(f"{where}.kind", f"must be one of {', '.join(PROVIDER_KINDS)}, got {kind!r}")
        url = text(f"{where}.url", p.get("url"))
        if not url.startswith(("http://", "https://")):
            raise fail(f"{where}.url", f"{url!r} is not an http(s) URL")
        unknown = set(p) - {"kind", "url", "api_key", "model", "stream", "system_prompt"}
        if unknown:
            raise fail(f"{where}.{sorted(unknown)[0]}", "unknown key")
        if not isinstance(p.get("stream", False), bool):
            raise fail(f"{where}.stream", "must be true or false")
        if kind == "openai" and not isinstance(p.get("model"), str):
            raise fail(f"{where}.model", "is required for an OpenAI-compatible provider")
        providers[str(pname)] = ProviderConfig(
            name=str(pname), kind=kind, url=url, api_key=p.get("api_key"), model=p.get("model"),
            stream=bool(p.get("stream", False)), system_prompt=p.get("system_prompt"),
        )
    default = raw.get("default_provider", next(iter(providers)))
    if default not in providers:
        raise fail("default_provider", f"{default!r} is not one of the providers ({', '.join(providers)})")
    values: dict[str, Any] = {}
    for key, kind_ in _NUMBERS.items():
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise fail(key, f"must be a non-negative number, got {value!r}")
            values[key] = kind_(value)
    listen = raw.get("listen") or {}
    if not isinstance(listen, dict):
        raise fail("listen", "must be a mapping with host and port")
    if "host" in listen:
        values["listen_host"] = text("listen.host", listen["host"])
    if "port" in listen:
        if not isinstance(listen["port"], int) or not 1 <= listen["port"] <= 65535:
            raise fail("listen.port", f"must be a port number, got {listen['port']!r}")
        values["listen_port"] = listen["port"]
    for key in ("display_name", "reply_msgtype", "unavailable_notice"):
        if key in raw:
            values[key] = text(key, raw[key])
    if values.get("reply_msgtype", "m.notice") not in ("m.notice", "m.text"):
        raise fail("reply_msgtype", "must be m.notice or m.text")
    return AssistantConfig(
        homeserver_url=hs_url.rstrip("/"), registration=registration, providers=providers,
        default_provider=str(default), **values,
    )
