"""The SSRF address policy: Synapse's default blacklist, the whitelist winning over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import ConfigError, load_config
from homeserver.core.ip_ranges import DEFAULT_IP_RANGE_BLACKLIST, IpPolicy

DEFAULT = IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1",
    "169.254.169.254", "224.0.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "[::1]", "fe80::1%eth0",
])
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    assert not DEFAULT.allows(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "172.32.0.1", "2606:4700::1111", "[2001:4860::8888]"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert DEFAULT.allows(address)


def test_the_whitelist_wins_but_never_for_the_unspecified_address() -> None:
    policy = IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1", "10.0.0.0/8"])
    assert policy.allows("127.0.0.1") and policy.allows("10.9.9.9")
    assert not policy.allows("127.0.0.2") and not policy.allows("0.0.0.0")
    assert not policy.allows("not-an-address")


def test_bad_ranges_are_refused_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: a.test\nip_range_whitelist: ['10.0.0.0/33']\n")
    with pytest.raises(ConfigError, match="ip_range_whitelist"):
        load_config(str(path), env={})
