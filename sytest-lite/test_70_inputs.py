"""Mistyped inputs that every server refuses with the spec's error (Synapse included)."""

import pytest
from sltools import quote


@pytest.mark.parametrize(("path", "params"), [
    ("rooms/{room}/messages", {"dir": "b", "limit": "ten"}),
    ("rooms/{room}/messages", {"dir": "sideways"}),
    ("sync", {"timeout": "soon"}),
    ("sync", {"full_state": "yes"}),
])
async def test_mistyped_query_parameter_is_m_invalid_param(user, path, params):
    room = await user.create_room()
    r = await user.get(path.format(room=quote(room)), params=params)
    r.expect_error(400, "M_INVALID_PARAM")


async def test_access_token_in_header_and_query_is_refused(user):
    """Spec "Using access tokens": one place or the other; both is refused as no token."""
    r = await user.get("account/whoami", params={"access_token": user.access_token})
    r.expect_error(401, "M_MISSING_TOKEN")
    r = await user.hs.request("GET", "account/whoami", params={"access_token": user.access_token})
    assert r.expect(200)["user_id"] == user.user_id
