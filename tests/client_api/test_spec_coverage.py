"""scripts/spec-coverage against this server: what it reports as not served is exactly
the list the README gives (so a regression, or a newly served operation, shows here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.helpers import Matrix

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


async def test_spec_coverage_reports_only_the_known_gaps(hs: Matrix) -> None:
    spec = importlib.util.spec_from_file_location("spec_coverage", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = str(hs.client.make_url("")).rstrip("/")
    missing = {(op["method"], op["path"].strip()) for op in await module.probe(base, None)}
    assert missing - MAYBE == NOT_SERVED
