"""Server-wide behaviour: versions, error conventions, CORS, capabilities."""

import re

from sltools import CS


async def test_versions_responds_200_with_valid_structure(hs):
    """SyTest: Version responds 200 OK with valid structure."""
    r = await hs.request("GET", "/_matrix/client/versions")
    j = r.expect(200)
    assert r.headers.get("Content-Type", "").startswith("application/json")
    assert isinstance(j["versions"], list) and j["versions"]
    assert all(isinstance(v, str) for v in j["versions"])
    assert any(re.fullmatch(r"v1\.\d+", v) for v in j["versions"]), j["versions"]
    if "unstable_features" in j:
        assert isinstance(j["unstable_features"], dict)
        assert all(isinstance(v, bool) for v in j["unstable_features"].values())


async def test_unknown_endpoint_is_404_unrecognized(hs):
    r = await hs.request("GET", f"{CS}/sytest_lite_no_such_endpoint")
    r.expect_error(404, "M_UNRECOGNIZED")
    assert "error" in r.json


async def test_wrong_method_is_405_unrecognized(hs):
    """Complement unknown_endpoints_test: a known path with an unsupported method."""
    r = await hs.request("PUT", f"{CS}/login", json_body={})
    r.expect_error(405, "M_UNRECOGNIZED")


async def test_missing_token_is_401_missing_token(hs):
    r = await hs.request("GET", f"{CS}/account/whoami")
    r.expect_error(401, "M_MISSING_TOKEN")


async def test_unknown_token_is_401_unknown_token(hs):
    r = await hs.request("GET", f"{CS}/account/whoami", token="sytest_lite_not_a_real_token")
    r.expect_error(401, "M_UNKNOWN_TOKEN")


async def test_invalid_json_body_is_400_not_json(hs, user):
    r = await hs.request(
        "POST",
        f"{CS}/createRoom",
        token=user.access_token,
        data=b'{"name": not json',
        headers={"Content-Type": "application/json"},
    )
    r.expect_error(400, "M_NOT_JSON")


async def test_invalid_utf8_in_json_is_rejected(hs):
    """SyTest: POST rejects invalid utf-8 in JSON."""
    body = b'{"type":"m.login.password","identifier":{"type":"m.id.user","user":"\xff\xfe"},"password":"x"}'
    r = await hs.request(
        "POST", f"{CS}/login", data=body, headers={"Content-Type": "application/json"}
    )
    r.expect_error(400, "M_NOT_JSON")


def _csv(value: str | None) -> set[str]:
    return {p.strip().lower() for p in (value or "").split(",") if p.strip()}


def _assert_cors(headers) -> None:
    assert headers.get("Access-Control-Allow-Origin") == "*", dict(headers)
    methods = _csv(headers.get("Access-Control-Allow-Methods"))
    assert {"get", "post", "put", "delete", "options"} <= methods, dict(headers)
    allowed = _csv(headers.get("Access-Control-Allow-Headers"))
    assert {"x-requested-with", "content-type", "authorization"} <= allowed, dict(headers)


async def test_cors_headers_on_responses_including_errors(hs):
    ok = await hs.request(
        "GET", "/_matrix/client/versions", headers={"Origin": "https://example.org"}
    )
    ok.expect(200)
    _assert_cors(ok.headers)
    err = await hs.request("GET", f"{CS}/account/whoami", headers={"Origin": "https://example.org"})
    assert err.status == 401
    _assert_cors(err.headers)


async def test_options_preflight_needs_no_auth(hs):
    """Spec 'Web Browser Clients': OPTIONS on any path, answered without auth, with CORS headers."""
    for path in (f"{CS}/account/whoami", f"{CS}/sytest_lite_no_such_endpoint", f"{CS}/createRoom"):
        r = await hs.request(
            "OPTIONS",
            path,
            headers={
                "Origin": "https://example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert r.status in (200, 204), (path, r.status, r.text)
        _assert_cors(r.headers)


async def test_capabilities_well_formed(user):
    """SyTest: GET /capabilities is present and well formed for registered user."""
    j = (await user.get("capabilities")).expect(200)
    caps = j["capabilities"]
    assert isinstance(caps, dict)
    rv = caps["m.room_versions"]
    assert isinstance(rv["default"], str)
    assert isinstance(rv["available"], dict)
    assert rv["default"] in rv["available"]
    assert set(rv["available"].values()) <= {"stable", "unstable"}
    assert "10" in rv["available"], "sytest-lite creates rooms of version 10"
    if "m.change_password" in caps:
        assert isinstance(caps["m.change_password"]["enabled"], bool)


async def test_capabilities_requires_auth(hs):
    r = await hs.request("GET", f"{CS}/capabilities")
    r.expect_error(401, "M_MISSING_TOKEN")
