"""Application-service registration files (spec: "Registration"), read and checked at
start-up. Every problem is one ConfigError line naming the file and the key:

    /etc/tricolor/irc.yaml: namespaces.users[0].regex: '[' is not a valid regular expression (...)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import yaml

from config.errors import ConfigError
from homeserver.core.appservice import AppService, Namespace
from homeserver.core.ids import is_valid_localpart, user_id


def load_registrations(paths: Sequence[str], server_name: str, base_dir: str | None = None) -> list[AppService]:
    """Every registration listed in config; ids, as_tokens and hs_tokens must be unique."""
    services: list[AppService] = []
    seen: dict[tuple[str, str], str] = {}
    for raw_path in paths:
        path = raw_path if os.path.isabs(raw_path) or base_dir is None else os.path.join(base_dir, raw_path)
        service = load_registration(path, server_name)
        for key in ("id", "as_token", "hs_token"):
            value = getattr(service, key)
            if (key, value) in seen:
                raise ConfigError(f"the same {key} is used by {seen[(key, value)]}", file=path, key=key)
            seen[(key, value)] = path
        services.append(service)
    return services


def load_registration(path: str, server_name: str) -> AppService:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"application service registration not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read application service registration: {exc.strerror}", file=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}".splitlines()[0], file=path) from None
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping (id, url, as_token, ...)", file=path)

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(problem, file=path, key=key)

    def string(key: str, required: bool = True) -> str | None:
        value = raw.get(key)
        if value is None:
            if required:
                raise fail(key, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail(key, f"must be a non-empty string, got {value!r}")
        return value

    known = {
        "id", "url", "as_token", "hs_token", "sender_localpart", "namespaces", "rate_limited",
        "protocols", "receive_ephemeral", "de.sorunome.msc2409.push_ephemeral", "push_ephemeral",
        "org.matrix.msc3202",
    }
    for key in raw:
        if key not in known:
            raise fail(str(key), f"unknown key (known: {', '.join(sorted(k for k in known if '.' not in k))})")
    as_id, as_token, hs_token = string("id"), string("as_token"), string("hs_token")
    url = string("url", required=False)
    if "url" not in raw:
        raise fail("url", "is required (use null for a service that receives no transactions)")
    if url is not None and not re.match(r"^https?://[^/]", url):
        raise fail("url", f"{url!r} is not an http:// or https:// URL")
    localpart = string("sender_localpart")
    assert localpart is not None
    if not is_valid_localpart(localpart):
        raise fail("sender_localpart", f"{localpart!r} is not a valid user localpart (a-z, 0-9, ._=-/+)")
    namespaces = raw.get("namespaces", {}) or {}
    if not isinstance(namespaces, dict):
        raise fail("namespaces", "must be a mapping with users, aliases and rooms lists")
    parsed: dict[str, tuple[Namespace, ...]] = {}
    for kind in ("users", "aliases", "rooms"):
        items = namespaces.get(kind, []) or []
        if not isinstance(items, list):
            raise fail(f"namespaces.{kind}", "must be a list of {exclusive, regex}")
        out = []
        for i, item in enumerate(items):
            where = f"namespaces.{kind}[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("regex"), str):
                raise fail(where, "must be a mapping with a string regex")
            exclusive = item.get("exclusive", False)
            if not isinstance(exclusive, bool):
                raise fail(f"{where}.exclusive", f"must be true or false, got {exclusive!r}")
            try:
                out.append(Namespace(item["regex"], exclusive))
            except re.error as exc:
                raise fail(f"{where}.regex", f"{item['regex']!r} is not a valid regular expression ({exc})") from None
        parsed[kind] = tuple(out)
    for key in ("rate_limited", "receive_ephemeral"):
        if key in raw and not isinstance(raw[key], bool):
            raise fail(key, f"must be true or false, got {raw[key]!r}")
    protocols = raw.get("protocols", []) or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) and p for p in protocols):
        raise fail("protocols", "must be a list of protocol names")
    ephemeral: Any = raw.get("receive_ephemeral", raw.get("de.sorunome.msc2409.push_ephemeral", False))
    return AppService(
        id=as_id or "", url=url, as_token=as_token or "", hs_token=hs_token or "",
        sender=user_id(localpart, server_name), users=parsed["users"], aliases=parsed["aliases"],
        rooms=parsed["rooms"], rate_limited=raw.get("rate_limited", True), protocols=tuple(protocols),
        receive_ephemeral=bool(ephemeral),
    )
