"""An encrypted session with matrix-nio (Olm/Megolm) on one Tricolor server."""

from __future__ import annotations

import pytest

from tests.integration.conftest import RunningServer
from tests.integration.nio_e2ee import encrypted_client, encrypted_conversation


async def test_encrypted_messages_decrypt_both_ways(
    real_server: RunningServer, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    alice = await encrypted_client(real_server.base_url, tmp_path_factory.mktemp("alice"), "alice")
    bob = await encrypted_client(real_server.base_url, tmp_path_factory.mktemp("bob"), "bob")
    try:
        bob_read, alice_read = await encrypted_conversation(alice, bob)
    finally:
        await alice.close()
        await bob.close()
    assert bob_read == "the eagle has landed"
    assert alice_read == "the eagle is fed"
