"""Which IP addresses the server may connect to when a URL comes from a user or a peer
(media ``Location`` redirects, URL previews): server-side request forgery protection.

The defaults are Synapse's ``ip_range_blacklist``: private (RFC 1918), loopback,
link-local, CGNAT, documentation, benchmarking, multicast and IPv6 unique-local ranges.
``0.0.0.0`` and ``::`` (which reach the local host) are refused whatever the config says.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_IP_RANGE_BLACKLIST: tuple[str, ...] = (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10",
)
_ALWAYS_BLOCKED = (ipaddress.ip_network("0.0.0.0/32"), ipaddress.ip_network("::/128"))


def parse_network(value: str) -> Network:
    """``"10.0.0.0/8"`` or a single address; ValueError when it is neither."""
    return ipaddress.ip_network(value.strip(), strict=False)


def ip_literal(host: str) -> Address | None:
    """The address when ``host`` (a URL's host, maybe ``[v6]``) is an IP literal."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


class BlockedAddress(OSError):
    """A name resolved only to addresses the policy forbids (raised by the guarded resolver
    at connect time; an OSError, so HTTP clients report it as a connection error)."""


@attrs.frozen
class IpPolicy:
    blacklist: tuple[Network, ...]
    whitelist: tuple[Network, ...] = ()

    @classmethod
    def from_config(cls, blacklist: Iterable[str], whitelist: Iterable[str] = ()) -> IpPolicy:
        return cls(
            tuple(parse_network(n) for n in blacklist),
            tuple(parse_network(n) for n in whitelist),
        )

    def allows(self, address: str | Address) -> bool:
        """The whitelist wins over the blacklist (as in Synapse); anything else is fine."""
        ip = ip_literal(address) if isinstance(address, str) else address
        if ip is None:
            return False  # not an address at all: nothing to connect to
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(ip in net for net in _ALWAYS_BLOCKED if net.version == ip.version):
            return False
        if any(ip in net for net in self.whitelist if net.version == ip.version):
            return True
        return not any(ip in net for net in self.blacklist if net.version == ip.version)
