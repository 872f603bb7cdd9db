"""Per-room member roles for the AI assistant (Tricolor extension, not Matrix spec).

A room's admins give each member a role with a state event `tricolor.member_role`
(state key `user:<user id>`, content `{"role": "PATIENT" | "DOCTOR" | "AI_ASSISTANT"}`;
the key is prefixed because the auth rules of room versions 10 and 11 reserve state keys
starting with `@` to the user they name, and roles are set by admins, not by the member);
the creator is DOCTOR unless given another role; members without a role have none
(and so are never forwarded to an AI). A room opts in to the assistant with the state
event `tricolor.ai` (state key "", content `{"enabled": true, "provider": "<profile>"}`).
Pure: shared by the homeserver (who may list records) and the assistant (what to forward).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROLE_EVENT = "tricolor.member_role"
AI_EVENT = "tricolor.ai"
PATIENT, DOCTOR, AI_ASSISTANT = "PATIENT", "DOCTOR", "AI_ASSISTANT"
ROLES = (PATIENT, DOCTOR, AI_ASSISTANT)


ROLE_KEY_PREFIX = "user:"


def role_state_key(user_id: str) -> str:
    return ROLE_KEY_PREFIX + user_id


def user_of_role_key(state_key: str) -> str | None:
    return state_key[len(ROLE_KEY_PREFIX):] if state_key.startswith(ROLE_KEY_PREFIX) else None


def role_of(user_id: str, role_contents: Mapping[str, Any], creator: str | None) -> str | None:
    """``role_contents``: user id -> content of the room's role events."""
    content = role_contents.get(user_id)
    role = content.get("role") if isinstance(content, dict) else None
    if role in ROLES:
        return str(role)
    if user_id == creator:
        return DOCTOR  # the design: a group's creator is its doctor by default
    return None


def ai_settings(content: Any) -> tuple[bool, str | None]:
    """(opted in, provider profile name) from a `tricolor.ai` content (absent: off)."""
    if not isinstance(content, dict) or content.get("enabled") is not True:
        return False, None
    provider = content.get("provider")
    return True, provider if isinstance(provider, str) and provider else None
