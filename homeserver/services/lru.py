"""A tiny bounded LRU map for immutable things (events, state)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    def __init__(self, max_size: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._max = max_size
        # For /metrics (synapse_util_caches_cache_hits / _cache): two integer additions a lookup.
        self.hits = 0
        self.lookups = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        self.lookups += 1
        value = self._data.get(key)
        if value is not None:
            self.hits += 1
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._max:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._data
