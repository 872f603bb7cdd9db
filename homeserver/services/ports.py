"""What the services need from federation/outbound, as Protocols.

Services depend on these, never on the transport modules; homeserver.app
plugs the real implementations in (or leaves federation off).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class FederationSenderPort(Protocol):
    """Fire-and-forget delivery, persisted and retried per destination."""

    async def send_pdu(self, destinations: Iterable[str], pdu: Mapping[str, Any]) -> None:
        """Queue one PDU (the exact signed object) for each destination; durable on return."""

    def send_edu(self, destinations: Iterable[str], edu_type: str, content: Mapping[str, Any]) -> None:
        """Queue an EDU (typing, receipt, presence...); best effort, not persisted."""

    async def send_durable_edu(self, destinations: Iterable[str], edu_type: str, content: Mapping[str, Any]) -> None:
        """Queue an EDU that must not be lost (to-device messages); durable on return."""

    def wake(self, destinations: Iterable[str]) -> None:
        """PDUs for these destinations were committed to the outbox by someone else
        (the event persister, in the events' own transaction): deliver them now."""


class FederationClientPort(Protocol):
    """Signed (X-Matrix) JSON requests to another homeserver."""

    async def request(
        self, method: str, destination: str, path: str, *,
        query: Mapping[str, str | list[str]] | None = None, body: Any = None,
        timeout: float = 30.0, max_bytes: int | None = None,
    ) -> Any:
        """Return the decoded JSON response; raise FederationRequestError on failure
        (also for a body over ``max_bytes``; None: the client's generous default)."""


class KeyringPort(Protocol):
    async def verify_json(self, obj: Mapping[str, Any], server_name: str, at_ts: int | None = None) -> None:
        """Raise SignatureError unless `obj` carries a valid signature of `server_name`."""

    async def verify_event_signatures(self, room_version: str, pdu: Mapping[str, Any]) -> None:
        """Raise SignatureError unless every server that must sign this PDU did (spec 'Validating
        hashes and signatures on received events'): the sender's server, and for restricted
        joins the authorising server."""


class FederationRequestError(Exception):
    """A federation request failed: `status` 0 means the destination was unreachable."""

    def __init__(self, status: int, errcode: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        self.message = message
        self.body = body


class UrlFetchError(Exception):
    """A URL a user or a peer named was not fetched. ``blocked``: its address is in
    ``ip_range_blacklist`` (never connected to); ``too_large``: over the size limit."""

    def __init__(self, message: str, *, status: int = 0, blocked: bool = False, too_large: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.blocked = blocked
        self.too_large = too_large


class FetchedUrl(Protocol):
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str  # after redirects


class UrlFetcherPort(Protocol):
    """Unsigned GETs of arbitrary http(s) URLs, every connection checked against the IP
    policy at connect time (media Location redirects, URL previews)."""

    async def get(self, url: str, *, max_bytes: int, timeout: float, max_redirects: int = 5) -> FetchedUrl:
        """A 2xx answer; raise UrlFetchError otherwise."""
