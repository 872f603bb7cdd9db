"""What clients ask of the server itself: .well-known documents (spec "Server Discovery",
"GET /.well-known/matrix/support") and TURN servers (spec "Voice over IP"), from config."""

from __future__ import annotations

from typing import Any

from config.schema import VoipConfig, WellKnownConfig
from homeserver.core.errors import not_found
from homeserver.core.turn import turn_credentials
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms


class DiscoveryService:
    def __init__(self, *, well_known: WellKnownConfig, voip: VoipConfig, public_baseurl: str | None) -> None:
        self._well_known = well_known
        self._voip = voip
        self._public_baseurl = public_baseurl

    def client(self, request_base: str) -> dict[str, Any]:
        base = self._well_known.client_base_url or self._public_baseurl or request_base
        out: dict[str, Any] = {"m.homeserver": {"base_url": base.rstrip("/")}}
        if self._well_known.identity_server:
            out["m.identity_server"] = {"base_url": self._well_known.identity_server.rstrip("/")}
        return out

    def support(self) -> dict[str, Any]:
        """Spec: at least one of `contacts` or `support_page`; neither configured is a 404."""
        wk = self._well_known
        contacts: list[dict[str, Any]] = [
            {"matrix_id": m, "role": "m.role.admin"} for m in wk.admin_matrix_ids
        ] + [{"email_address": e, "role": "m.role.admin"} for e in wk.admin_emails]
        if not contacts and not wk.support_page:
            raise not_found("No support information is configured")
        out: dict[str, Any] = {}
        if contacts:
            out["contacts"] = contacts
        if wk.support_page:
            out["support_page"] = wk.support_page
        return out

    def turn_server(self, requester: Requester) -> dict[str, Any]:
        """Spec "GET /voip/turnServer": credentials from the shared secret (coturn's REST
        scheme) or the fixed ones; no URIs configured is an empty object."""
        v = self._voip
        if not v.turn_uris or (requester.is_guest and not v.turn_allow_guests):
            return {}
        if v.turn_shared_secret:
            username, password = turn_credentials(v.turn_shared_secret, requester.user_id, now_ms(), v.turn_user_lifetime_ms)
        elif v.turn_username and v.turn_password:
            username, password = v.turn_username, v.turn_password
        else:
            return {}
        return {
            "username": username, "password": password, "uris": list(v.turn_uris),
            "ttl": v.turn_user_lifetime_ms // 1000,
        }
