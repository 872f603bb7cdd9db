"""Server signing keys: ours to publish, theirs to fetch, cache and check
(https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys).

Implements ports.KeyringPort. Lookups go memory -> database -> the server itself
(``GET /_matrix/key/v2/server``) -> notaries (``POST /_matrix/key/v2/query``).
``at_ts=None`` means "for a request now": only current keys still valid now count.
An int ``at_ts`` is an event's ``origin_server_ts``: current keys with
``valid_until_ts >= at_ts`` or old keys with ``at_ts < expired_ts`` count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from federation.outbound.client import FederationClient
from homeserver.core.errors import MatrixError, SignatureError
from homeserver.core.ids import server_of
from homeserver.core.records import ServerKey
from homeserver.core.redaction import redact_pdu
from homeserver.core.room_versions import get_room_version
from homeserver.core.signing import (
    ED25519,
    SigningKey,
    decode_base64,
    encode_base64,
    sign_json,
    signature_key_ids,
    verify_json_signature,
)
from homeserver.services.ports import FederationRequestError
from storage.stores.keys import KeyStore

log = logging.getLogger(__name__)

KEY_PATH = "/_matrix/key/v2/server"
QUERY_PATH = "/_matrix/key/v2/query"
DAY_MS = 24 * 3600 * 1000
MAX_KEY_VALIDITY_MS = 7 * DAY_MS  # spec: cap what we trust at now + 7 days
OWN_RESPONSE_VALIDITY_MS = DAY_MS  # what Synapse publishes

OldKey = tuple[SigningKey | bytes | str, int]  # (key, or its public half, expired_ts)


def _now_ms() -> int:
    return int(time.time() * 1000)


class KeyResponseError(ValueError):
    """A key response that is malformed, for the wrong server, or not self-signed."""


@attrs.frozen
class KeyResponse:
    """A validated ``/_matrix/key/v2/server`` body."""

    server_name: str
    valid_until_ts: int
    verify_keys: dict[str, bytes]
    old_verify_keys: dict[str, tuple[bytes, int]]  # key id -> (key, expired_ts)
    raw: dict[str, Any]  # as the server signed it, other servers' signatures removed

    def server_keys(self, now_ms: int) -> list[ServerKey]:
        capped = min(self.valid_until_ts, now_ms + MAX_KEY_VALIDITY_MS)
        keys = [
            ServerKey(self.server_name, kid, vk, capped, None, now_ms)
            for kid, vk in self.verify_keys.items()
        ]
        keys += [
            # Old keys are judged by expired_ts only; it doubles as valid_until_ts (NOT NULL).
            ServerKey(self.server_name, kid, vk, expired, expired, now_ms)
            for kid, (vk, expired) in self.old_verify_keys.items()
            if kid not in self.verify_keys
        ]
        return keys


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _decode_key(entry: Any) -> bytes:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise ValueError("key entry lacks 'key'")
    key = decode_base64(entry["key"])
    if len(key) != 32:
        raise ValueError("ed25519 keys are 32 bytes")
    return key


def parse_key_response(server_name: str, body: Any) -> KeyResponse:
    """Validate a key response: right server, and signed by every key it publishes."""
    if not isinstance(body, dict):
        raise KeyResponseError("key response is not an object")
    if body.get("server_name") != server_name:
        raise KeyResponseError(f"key response is for {body.get('server_name')!r}, not {server_name!r}")
    if not _is_int(body.get("valid_until_ts")):
        raise KeyResponseError("key response lacks an integer valid_until_ts")
    raw_keys = body.get("verify_keys")
    if not isinstance(raw_keys, dict):
        raise KeyResponseError("key response lacks verify_keys")
    verify_keys: dict[str, bytes] = {}
    for kid, entry in raw_keys.items():
        if not kid.startswith(ED25519 + ":"):
            continue  # unknown algorithms are ignored, not fatal
        try:
            verify_keys[kid] = _decode_key(entry)
        except ValueError as e:
            raise KeyResponseError(f"bad verify key {kid}: {e}") from e
    if not verify_keys:
        raise KeyResponseError("key response has no ed25519 verify keys")
    for kid, vk in verify_keys.items():
        try:
            verify_json_signature(body, server_name, kid, vk)
        except SignatureError as e:
            raise KeyResponseError(f"key response not self-signed with {kid}: {e.error}") from e
    old: dict[str, tuple[bytes, int]] = {}
    raw_old = body.get("old_verify_keys")
    for kid, entry in (raw_old if isinstance(raw_old, dict) else {}).items():
        if not kid.startswith(ED25519 + ":") or not isinstance(entry, dict) or not _is_int(entry.get("expired_ts")):
            continue
        try:
            old[kid] = (_decode_key(entry), entry["expired_ts"])
        except ValueError:
            continue  # one bad old key does not spoil the response
    raw = {k: v for k, v in body.items() if k != "unsigned"}
    raw["signatures"] = {server_name: dict(body["signatures"][server_name])}
    return KeyResponse(server_name, body["valid_until_ts"], verify_keys, old, raw)


def _old_key_bytes(key: SigningKey | bytes | str) -> bytes:
    if isinstance(key, SigningKey):
        return key.verify_key_bytes
    if isinstance(key, str):
        return decode_base64(key)
    return bytes(key)


class Keyring:
    def __init__(
        self,
        server_name: str,
        own_key: SigningKey,
        old_keys: Mapping[str, OldKey],
        store: KeyStore,
        client: FederationClient,
        notary_servers: Sequence[str] = (),
        *,
        clock: Callable[[], int] = _now_ms,
        refetch_interval_ms: int = 60_000,
        fetch_timeout: float = 10.0,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.server_name = server_name
        self._own_key = own_key
        self._old_keys = {kid: (_old_key_bytes(k), int(ts)) for kid, (k, ts) in old_keys.items()}
        self._store = store
        self._client = client
        self._notaries = [n for n in notary_servers if n != server_name]
        self._clock = clock
        # Bounds how often one server's keys are fetched: X-Matrix origins are unauthenticated
        # claims, so random key ids must not turn us into a request cannon.
        self._refetch_interval_ms = refetch_interval_ms
        self._fetch_timeout = fetch_timeout
        self._cache: dict[tuple[str, str], ServerKey] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._last_fetch: dict[str, int] = {}
        # Fields published in (and signed with) our key response, e.g. the AMQP advertisement.
        self._extra = dict(extra or {})

    async def close(self) -> None:
        """Cancel key fetches still running (at shutdown, before the client session closes)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- publishing ----

    def own_key_response(self, valid_until_ts: int | None = None) -> dict[str, Any]:
        """Our signed ``/_matrix/key/v2/server`` body."""
        body = {
            "server_name": self.server_name,
            "verify_keys": {self._own_key.key_id: {"key": self._own_key.verify_key_base64}},
            "old_verify_keys": {
                kid: {"key": encode_base64(vk), "expired_ts": ts}
                for kid, (vk, ts) in self._old_keys.items()
            },
            "valid_until_ts": (
                self._clock() + OWN_RESPONSE_VALIDITY_MS if valid_until_ts is None else valid_until_ts
            ),
            **self._extra,
        }
        return sign_json(body, self.server_name, self._own_key)

    async def notary_response(
        self, server_name: str, key_ids: Collection[str] = (), minimum_valid_until_ts: int | None = None,
    ) -> dict[str, Any] | None:
        """A server's own signed key response with our signature added (notary API);
        refreshed from the server when stale, the cached one when it is down, None if unknown."""
        if server_name == self.server_name:
            return self.own_key_response()
        min_valid = self._clock() if minimum_valid_until_ts is None else minimum_valid_until_ts
        cached = await self._store.get_key_response(server_name)
        if cached is None or _stale(cached, key_ids, min_valid):
            await self._refresh(server_name, allow_notaries=False)
            cached = await self._store.get_key_response(server_name) or cached
        if cached is None:
            return None
        return sign_json(cached, self.server_name, self._own_key)

    async def key_response(self, server_name: str) -> dict[str, Any] | None:
        """A peer's self-signed key response as stored (fetched when we have none), so the
        fields it published beside its keys can be trusted as much as its keys."""
        stored = await self._store.get_key_response(server_name)
        if stored is None:
            await self._refresh(server_name, allow_notaries=False)
            stored = await self._store.get_key_response(server_name)
        return stored

    # ---- lookups (KeyringPort) ----

    async def get_verify_key(self, server_name: str, key_id: str, at_ts: int | None = None) -> bytes:
        """The public key for (server, key id), usable at ``at_ts``; SignatureError if none."""
        return await self._lookup(server_name, key_id, at_ts, allow_notaries=True)

    async def verify_json(
        self, obj: Mapping[str, Any], server_name: str, at_ts: int | None = None,
    ) -> None:
        """Require a valid signature of ``server_name``. Key ids we cannot get are skipped;
        a known key with a bad signature fails the check (as Synapse does)."""
        obj = dict(obj)
        key_ids = signature_key_ids(obj, server_name)
        if not key_ids:
            raise SignatureError(f"No ed25519 signature from {server_name}")
        verified = False
        for key_id in key_ids:
            try:
                verify_key = await self.get_verify_key(server_name, key_id, at_ts)
            except SignatureError:
                continue
            verify_json_signature(obj, server_name, key_id, verify_key)
            verified = True
        if not verified:
            raise SignatureError(f"No usable key to check the signature of {server_name}")

    async def verify_event_signatures(self, room_version: str, pdu: Mapping[str, Any]) -> None:
        """Redact a copy, then require the sender's server (and a restricted join's
        authorising server) to have signed it with a key valid at origin_server_ts."""
        version = get_room_version(room_version)
        event = dict(pdu)
        sender, ts = event.get("sender"), event.get("origin_server_ts")
        if not isinstance(sender, str) or ":" not in sender:
            raise SignatureError("Event has no valid sender")
        if not _is_int(ts):
            raise SignatureError("Event has no valid origin_server_ts")
        required = [server_of(sender)]
        content = event.get("content")
        if (
            version.restricted_join_rule
            and event.get("type") == "m.room.member"
            and isinstance(content, dict)
            and content.get("membership") == "join"
        ):
            via = content.get("join_authorised_via_users_server")
            if isinstance(via, str) and ":" in via and server_of(via) not in required:
                required.append(server_of(via))
        try:
            redacted = redact_pdu(version, event)
        except (MatrixError, ValueError, TypeError) as e:
            raise SignatureError(f"Event cannot be redacted for checking: {e}") from e
        for server in required:
            await self.verify_json(redacted, server, ts)

    # ---- internals ----

    def _usable(self, key: ServerKey | None, at_ts: int | None) -> bool:
        if key is None:
            return False
        if at_ts is None:  # requests: current keys only, still valid now
            return key.expired_ts is None and key.valid_until_ts >= self._clock()
        if key.expired_ts is not None:
            return at_ts < key.expired_ts
        return key.valid_until_ts >= at_ts

    def _own_verify_key(self, key_id: str, at_ts: int | None) -> bytes:
        if key_id == self._own_key.key_id:
            return self._own_key.verify_key_bytes
        old = self._old_keys.get(key_id)
        if old is not None and at_ts is not None and at_ts < old[1]:
            return old[0]
        raise SignatureError(f"Unknown or expired key {key_id} of {self.server_name}")

    async def _lookup(self, server_name: str, key_id: str, at_ts: int | None, allow_notaries: bool) -> bytes:
        if server_name == self.server_name:
            return self._own_verify_key(key_id, at_ts)
        if not key_id.startswith(ED25519 + ":"):
            raise SignatureError(f"Unsupported key algorithm in {key_id}")
        cache_key = (server_name, key_id)
        if not self._usable(self._cache.get(cache_key), at_ts):
            stored = (await self._store.get_keys(server_name)).get(key_id)
            if stored is not None:
                self._cache[cache_key] = stored
        if not self._usable(self._cache.get(cache_key), at_ts):
            await self._refresh(server_name, key_id, at_ts, allow_notaries)
        key = self._cache.get(cache_key)
        if key is None or not self._usable(key, at_ts):
            raise SignatureError(f"No valid key {key_id} for {server_name}")
        return key.verify_key

    async def _refresh(
        self, server_name: str, key_id: str | None = None, at_ts: int | None = None,
        allow_notaries: bool = True,
    ) -> None:
        """Fetch a server's keys, once at a time per server (concurrent callers share it)."""
        task = self._inflight.get(server_name)
        if task is None:
            now = self._clock()
            last = self._last_fetch.get(server_name)
            if last is not None and now - last < self._refetch_interval_ms:
                return
            self._last_fetch[server_name] = now
            task = asyncio.create_task(self._fetch(server_name, key_id, at_ts, allow_notaries))
            self._inflight[server_name] = task
            task.add_done_callback(lambda t: self._fetch_done(server_name, t))
        # shield: one cancelled waiter must not cancel the fetch the others wait for.
        await asyncio.shield(task)

    def _fetch_done(self, server_name: str, task: asyncio.Task[None]) -> None:
        if self._inflight.get(server_name) is task:
            del self._inflight[server_name]
        if not task.cancelled() and task.exception() is not None:
            log.warning("fetching keys of %s failed", server_name, exc_info=task.exception())

    async def _fetch(self, server_name: str, key_id: str | None, at_ts: int | None, allow_notaries: bool) -> None:
        direct_ok = await self._fetch_direct(server_name)
        if not allow_notaries or not self._notaries:
            return
        if direct_ok and (key_id is None or self._usable(self._cache.get((server_name, key_id)), at_ts)):
            return
        await self._fetch_from_notaries(server_name, key_id, at_ts)

    async def _fetch_direct(self, server_name: str) -> bool:
        try:
            body = await self._client.get_json_unsigned(server_name, KEY_PATH, timeout=self._fetch_timeout)
            response = parse_key_response(server_name, body)
        except (FederationRequestError, KeyResponseError) as e:
            log.info("key fetch from %s failed: %s", server_name, e)
            return False
        await self._save(response)
        return True

    async def _fetch_from_notaries(self, server_name: str, key_id: str | None, at_ts: int | None) -> None:
        now = self._clock()
        wanted = {} if key_id is None else {key_id: {"minimum_valid_until_ts": now if at_ts is None else at_ts}}
        for notary in self._notaries:
            if notary == server_name:
                continue
            try:
                reply = await self._client.request(
                    "POST", notary, QUERY_PATH, body={"server_keys": {server_name: wanted}},
                    timeout=self._fetch_timeout,
                )
            except FederationRequestError as e:
                log.info("notary %s could not be asked about %s: %s", notary, server_name, e)
                continue
            items = reply.get("server_keys") if isinstance(reply, dict) else None
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict) or item.get("server_name") != server_name:
                    continue
                try:
                    response = parse_key_response(server_name, item)
                    await self._check_notary_signature(notary, item)
                except (KeyResponseError, SignatureError) as e:
                    log.info("notary %s answer for %s rejected: %s", notary, server_name, e)
                    continue
                await self._save(response)
                if key_id is None or self._usable(self._cache.get((server_name, key_id)), at_ts):
                    return

    async def _check_notary_signature(self, notary: str, item: dict[str, Any]) -> None:
        for kid in signature_key_ids(item, notary):
            try:
                # Never ask notaries about a notary: that could loop.
                verify_key = await self._lookup(notary, kid, None, allow_notaries=False)
            except SignatureError:
                continue
            verify_json_signature(item, notary, kid, verify_key)
            return
        raise SignatureError(f"no verifiable signature of notary {notary}")

    async def _save(self, response: KeyResponse) -> None:
        keys = response.server_keys(self._clock())
        await self._store.store_keys(keys)
        await self._store.store_key_response(response.server_name, response.raw, response.valid_until_ts)
        for key in keys:
            self._cache[(key.server_name, key.key_id)] = key


def _stale(response: Mapping[str, Any], key_ids: Collection[str], min_valid: int) -> bool:
    valid_until = response.get("valid_until_ts")
    if not _is_int(valid_until) or valid_until < min_valid:
        return True
    known = set(response.get("verify_keys") or ()) | set(response.get("old_verify_keys") or ())
    return any(kid not in known for kid in key_ids)
