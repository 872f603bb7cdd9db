"""Who a user ignores (spec "Ignoring Users", `m.ignored_user_list` account data).

Every /sync, /messages, /context and search reads the list, so it is kept per user
together with the account-data stream position it was read at, and read again only when
the notifier says the user's account data moved since then. The notifier is the one that
already wakes /sync on account-data changes, so a change written by another worker (with a
shared notifier) invalidates the entry too, which a cache dropped only on local writes
would miss.
"""

from __future__ import annotations

from typing import Any

from homeserver.services.lru import LruCache
from homeserver.services.notifier import NotifierPort
from storage.stores.filters import AccountDataStore

IGNORED_USERS = "m.ignored_user_list"  # the account-data type (spec "Ignoring Users")


def ignored_in(content: dict[str, Any] | None) -> frozenset[str]:
    """The user ids of an m.ignored_user_list document (malformed entries skipped)."""
    listed = (content or {}).get("ignored_users")
    return frozenset(u for u in listed if isinstance(u, str)) if isinstance(listed, dict) else frozenset()


class IgnoreLists:
    def __init__(self, *, store: AccountDataStore, notifier: NotifierPort, max_users: int = 100_000) -> None:
        self._store = store
        self._notifier = notifier
        self._cache: LruCache[str, tuple[int, frozenset[str]]] = LruCache(max_users)

    async def ignored_users(self, user_id: str) -> frozenset[str]:
        hit = self._cache.get(user_id)
        if hit is not None and not self._notifier.maybe_changed("account_data", user_id, hit[0]):
            return hit[1]
        # The position before the read: a write after it marks the entry stale.
        position = self._notifier.current_token().account_data
        users = ignored_in(await self._store.get(user_id, "", IGNORED_USERS))
        self._cache.put(user_id, (position, users))
        return users
