"""An admin user on the test server.

Operators make admins with ``tricolor register-user --admin`` (tests/homeserver/test_cli.py);
in process, the same flag is set through the running server's services.
"""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.helpers import Matrix, User

ADMIN = "/_synapse/admin"


async def promote(hs: Matrix, user: User) -> User:
    from client_api.http import SERVICES

    for resource in hs.client.app.router.resources():  # type: ignore[union-attr]
        if isinstance(resource, web.PrefixedSubAppResource) and SERVICES in resource._app:
            services = resource._app[SERVICES]
            await services.admin._store.set_admin(user.user_id, True)
            services.auth.forget_admin_flag(user.user_id)
            return user
    raise AssertionError("no client sub-app found")


@pytest.fixture
async def admin(hs: Matrix) -> User:
    return await promote(hs, await hs.register("root"))
