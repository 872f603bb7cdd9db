from homeserver.core.server_acl import server_allowed


def test_no_acl_allows_everyone():
    assert server_allowed(None, "evil.test")


def test_deny_beats_allow_and_ports_are_ignored():
    acl = {"allow": ["*"], "deny": ["evil.test", "*.bad.example"]}
    assert not server_allowed(acl, "evil.test:8448")
    assert not server_allowed(acl, "hs.bad.example")
    assert server_allowed(acl, "good.example")


def test_empty_allow_denies_everyone():
    assert not server_allowed({}, "good.example")
    assert not server_allowed({"deny": []}, "good.example")


def test_wildcards_are_only_star_and_question_mark():
    acl = {"allow": ["hs?.example", "a.b"]}
    assert server_allowed(acl, "hs1.example")
    assert not server_allowed(acl, "hs12.example")
    assert not server_allowed(acl, "axb")  # '.' is literal


def test_ip_literals():
    acl = {"allow": ["*"], "allow_ip_literals": False}
    assert not server_allowed(acl, "127.0.0.1:8448")
    assert not server_allowed(acl, "[::1]:8448")
    assert server_allowed({"allow": ["*"]}, "127.0.0.1:8448")
