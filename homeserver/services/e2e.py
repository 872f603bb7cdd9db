"""End-to-end encryption plumbing: keys, claims, to-device messages and device lists.

The server stores and routes; it never decrypts. Spec: client-server API,
"End-to-End Encryption" and "Send-to-Device messaging". What this asks of other
servers is `RemoteKeysPort`; /sync calls `sync_into` once.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import attrs

from homeserver.core import e2e_keys
from homeserver.core.errors import MatrixError, bad_json
from homeserver.core.ids import server_of
from homeserver.core.records import OneTimeKey
from homeserver.services.auth import Requester
from homeserver.services.lru import LruCache
from homeserver.services.notifier import NotifierPort, SyncToken
from homeserver.services.replication import Positions
from storage.stores.e2e import E2eStore

TO_DEVICE_LIMIT = 100
REMOTE_TIMEOUT_MS = 10_000  # spec default of /keys/query and /keys/claim `timeout`



class RemoteKeysPort(Protocol):
    """Keys of users on other servers, and what our users' devices tell them."""

    async def query(self, server: str, device_keys: dict[str, list[str]]) -> dict[str, Any]:
        """Their /user/keys/query answer; raises on failure."""

    async def claim(self, server: str, one_time_keys: dict[str, dict[str, str]]) -> dict[str, Any]:
        """Their /user/keys/claim answer; raises on failure."""

    async def send_to_device(self, server: str, sender: str, ev_type: str, message_id: str,
                             messages: dict[str, dict[str, Any]]) -> None:
        """Queue an m.direct_to_device EDU."""

    async def device_list_changed(self, user_id: str, device_id: str, stream_id: int, prev_id: int | None,
                                  deleted: bool, keys: dict[str, Any] | None) -> None:
        """Tell servers sharing a room with the user (m.device_list_update)."""

    async def signing_keys_changed(self, user_id: str, keys: dict[str, dict[str, Any]]) -> None:
        """Tell servers sharing a room with the user of new cross-signing keys
        (m.signing_key_update); `keys` maps key types to keys."""


class NullRemoteKeys:
    """Federation off: other servers' users are unreachable."""

    async def query(self, server: str, device_keys: dict[str, list[str]]) -> dict[str, Any]:
        raise MatrixError(502, "M_UNKNOWN", "Federation is disabled")

    async def claim(self, server: str, one_time_keys: dict[str, dict[str, str]]) -> dict[str, Any]:
        raise MatrixError(502, "M_UNKNOWN", "Federation is disabled")

    async def send_to_device(self, server: str, sender: str, ev_type: str, message_id: str,
                             messages: dict[str, dict[str, Any]]) -> None:
        return None

    async def device_list_changed(self, user_id: str, device_id: str, stream_id: int, prev_id: int | None,
                                  deleted: bool, keys: dict[str, Any] | None) -> None:
        return None

    async def signing_keys_changed(self, user_id: str, keys: dict[str, dict[str, Any]]) -> None:
        return None


@attrs.frozen
class Membership:
    """What the rest of the server tells us about who shares rooms."""

    users_sharing_rooms: Callable[[str], Awaitable[set[str]]]
    device_names: Callable[[str], Awaitable[dict[str, str | None]]]
    """A local user's devices: device id -> display name."""
    users_departed: Callable[[str, int, int], Awaitable[set[str]]]
    """Users who may have stopped sharing a room with the user between two event stream
    positions (they left a room of the user's, or the user left theirs)."""
    users_sharing_at: Callable[[str, int], Awaitable[set[str]]]
    """Users sharing a room with the user as of an event stream position."""

    async def devices_of(self, user_id: str) -> list[str]:
        return list(await self.device_names(user_id))


class E2eService:
    def __init__(
        self, *, store: E2eStore, notifier: NotifierPort, server_name: str, membership: Membership,
        remote: RemoteKeysPort, to_device_ids: Positions, device_list_ids: Positions,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._server_name = server_name
        self._membership = membership
        self._remote = remote
        self._to_device_ids = to_device_ids
        self._device_list_ids = device_list_ids
        # (user, device, txn id) of recent /sendToDevice calls: a retried txn is not re-sent;
        # (origin, message_id) of recent m.direct_to_device EDUs likewise.
        self._txns: LruCache[tuple[str, str, str], bool] = LruCache(10_000)
        self._message_ids: LruCache[tuple[str, str], bool] = LruCache(10_000)
        # What every /sync of a device reports (one-time key counts, unused fallback
        # algorithms), kept until an upload, a claim or the device's deletion changes it,
        # so a woken long-poll asks the database nothing. A generation per device keeps a
        # read that raced a change from caching the old answer.
        self._key_counts: LruCache[tuple[str, str], tuple[dict[str, int], list[str]]] = LruCache(100_000)
        self._key_generation: dict[tuple[str, str], int] = {}
        # Devices that were given to-device messages: their next sync acknowledges (deletes) them.
        self._awaiting_ack: set[tuple[str, str]] = set()

    def _is_local(self, user_id: str) -> bool:
        return server_of(user_id) == self._server_name

    # -- /keys/upload ------------------------------------------------------------

    async def upload(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        user, device = requester.user_id, requester.device_id
        device_keys = body.get("device_keys")
        otks = e2e_keys.parse_key_map(body.get("one_time_keys"), "one_time_keys")
        fallbacks = e2e_keys.parse_key_map(body.get("fallback_keys"), "fallback_keys")
        if device_keys is not None:
            device_keys = e2e_keys.check_device_keys(device_keys, user, device)
            held = await self._store.get_device_keys(user, device)
            # Spec: identity keys are fixed for a device's life; a re-upload only adds signatures.
            if held is None or not e2e_keys.same_signed_content(held, device_keys):
                if held is not None and held.get("keys") != device_keys.get("keys"):
                    raise MatrixError(400, "M_INVALID_PARAM", "This device's identity keys are already set")
                await self._device_keys_changed(user, device, device_keys)
        await self._store.add_one_time_keys(user, device, [OneTimeKey(*k) for k in otks])
        if fallbacks:
            await self._store.set_fallback_keys(user, device, [OneTimeKey(*k) for k in fallbacks])
        self._forget_key_counts(user, device)
        counts = await self._store.one_time_key_counts(user, device)
        return {"one_time_key_counts": {"signed_curve25519": 0, **counts}}

    async def _device_keys_changed(self, user: str, device: str, keys: dict[str, Any]) -> None:
        prev = await self._store.last_change(user)
        async with self._device_list_ids.take() as taken:
            pos = taken.first
            await self._store.set_device_keys(user, device, keys, pos)
            taken.wake(await self._device_list_audience(user))
        await self._remote.device_list_changed(user, device, pos, prev, False, keys)

    async def _device_list_audience(self, user: str) -> set[str]:
        """Whose device_lists a change of the user's keys concerns (themselves included)."""
        return await self._membership.users_sharing_rooms(user) | {user}

    async def device_deleted(self, user_id: str, device_id: str) -> None:
        """A local device was deleted (logout, device deletion): its keys go too."""
        prev = await self._store.last_change(user_id)
        async with self._device_list_ids.take() as taken:
            pos = taken.first
            await self._store.delete_device(user_id, device_id, pos)
            self._forget_key_counts(user_id, device_id)
            taken.wake(await self._device_list_audience(user_id))
        await self._remote.device_list_changed(user_id, device_id, pos, prev, True, None)

    async def remote_device_list_changed(self, user_id: str) -> None:
        """A peer said a user of theirs changed devices: our users sharing a room re-query."""
        async with self._device_list_ids.take() as taken:
            pos = taken.first
            await self._store.mark_changed(user_id, pos)
            taken.wake(await self._device_list_audience(user_id))

    # -- /keys/query -------------------------------------------------------------

    async def query(
        self, requester: Requester | None, wanted: dict[str, list[str]], timeout_s: float = REMOTE_TIMEOUT_MS / 1000,
    ) -> dict[str, Any]:
        """Device and cross-signing keys of local users and, through their servers, remote ones."""
        local = {u: d for u, d in wanted.items() if self._is_local(u)}
        out = await self.query_local(local, requester.user_id if requester else None)
        out["failures"] = {}
        by_server: dict[str, dict[str, list[str]]] = {}
        for user, devices in wanted.items():
            if not self._is_local(user):
                by_server.setdefault(server_of(user), {})[user] = devices

        async def ask(server: str, users: dict[str, list[str]]) -> None:
            try:
                answer = await asyncio.wait_for(self._remote.query(server, users), timeout_s)
            except Exception as e:  # any failure of one server is reported, never fatal (spec)
                out["failures"][server] = {"status": 503, "message": str(e) or type(e).__name__}
                return
            for section in ("device_keys", "master_keys", "self_signing_keys"):
                got = answer.get(section)
                if isinstance(got, dict):
                    out.setdefault(section, {}).update(
                        {u: v for u, v in got.items() if u in users and server_of(u) == server})

        await asyncio.gather(*(ask(s, u) for s, u in by_server.items()))
        if requester is not None:
            await self._with_my_signatures(requester.user_id, out)
        return out

    async def query_local(self, wanted: dict[str, list[str]], requester: str | None) -> dict[str, Any]:
        """Keys of local users; an empty device list means every device. `user_signing_keys`
        only to their owner (spec: /keys/query)."""
        stored = await self._store.device_keys_for(wanted)
        device_keys: dict[str, dict[str, Any]] = {}
        for user, devices in wanted.items():
            held = stored.get(user, {})
            picked = held if not devices else {d: held[d] for d in devices if d in held}
            device_keys[user] = {}
            for device_id, keys in picked.items():
                device_keys[user][device_id] = keys
        out: dict[str, Any] = {"device_keys": device_keys, "master_keys": {}, "self_signing_keys": {}}
        if requester is not None:
            out["user_signing_keys"] = {}
        for user, keys in (await self._store.cross_signing_keys_for(wanted)).items():
            for key_type in ("master", "self_signing"):
                if key_type in keys:
                    out[f"{key_type}_keys"][user] = keys[key_type]
            if user == requester and "user_signing" in keys:
                out["user_signing_keys"][user] = keys["user_signing"]
        return out

    # -- /keys/claim -------------------------------------------------------------

    async def claim(
        self, wanted: dict[str, dict[str, str]], timeout_s: float = REMOTE_TIMEOUT_MS / 1000,
    ) -> dict[str, Any]:
        local = {u: d for u, d in wanted.items() if self._is_local(u)}
        out: dict[str, Any] = {"one_time_keys": await self.claim_local(local), "failures": {}}
        by_server: dict[str, dict[str, dict[str, str]]] = {}
        for user, devices in wanted.items():
            if not self._is_local(user):
                by_server.setdefault(server_of(user), {})[user] = devices

        async def ask(server: str, users: dict[str, dict[str, str]]) -> None:
            try:
                answer = await asyncio.wait_for(self._remote.claim(server, users), timeout_s)
            except Exception as e:  # reported per server (spec: failures)
                out["failures"][server] = {"status": 503, "message": str(e) or type(e).__name__}
                return
            got = answer.get("one_time_keys")
            if isinstance(got, dict):
                out["one_time_keys"].update({u: v for u, v in got.items() if u in users})

        await asyncio.gather(*(ask(s, u) for s, u in by_server.items()))
        return out

    async def claim_local(self, wanted: dict[str, dict[str, str]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for user, devices in wanted.items():
            for device_id, algorithm in devices.items():
                key = await self._store.claim(user, device_id, algorithm)
                self._forget_key_counts(user, device_id)
                if key is not None:
                    out.setdefault(user, {})[device_id] = {f"{key.algorithm}:{key.key_id}": key.key}
        return out

    # -- what peers ask ---------------------------------------------------------

    async def user_devices(self, user_id: str) -> dict[str, Any]:
        """GET /_matrix/federation/v1/user/devices/{userId}: a local user's devices with keys."""
        if not self._is_local(user_id):
            raise MatrixError(403, "M_FORBIDDEN", "Not a user of this server")
        keys = (await self._store.device_keys_for([user_id])).get(user_id, {})
        names = await self._membership.device_names(user_id)
        devices = []
        for device_id, name in names.items():
            if device_id not in keys:
                # Spec: every listed device carries its (required) device keys; one that has
                # uploaded none cannot take part in encryption, so it is left out.
                continue
            device: dict[str, Any] = {"device_id": device_id, "keys": keys[device_id]}
            if name:
                device["device_display_name"] = name
            devices.append(device)
        out: dict[str, Any] = {
            "user_id": user_id, "stream_id": await self._store.last_change(user_id) or 0, "devices": devices,
        }
        cross = (await self._store.cross_signing_keys_for([user_id])).get(user_id, {})
        for key_type in ("master", "self_signing"):
            if key_type in cross:
                out[f"{key_type}_key"] = cross[key_type]
        return out

    async def receive_device_list_update(self, origin: str, content: dict[str, Any]) -> None:
        """An m.device_list_update or m.signing_key_update EDU: the user's devices or
        cross-signing keys changed on their server; either way our users re-query."""
        user_id = content.get("user_id")
        if isinstance(user_id, str) and server_of(user_id) == origin and not self._is_local(user_id):
            await self.remote_device_list_changed(user_id)

    # -- /keys/changes -----------------------------------------------------------

    async def changes(self, requester: Requester, from_token: SyncToken, to_token: SyncToken) -> dict[str, Any]:
        """Users sharing a room with the requester whose devices changed between the tokens,
        and (`left`) users who stopped sharing any room with them, as /sync reports them."""
        changed = await self._store.users_changed(from_token.device_lists, to_token.device_lists)
        # Membership as of `to`, from the membership events of the range: someone who left
        # one shared room but still shares another (or left and joined another one of ours
        # before `to`) is not `left`, whatever happened after `to`.
        sharing = await self._membership.users_sharing_at(requester.user_id, to_token.events)
        departed = await self._membership.users_departed(requester.user_id, from_token.events, to_token.events)
        return _device_list_delta(requester.user_id, changed & (sharing | {requester.user_id}), departed, sharing)

    # -- cross-signing -----------------------------------------------------------

    async def has_master_key(self, user_id: str) -> bool:
        return "master" in (await self._store.cross_signing_keys_for([user_id])).get(user_id, {})

    async def upload_cross_signing(self, requester: Requester, body: dict[str, Any]) -> None:
        """/keys/device_signing/upload: master signs the others (spec "Cross-signing")."""
        user = requester.user_id
        given = {t: body[f"{t}_key"] for t in e2e_keys.CROSS_SIGNING_TYPES if body.get(f"{t}_key") is not None}
        keys = {t: e2e_keys.check_cross_signing_key(k, user, t) for t, k in given.items()}
        master = keys.get("master") or (await self._store.cross_signing_keys_for([user])).get(user, {}).get("master")
        if master is None:
            raise MatrixError(400, "M_MISSING_PARAM", "A master key is needed")
        key_id, value = e2e_keys.public_key(master)
        for t in ("self_signing", "user_signing"):
            if t in keys:
                e2e_keys.check_self_signed(keys[t], user, key_id, value)
        if not keys:
            return
        async with self._device_list_ids.take() as taken:
            pos = taken.first
            await self._store.set_cross_signing_keys(user, keys, pos)
            taken.wake(await self._device_list_audience(user))
        await self._remote.signing_keys_changed(user, keys)

    async def upload_signatures(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        """/keys/signatures/upload: signatures of the requester's own devices and keys, and of
        other users' master keys (ours or remote) by the requester's user-signing key; each
        is checked against the signing key it names. What cannot be stored comes back in
        `failures` (spec: M_INVALID_SIGNATURE for a bad or impossible signature)."""
        failures: dict[str, dict[str, Any]] = {}
        for user, by_id in body.items():
            if not isinstance(by_id, dict):
                raise bad_json("signatures must map users to objects")
            for key_or_device, signed in by_id.items():
                try:
                    await self._add_signature(requester.user_id, user, key_or_device, signed)
                except MatrixError as e:
                    failures.setdefault(user, {})[key_or_device] = e.to_json()
        return {"failures": failures}

    async def _add_signature(self, signer: str, user: str, target_id: str, signed: Any) -> None:
        if not isinstance(signed, dict):
            raise bad_json("a signed object is expected")
        if user != signer:
            await self._sign_other_user(signer, user, target_id, signed)
            return
        cross = (await self._store.cross_signing_keys_for([user, signer]))
        held_device = await self._store.get_device_keys(user, target_id)
        held_master = cross.get(user, {}).get("master")
        if held_device is not None:
            target, signing_type = held_device, "self_signing"
        elif held_master is not None and e2e_keys.public_key(held_master)[0] == f"ed25519:{target_id}":
            target, signing_type = held_master, "master"
        else:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown key")
        if not e2e_keys.same_signed_content(target, signed):
            raise MatrixError(400, "M_INVALID_SIGNATURE", "The signed object differs from the stored one")
        if signing_type == "master":
            # the owner's device signs their master key (spec "Cross-signing": a device
            # vouches for the master key it trusts); only the device signatures are kept
            signed = await self._device_signatures(user, target, signed)
        else:
            signed = _cross_signing_signature(cross, signer, signing_type, signed)
        merged = e2e_keys.merge_signatures(target, signed)
        if target is held_device:
            await self._store.replace_device_keys(user, target_id, merged)
        else:
            await self._store.replace_cross_signing_key(user, "master", merged)
        async with self._device_list_ids.take() as taken:
            pos = taken.first
            await self._store.mark_changed(user, pos)
            taken.wake(await self._device_list_audience(user))

    async def _sign_other_user(self, signer: str, user: str, target_id: str, signed: dict[str, Any]) -> None:
        """Another user's master key (of this server or another) signed with the signer's
        user-signing key (spec "Cross-signing"). Kept apart from the key: only the signer
        sees it, in their /keys/query answers; it is not sent to other servers. Nothing
        else of another user can be signed: their devices are signed by their own
        self-signing key."""
        if "master" not in (signed.get("usage") or []) or signed.get("user_id") != user:
            raise MatrixError(400, "M_INVALID_SIGNATURE", "Only the master key of another user can be signed")
        master = await self._master_key_of(user)
        if master is None:
            raise MatrixError(404, "M_NOT_FOUND", "The user has no master key")
        key_id = e2e_keys.public_key(master)[0]
        if key_id != f"ed25519:{target_id}":
            raise MatrixError(404, "M_NOT_FOUND", "Not the user's master key")
        if not e2e_keys.same_signed_content(master, signed):
            raise MatrixError(400, "M_INVALID_SIGNATURE", "The signed object differs from the user's master key")
        usk = (await self._store.cross_signing_keys_for([signer])).get(signer, {}).get("user_signing")
        if usk is None:
            raise MatrixError(400, "M_INVALID_SIGNATURE", "No user_signing key")
        usk_id, usk_value = e2e_keys.public_key(usk)
        e2e_keys.check_self_signed(signed, signer, usk_id, usk_value)
        await self._store.add_user_signature(signer, user, key_id, usk_id, signed["signatures"][signer][usk_id])
        # The signer's other devices re-query their keys (and so see the new signature).
        async with self._device_list_ids.take() as taken:
            pos = taken.first
            await self._store.mark_changed(signer, pos)
            taken.wake(await self._device_list_audience(signer))

    async def _master_key_of(self, user: str) -> dict[str, Any] | None:
        """The user's master key as this server holds it or, for a remote user, as their
        server answers now (spec: the signed object must match the key retrieved)."""
        if self._is_local(user):
            return (await self._store.cross_signing_keys_for([user])).get(user, {}).get("master")
        try:
            answer = await asyncio.wait_for(self._remote.query(server_of(user), {user: []}), REMOTE_TIMEOUT_MS / 1000)
        except Exception as e:  # unreachable: this signature fails, the others go on
            raise MatrixError(502, "M_UNKNOWN", f"Could not fetch the master key: {e or type(e).__name__}") from e
        master = (answer.get("master_keys") or {}).get(user)
        if not isinstance(master, dict) or not isinstance(master.get("keys"), dict) or len(master["keys"]) != 1:
            return None
        return master

    async def _with_my_signatures(self, requester: str, out: dict[str, Any]) -> None:
        """Merge the signatures the requester's user-signing key made into the master keys
        of the answer (spec /keys/query: the signatures the requester may see)."""
        masters = out.get("master_keys") or {}
        mine = await self._store.user_signatures(requester, [u for u in masters if u != requester])
        for user, by_key in mine.items():
            master = masters.get(user)
            if not isinstance(master, dict) or not isinstance(master.get("keys"), dict):
                continue
            for key_id, sigs in by_key.items():
                if key_id in master["keys"]:
                    masters[user] = master = e2e_keys.merge_signatures(master, {"signatures": {requester: sigs}})

    async def _device_signatures(self, user: str, master: dict[str, Any], signed: dict[str, Any]) -> dict[str, Any]:
        """The signatures of `user`'s devices that `signed` adds to their master key, each
        checked with that device's ed25519 key; `signed` with only those."""
        held = (master.get("signatures") or {}).get(user, {})
        given = (signed.get("signatures") or {}).get(user)
        new = {k: v for k, v in given.items() if k not in held} if isinstance(given, dict) else {}
        if not new:
            raise MatrixError(400, "M_INVALID_SIGNATURE", "No new device signature")
        for key_id in new:
            algorithm, _, device_id = key_id.partition(":")
            device = await self._store.get_device_keys(user, device_id) if algorithm == "ed25519" else None
            if device is None:
                raise MatrixError(400, "M_INVALID_SIGNATURE", f"Unknown device key {key_id}")
            one = {**signed, "signatures": {user: {key_id: new[key_id]}}}
            e2e_keys.check_self_signed(one, user, key_id, device.get("keys", {}).get(key_id))
        return {**signed, "signatures": {user: new}}

    # -- to-device ---------------------------------------------------------------

    async def send_to_device(
        self, requester: Requester, ev_type: str, txn_id: str, messages: dict[str, Any],
    ) -> None:
        """PUT /sendToDevice: queue for local devices ("*" = all of them), and hand the
        rest to their servers. Idempotent per device and txn id."""
        txn = (requester.user_id, requester.device_id, txn_id)
        if self._txns.get(txn):
            return
        rows: list[tuple[str, str, dict[str, Any]]] = []
        remote: dict[str, dict[str, dict[str, Any]]] = {}
        for user, by_device in messages.items():
            if not isinstance(by_device, dict) or not all(isinstance(c, dict) for c in by_device.values()):
                raise bad_json("messages must map users to devices to content objects")
            if not self._is_local(user):
                remote.setdefault(server_of(user), {})[user] = by_device
                continue
            devices = await self._membership.devices_of(user)
            for device_id, content in by_device.items():
                targets = devices if device_id == "*" else [device_id] if device_id in devices else []
                for target in targets:
                    message = {"type": ev_type, "sender": requester.user_id, "content": content}
                    rows.append((user, target, message))
        await self.deliver_local(rows)
        for server, msgs in remote.items():
            await self._remote.send_to_device(server, requester.user_id, ev_type, secrets.token_hex(12), msgs)
        self._txns.put(txn, True)

    async def deliver_local(self, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        """(user, device, message) rows queued at consecutive positions."""
        if not rows:
            return
        async with self._to_device_ids.take(len(rows)) as taken:
            await self._store.queue_to_device([(pos, *row) for pos, row in zip(taken.ids, rows, strict=True)])
            taken.wake(user for user, _, _ in rows)

    async def receive_to_device(self, origin: str, content: dict[str, Any]) -> None:
        """An m.direct_to_device EDU from `origin` (spec: server-server "Send-to-device
        messaging"); a message_id seen before is not delivered again."""
        sender, ev_type, messages = content.get("sender"), content.get("type"), content.get("messages")
        if not isinstance(sender, str) or server_of(sender) != origin or not isinstance(ev_type, str) \
                or not isinstance(messages, dict):
            return
        message_id = content.get("message_id")
        if isinstance(message_id, str):
            if self._message_ids.get((origin, message_id)):
                return
            self._message_ids.put((origin, message_id), True)
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for user, by_device in messages.items():
            if not isinstance(user, str) or not self._is_local(user) or not isinstance(by_device, dict):
                continue
            devices = await self._membership.devices_of(user)
            for device_id, body in by_device.items():
                if not isinstance(body, dict):
                    continue
                targets = devices if device_id == "*" else [device_id] if device_id in devices else []
                for target in targets:
                    rows.append((user, target, {"type": ev_type, "sender": sender, "content": body}))
        await self.deliver_local(rows)

    # -- /sync -------------------------------------------------------------------

    async def sync_into(
        self, requester: Requester, since: SyncToken | None, now: SyncToken, resp: dict[str, Any],
        acked_to_device: int | None = None,
    ) -> None:
        """Fill `to_device`, `device_lists`, `device_one_time_keys_count` and
        `device_unused_fallback_key_types` of a /sync answer; the next `since` acknowledges
        (and deletes) the to-device messages given here. A transport with explicit
        acknowledgements (the WebSocket) passes `acked_to_device`: only messages up to it
        are deleted, and those after `since` are given."""
        user, device = requester.user_id, requester.device_id
        after = since.to_device if since is not None else 0
        acked = after if acked_to_device is None else min(acked_to_device, after)
        # Nothing queued for the user since `acked` and nothing given that this sync
        # acknowledges: no query.
        if (
            since is None or (user, device) in self._awaiting_ack
            or self._notifier.maybe_changed("to_device", user, after)
        ):
            messages = await self._store.to_device(user, device, acked, now.to_device, TO_DEVICE_LIMIT, after)
            if messages:
                self._awaiting_ack.add((user, device))
            else:
                self._awaiting_ack.discard((user, device))
            resp["to_device"]["events"] = [m.message for m in messages]
            if len(messages) == TO_DEVICE_LIMIT:
                # more are waiting: the next batch starts after the last one given
                resp["next_batch"] = attrs.evolve(now, to_device=messages[-1].stream_id).encode()
        counts, fallback = await self._device_key_counts(user, device)
        resp["device_one_time_keys_count"] = {"signed_curve25519": 0, **counts}
        resp["device_unused_fallback_key_types"] = list(fallback)
        if since is not None:
            resp["device_lists"] = await self._device_lists(user, since, now, resp)

    def _forget_key_counts(self, user: str, device: str) -> None:
        key = (user, device)
        self._key_generation[key] = self._key_generation.get(key, 0) + 1
        self._key_counts.pop(key)

    async def _device_key_counts(self, user: str, device: str) -> tuple[dict[str, int], list[str]]:
        key = (user, device)
        hit = self._key_counts.get(key)
        if hit is not None:
            return hit
        generation = self._key_generation.get(key, 0)
        counts = await self._store.one_time_key_counts(user, device)
        fallback = await self._store.unused_fallback_algorithms(user, device)
        if self._key_generation.get(key, 0) == generation:
            self._key_counts.put(key, (counts, fallback))
        return counts, fallback

    async def _device_lists(
        self, user: str, since: SyncToken, now: SyncToken, resp: dict[str, Any],
    ) -> dict[str, list[str]]:
        """Spec: `changed` are users sharing a room whose devices changed, and users who
        now share a room and did not; `left` those who share none any more. Membership
        changes are read from the answer's own room sections."""
        changed_keys: set[str] = set()
        if since.device_lists < now.device_lists and self._notifier.maybe_changed(
            "device_lists", user, since.device_lists,
        ):
            changed_keys = await self._store.users_changed(since.device_lists, now.device_lists)
        changed: set[str] = set()
        rooms = resp["rooms"]
        for section in rooms["join"].values():
            for ev in _member_events(section):
                if ev.get("content", {}).get("membership") == "join" and ev["state_key"] != user:
                    changed.add(ev["state_key"])
        left: set[str] = set()
        for section in [*rooms["join"].values(), *rooms["leave"].values()]:
            for ev in _member_events(section):
                if ev.get("content", {}).get("membership") in ("leave", "ban"):
                    left.add(ev["state_key"])
        for section in rooms["leave"].values():
            left.update(ev["state_key"] for ev in _member_events(section))
        if not changed_keys and not changed and not left:
            return {"changed": [], "left": []}  # the common wake-up: no query at all
        # Who shares a room as of this answer's position (not whatever came after it).
        sharing = await (
            self._membership.users_sharing_at(user, now.events) if left
            else self._membership.users_sharing_rooms(user)
        )
        return _device_list_delta(user, changed | (changed_keys & (sharing | {user})), left, sharing)


def _device_list_delta(user: str, changed: set[str], departed: set[str], sharing: set[str]) -> dict[str, Any]:
    """`device_lists` of /sync and /keys/changes (spec "Tracking the device list for a
    user"): `left` are the departed who share no room with `user` now; they are not `changed`."""
    left = {u for u in departed - sharing if u != user}
    return {"changed": sorted(changed - left), "left": sorted(left)}


def _cross_signing_signature(
    cross: dict[str, dict[str, Any]], signer: str, signing_type: str, signed: dict[str, Any],
) -> dict[str, Any]:
    """`signed`, checked against the signer's `signing_type` cross-signing key."""
    signing = cross.get(signer, {}).get(signing_type)
    if signing is None:
        raise MatrixError(400, "M_INVALID_SIGNATURE", f"No {signing_type} key")
    key_id, value = e2e_keys.public_key(signing)
    e2e_keys.check_self_signed(signed, signer, key_id, value)
    return signed


def _member_events(section: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for part in ("state", "timeline"):
        for ev in section.get(part, {}).get("events", []):
            if ev.get("type") == "m.room.member" and isinstance(ev.get("state_key"), str):
                yield ev

