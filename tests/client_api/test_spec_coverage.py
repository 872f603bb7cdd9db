"""scripts/spec-coverage against this server: what it reports as not served is exactly
the list the README gives (so a regression, or a newly served operation, shows here)."""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from config.schema import HomeserverConfig, LoginViaExistingSessionConfig
from tests.helpers import Matrix

Start = Callable[[HomeserverConfig], Awaitable[Matrix]]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "spec_coverage.py"
NOT_SERVED = {
    ("GET", "/.well-known/matrix/policy_server"),
    ("GET", "/_matrix/client/v1/admin/lock/{userId}"), ("PUT", "/_matrix/client/v1/admin/lock/{userId}"),
    ("GET", "/_matrix/client/v1/admin/suspend/{userId}"), ("PUT", "/_matrix/client/v1/admin/suspend/{userId}"),
    ("GET", "/_matrix/client/v1/auth_metadata"),
    ("POST", "/_matrix/client/v1/login/get_token"),
    ("GET", "/_matrix/client/v3/login/sso/redirect"), ("GET", "/_matrix/client/v3/login/sso/redirect/{idpId}"),
}
MAYBE: set[tuple[str, str]] = set()


async def _missing(hs: Matrix) -> set[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location("spec_coverage", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = str(hs.client.make_url("")).rstrip("/")
    return {(op["method"], op["path"].strip()) for op in await module.probe(base, None)}


async def test_spec_coverage_reports_only_the_known_gaps(hs: Matrix) -> None:
    assert await _missing(hs) - MAYBE == NOT_SERVED


async def test_login_get_token_is_served_when_enabled(hs_config: HomeserverConfig, start_hs: Start) -> None:
    section = LoginViaExistingSessionConfig(enabled=True)
    hs = await start_hs(attrs.evolve(hs_config, login_via_existing_session=section))
    assert await _missing(hs) - MAYBE == NOT_SERVED - {("POST", "/_matrix/client/v1/login/get_token")}
