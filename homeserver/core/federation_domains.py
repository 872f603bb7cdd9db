"""Which servers we federate with: federation.domain_whitelist / domain_blacklist.

Exact server names, as Synapse's federation_domain_whitelist. ``None`` as the allow list
means "every server not denied"; an empty allow list means "no server at all".
"""

from __future__ import annotations

from collections.abc import Collection


def federation_domain_allowed(
    server_name: str, allow: Collection[str] | None, deny: Collection[str]
) -> bool:
    """True when requests to or from ``server_name`` may go through."""
    if server_name in deny:
        return False
    return allow is None or server_name in allow
