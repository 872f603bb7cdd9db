"""Which worker writes a room: rooms fall into a fixed number of shards, and a free
shard goes to the live event writer ranked first for it (rendezvous hashing: when a
worker leaves, only its own shards move). Pure: the claims live in Redis."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SHARDS = 64
NOT_OWNER = "ORG_TRICOLOR_NOT_OWNER"  # the errcode of a forwarded write its target refuses
SECRET_HEADER = "X-Tricolor-Internal"  # carries the workers' shared secret (internal API)


class NotOwner(Exception):
    """This worker does not (any more) hold the room's shard."""


class Unreachable(Exception):
    """The room's writer did not answer (it may have died)."""


def shard_of(room_id: str, shards: int = SHARDS) -> int:
    return int.from_bytes(hashlib.sha256(room_id.encode()).digest()[:8], "big") % shards


def preferred_writer(shard: int, workers: Iterable[str]) -> str | None:
    """The worker ranked first for the shard among `workers` (None if there are none)."""
    def rank(worker: str) -> bytes:
        return hashlib.sha256(f"{shard}:{worker}".encode()).digest()
    return max(workers, key=rank, default=None)
