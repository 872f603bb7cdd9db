"""What push adds to a /sync response, in the one call SyncService makes:

- per joined room, `unread_notifications` and (when the filter's
  `room.timeline.unread_thread_notifications` asks) `unread_thread_notifications`
  (spec "Receiving notifications");
- at initial sync, the `m.push_rules` account data of a user who never changed a rule
  (clients read their rules there; changes come incrementally as account data).
"""

from __future__ import annotations

from typing import Any

from homeserver.services.push import (
    MAIN_THREAD,
    PUSH_RULES_TYPE,
    Counts,
    NotificationService,
    PushRulesService,
)


class PushSync:
    def __init__(self, notifications: NotificationService, rules: PushRulesService) -> None:
        self._notifications = notifications
        self._rules = rules

    async def add_to(
        self, user_id: str, resp: dict[str, Any], position: int, initial: bool, per_thread: bool,
    ) -> None:
        joined: dict[str, Any] = resp["rooms"]["join"]
        counts = await self._notifications.unread(user_id, list(joined), position)
        for room_id, section in joined.items():
            threads = counts.get(room_id, {})
            if per_thread:
                main = threads.get(MAIN_THREAD, Counts())
                others = {t: c.json() for t, c in threads.items() if t != MAIN_THREAD}
                if others:
                    section["unread_thread_notifications"] = others
            else:
                main = Counts(
                    sum(c.notification_count for c in threads.values()),
                    sum(c.highlight_count for c in threads.values()),
                )
            section["unread_notifications"] = main.json()
        events = resp["account_data"]["events"]
        if initial and not any(e.get("type") == PUSH_RULES_TYPE for e in events):
            events.append({"type": PUSH_RULES_TYPE, "content": {"global": await self._rules.ruleset(user_id)}})
