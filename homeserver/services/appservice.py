"""Application services (spec: "Application Service API"): who they are (as_token auth,
masquerading, namespaces), what they may claim (M_EXCLUSIVE), and what the homeserver asks
of them (lazy user/alias provisioning, ping, third-party lookups).

The transaction queue that pushes events to them is in appservice_queue.py.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any, Protocol

from homeserver.core.appservice import AppAnswer, AppService
from homeserver.core.errors import MatrixError, forbidden, unknown_token
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from storage.stores.appservice import AppServiceStore
from storage.stores.users import UserStore

log = logging.getLogger(__name__)


class AppServiceApiPort(Protocol):
    """The homeserver -> application service HTTP API (homeserver/outbound/appservice.py)."""

    async def send_transaction(self, service: AppService, txn_id: str, body: bytes) -> bool:
        """PUT /_matrix/app/v1/transactions/{txnId}; True once the service answered 2xx."""
        ...

    async def request(
        self, service: AppService, method: str, path: str, *, query: dict[str, str] | None = None,
        body: Any = None,
    ) -> AppAnswer: ...

    async def close(self) -> None: ...


def exclusive(message: str) -> MatrixError:
    return MatrixError(400, "M_EXCLUSIVE", message)


class AppServiceRegistry:
    """The registered services, by token and by id, and the checks every other service asks."""

    def __init__(
        self, *, services: Sequence[AppService], users: UserStore, api: AppServiceApiPort,
        store: AppServiceStore, server_name: str,
    ) -> None:
        self.services = tuple(services)
        self._by_token = {s.as_token: s for s in services}
        self._by_id = {s.id: s for s in services}
        self._users = users
        self._api = api
        self._store = store
        self._name = server_name

    async def start(self) -> None:
        """Every service's sender user exists (spec: the service acts as it by default)."""
        for service in self.services:
            if await self._users.get_user(service.sender) is None:
                await self._users.create_user(
                    service.sender, None, now_ms(), False, displayname=service.sender[1:].split(":")[0],
                )

    def get(self, as_id: str) -> AppService | None:
        return self._by_id.get(as_id)

    def by_token(self, token: str) -> AppService | None:
        # Compared in constant time so a token cannot be guessed byte by byte.
        for candidate, service in self._by_token.items():
            if secrets.compare_digest(candidate, token):
                return service
        return None

    async def authenticate(self, token: str, user_id: str | None) -> Requester | None:
        """Spec "Identity assertion": an as_token acts as the sender, or as `user_id` when
        that user is in one of the service's user namespaces and registered. None when the
        token is not an as_token (the caller then tries access tokens)."""
        service = self.by_token(token)
        if service is None:
            return None
        target = user_id or service.sender
        if not service.is_user_in_namespace(target):
            raise forbidden("Application service cannot masquerade as this user")
        user = await self._users.get_user(target)
        if user is None or user.deactivated:
            raise forbidden("Application service has not registered this user")
        return Requester(
            target, "", f"as:{service.id}", user.is_admin, app_service=service.id,
            rate_limited=service.rate_limited,
        )

    def service_of(self, requester: Requester) -> AppService | None:
        return None if requester.app_service is None else self._by_id.get(requester.app_service)

    # -- exclusivity (spec "Server admin style permissions" and M_EXCLUSIVE) ------------------

    def check_user_id(self, user_id: str, service: AppService | None) -> None:
        """A service registers only inside its user namespaces; nobody else inside another
        service's exclusive ones."""
        if service is not None:
            if not service.is_user_in_namespace(user_id):
                raise exclusive("User ID is not in the application service's namespaces")
            return
        if any(s.claims_user(user_id) for s in self.services):
            raise exclusive("User ID is reserved by an application service")

    def check_alias(self, alias: str, service: AppService | None) -> None:
        if service is not None:
            if not service.is_alias_in_namespace(alias):
                raise exclusive("Alias is not in the application service's namespaces")
            return
        if any(s.claims_alias(alias) for s in self.services):
            raise exclusive("Alias is reserved by an application service")

    # -- lazy provisioning (spec "Querying") -------------------------------------------------

    async def query_user(self, user_id: str) -> bool:
        """Ask the services whose user namespace covers an unknown user; True when one
        answered 200 (it has then created the user, spec GET /_matrix/app/v1/users/{userId})."""
        for service in self.services:
            if service.url and service.is_user_in_namespace(user_id) and user_id != service.sender:
                answer = await self._api.request(service, "GET", f"/users/{_q(user_id)}")
                if answer.status == 200:
                    return True
        return False

    async def query_alias(self, alias: str) -> bool:
        """Same for an unknown alias (spec GET /_matrix/app/v1/rooms/{roomAlias})."""
        for service in self.services:
            if service.url and service.is_alias_in_namespace(alias):
                answer = await self._api.request(service, "GET", f"/rooms/{_q(alias)}")
                if answer.status == 200:
                    return True
        return False

    # -- ping (spec POST /_matrix/client/v1/appservice/{appserviceId}/ping) --------------------

    async def ping(self, requester: Requester, as_id: str, transaction_id: str | None) -> dict[str, Any]:
        service = self.service_of(requester)
        if service is None or service.id != as_id:
            raise forbidden("The access token does not belong to this application service")
        if not service.url:
            raise MatrixError(400, "M_URL_NOT_SET", "The application service has no URL")
        body = {"transaction_id": transaction_id} if transaction_id is not None else {}
        started = now_ms()
        answer = await self._api.request(service, "POST", "/ping", body=body)
        if answer.failure == "timeout":
            raise MatrixError(504, "M_CONNECTION_TIMEOUT", "Connection to the application service timed out")
        if answer.failure is not None:
            raise MatrixError(502, "M_CONNECTION_FAILED", "Could not connect to the application service")
        if answer.status != 200:
            raise MatrixError(
                502, "M_BAD_STATUS", f"Ping returned status {answer.status}",
                status=answer.status, body=answer.text,
            )
        return {"duration_ms": now_ms() - started}

    # -- published room directories ------------------------------------------------------------

    async def set_listed(self, requester: Requester, network_id: str, room_id: str, visibility: str) -> None:
        service = self.service_of(requester)
        if service is None:
            raise forbidden("Only application services can use this API")
        await self._store.set_listed(service.id, network_id, room_id, visibility == "public")

    async def listed_rooms(self, network_id: str | None) -> list[str]:
        return await self._store.listed_rooms(network_id)

    # -- third-party networks (spec client-server "Third-party networks") ------------------------

    def _with_protocol(self, protocol: str) -> list[AppService]:
        return [s for s in self.services if protocol in s.protocols and s.url]

    async def protocols(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for service in self.services:
            for protocol in service.protocols:
                if protocol in out or not service.url:
                    continue
                answer = await self._api.request(service, "GET", f"/thirdparty/protocol/{_q(protocol)}")
                if answer.status == 200 and isinstance(answer.body, dict):
                    out[protocol] = answer.body
        return out

    async def protocol(self, protocol: str) -> dict[str, Any]:
        for service in self._with_protocol(protocol):
            answer = await self._api.request(service, "GET", f"/thirdparty/protocol/{_q(protocol)}")
            if answer.status == 200 and isinstance(answer.body, dict):
                return answer.body
        raise MatrixError(404, "M_NOT_FOUND", "Unknown protocol")

    async def lookup(self, kind: str, protocol: str | None, query: dict[str, str]) -> list[Any]:
        """kind "location" or "user": one protocol's services, or (protocol None, a reverse
        lookup by alias / user id) every service that has protocols; answers concatenated."""
        if protocol is not None:
            candidates = self._with_protocol(protocol)
            if not candidates:
                raise MatrixError(404, "M_NOT_FOUND", "Unknown protocol")
            path = f"/thirdparty/{kind}/{_q(protocol)}"
        else:
            candidates = [s for s in self.services if s.protocols and s.url]
            path = f"/thirdparty/{kind}"
        found: list[Any] = []
        for service in candidates:
            answer = await self._api.request(service, "GET", path, query=query)
            if answer.status == 200 and isinstance(answer.body, list):
                found += [item for item in answer.body if isinstance(item, dict)]
        return found


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def not_an_appservice() -> MatrixError:
    return unknown_token("This endpoint needs an application service's as_token")
