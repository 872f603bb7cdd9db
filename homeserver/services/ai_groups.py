"""The AI assistant joins the groups that opt in, and holds its AI_ASSISTANT role there
(Tricolor extension; roles and the opt-in are described in homeserver/core/ai_roles.py).

A StateReactor handler (state_watch.py), run after commit, never on the send path:
- `tricolor.ai` set to enabled by a local member: that member (who had the power to opt
  the group in) invites the assistant's user, and gives it the AI_ASSISTANT role;
- the assistant invited by a local member into a group that opted in: the inviter gives it
  the role.
The assistant itself joins on the invite (ai_assistant/assistant.py). Its role is set by a
group admin rather than by the assistant, which as a plain member has no power to send
state. Acting needs the member's power to invite and to send state; when it lacks it, the
group's admins invite and assign the role by hand, as before. An opt-in committed just
before a crash is not acted on after the restart (the admins invite by hand then).
"""

from __future__ import annotations

import logging

from homeserver.core.ai_roles import AI_ASSISTANT, AI_EVENT, ROLE_EVENT, ai_settings, role_state_key
from homeserver.core.errors import MatrixError
from homeserver.core.ids import server_of
from homeserver.services.auth import Requester
from homeserver.services.reader import EventReader
from homeserver.services.rooms import RoomService
from homeserver.services.state_watch import StateChange

log = logging.getLogger(__name__)
WATCHED = frozenset({AI_EVENT, "m.room.member"})


class AiGroupJoiner:
    def __init__(self, *, reader: EventReader, rooms: RoomService, assistant: str, server_name: str) -> None:
        self._reader = reader
        self._rooms = rooms
        self._assistant = assistant
        self._name = server_name

    async def on_change(self, change: StateChange) -> None:
        if change.event_type == "m.room.member" and change.state_key != self._assistant:
            return  # cheap: most membership changes are not the assistant's
        stored = await self._reader.get_event(change.event_id)
        if stored is None:
            return
        event = stored.event
        actor = event.sender
        if server_of(actor) != self._name or actor == self._assistant:
            return  # we can only act as our own users
        room_id = change.room_id
        if change.event_type == "m.room.member":
            if event.content.get("membership") != "invite":
                return
            opted_in, _ = ai_settings(await self._content(room_id, (AI_EVENT, "")))
            if opted_in:
                await self._give_role(actor, room_id)
            return
        opted_in, _ = ai_settings(event.content)
        if not opted_in:
            return
        head = await self._reader.room_head(room_id)
        if head is None:
            return
        try:
            if head.members.get(self._assistant) not in ("join", "invite"):
                await self._rooms.set_membership(Requester(actor, "", ""), room_id, self._assistant, "invite", None)
        except MatrixError as e:
            log.info("%s could not invite the assistant to %s: %s", actor, room_id, e)
            return
        await self._give_role(actor, room_id)

    async def _give_role(self, actor: str, room_id: str) -> None:
        key = role_state_key(self._assistant)
        current = await self._content(room_id, (ROLE_EVENT, key))
        if isinstance(current, dict) and current.get("role") == AI_ASSISTANT:
            return
        try:
            await self._rooms.send(Requester(actor, "", ""), room_id, ROLE_EVENT, {"role": AI_ASSISTANT}, key)
        except MatrixError as e:
            log.info("%s could not give the assistant its role in %s: %s", actor, room_id, e)

    async def _content(self, room_id: str, key: tuple[str, str]) -> object:
        event = await self._reader.current_state_event(room_id, key)
        return event.content if event is not None else None
