"""Store-and-forward federation over RabbitMQ shovels (issue 9), on real brokers and processes.

``test_amqp_network_*`` run in the default suite (one short network). The fault drills are
marked ``amqp_drills`` (deselected by default, run by a separate step of .ci/run): on a two-
and a three-server network, 200-message bursts in both directions through outages of the
peer's homeserver, the peer's broker (stopped, and SIGKILLed mid-burst) and our own broker,
and poison messages published straight into an inbound queue. Each ends with every server's
room timeline holding the same events, each message exactly once, in order per sender.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from config.loader import load_config
from homeserver.core.federation_envelope import encode_envelope
from homeserver.core.signing import parse_signing_key
from homeserver.testnet.brokers import BrokerNode
from tests.integration.amqp_net import Net, amqp_network, assert_exactly_once_in_order, call
from tests.integration.conftest import _free_port

if shutil.which("rabbitmq-server") is None and not os.environ.get("CI"):
    pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server)", allow_module_level=True)

BURST = 200
CONVERGE = 240.0  # seconds for a backlog to drain everywhere (bounded, generous for CI)


def _broker_entry(net: Net, name: str) -> dict[str, object]:
    state = json.loads(Path(net.dir, "testnet.json").read_text())
    return next(s["broker"] for s in state["servers"] if s["name"] == name)


def node(net: Net, name: str) -> BrokerNode:
    return BrokerNode(**_broker_entry(net, name))  # type: ignore[arg-type]


def log_text(net: Net, name: str) -> str:
    return Path(str(net.servers[name]["log"])).read_text(errors="replace")


# ---- default suite: the network itself ------------------------------------------------------


def test_amqp_network_federates_through_shovels_and_reports_brokers() -> None:
    """`testnet up --transport amqp`: every server has its own node; messages go through the
    per-destination queue and a running shovel; status shows it; --broker stops and starts
    just the broker; down stops the nodes and removes their data."""
    with amqp_network(2) as net:
        hs1, hs2 = net.names
        net.setup_room()
        sent = net.bursts("hello", 5)
        timelines = net.wait_converged(sent, 60)
        assert_exactly_once_in_order(net, timelines, sent)
        status = net.status()
        for name, peer in ((hs1, hs2), (hs2, hs1)):
            b = status[name]["broker"]
            assert b["running"] is True
            assert b["shovels"] == {peer: "running"}
            assert peer in b["outbound_queues"]
            assert b["dead_letters"] == 0
            assert status[name]["transport"] == "amqp"
        # the transactions really went over AMQP: no HTTPS fallback was logged
        assert "falls back to HTTPS" not in log_text(net, hs1)

        # EDUs ride the same transactions: hs1's user typing shows on hs2
        call(net.url(hs1), "PUT", f"/_matrix/client/v3/rooms/{net.room}/typing/{net.users[hs1]}",
             {"typing": True, "timeout": 30000}, net.tokens[hs1])

        def typing_on_hs2() -> bool:
            rooms = call(net.url(hs2), "GET", "/_matrix/client/v3/sync?timeout=0", None, net.tokens[hs2])["rooms"]
            events = rooms.get("join", {}).get(net.room, {}).get("ephemeral", {}).get("events", [])
            return any(e["type"] == "m.typing" and net.users[hs1] in e["content"]["user_ids"] for e in events)

        net.wait_until(typing_on_hs2, 30, "hs1's typing notice on hs2")

        # a shovel deleted behind the server's back is repaired by it
        node(net, hs1).api("DELETE", f"/api/parameters/shovel/%2F/tricolor-fed-{hs2}")
        net.wait_until(
            lambda: log_text(net, hs1).count(f"shovel to {hs2} created") == 2, 60, "the shovel re-created",
        )
        net.wait_until(lambda: net.status()[hs1]["broker"]["shovels"] == {hs2: "running"}, 60, "it running")
        more = net.bursts("repaired", 2, [hs1])
        net.wait_converged(more, 60)

        stopped = net.testnet("stop", hs2, "--broker")
        assert stopped["broker"]["running"] is False
        assert net.status()[hs2]["health"] == "ok"  # the homeserver runs on
        started = net.testnet("start", hs2, "--broker")
        assert started["broker"]["running"] is True
        nodes = [node(net, n) for n in net.names]
        directory = net.dir
    for n in nodes:
        assert not n.running()
    assert not Path(directory).exists()


# ---- the drills ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[2, 3], ids=["two-servers", "three-servers"])
def drill_net(request: pytest.FixtureRequest) -> Iterator[Net]:
    with amqp_network(request.param) as net:
        net.setup_room()
        yield net


def _converge_and_check(net: Net, sent: dict[str, list[str]], before: set[tuple[str, str, str]] | None = None) -> None:
    timelines = net.wait_converged(sent, CONVERGE)
    assert_exactly_once_in_order(net, timelines, sent)
    # a drill's queues drain completely: nothing is left behind in any broker
    net.wait_until(
        lambda: all(
            not any(s["broker"]["outbound_queues"].values()) and s["broker"]["inbound_queue_depth"] == 0
            for s in net.status().values()
        ),
        60, "every queue drained",
    )


@pytest.mark.amqp_drills
def test_drill_peer_homeserver_down_30s(drill_net: Net) -> None:
    net = drill_net
    us, peer = net.names[0], net.names[1]
    net.testnet("stop", peer)
    started = time.monotonic()
    sent = net.bursts("hsdown", BURST, [n for n in net.names if n != peer])
    # stored, not lost: the peer's broker holds what its homeserver cannot take yet
    net.wait_until(lambda: net.status()[peer]["broker"]["inbound_queue_depth"] > 0, 60, "a backlog at the peer")
    time.sleep(max(0.0, 30 - (time.monotonic() - started)))
    net.testnet("start", peer)
    sent |= net.bursts("hsdown-after", BURST)
    _converge_and_check(net, sent)
    # no retry storm: the sender handed everything to its broker once, never fell back
    assert "falls back to HTTPS" not in log_text(net, us)


@pytest.mark.amqp_drills
def test_drill_peer_broker_stopped_and_restarted(drill_net: Net) -> None:
    net = drill_net
    peer = net.names[1]
    net.testnet("stop", peer, "--broker")
    sent = net.bursts("bstop", BURST)
    net.testnet("start", peer, "--broker")
    _converge_and_check(net, sent)


@pytest.mark.amqp_drills
def test_drill_peer_broker_killed_mid_burst(drill_net: Net) -> None:
    net = drill_net
    peer = net.names[1]
    peer_node = node(net, peer)
    killer = threading.Timer(2.0, lambda: peer_node.stop(kill=True))
    killer.start()
    try:
        sent = net.bursts("bkill", BURST)
    finally:
        killer.join(30)
    assert not peer_node.running()
    net.testnet("start", peer, "--broker")
    _converge_and_check(net, sent)


@pytest.mark.amqp_drills
def test_drill_own_broker_down_falls_back_to_https_then_resumes(drill_net: Net) -> None:
    net = drill_net
    us = net.names[0]
    net.testnet("stop", us, "--broker")
    sent = net.bursts("own-down", BURST, [us])
    net.wait_converged(sent, CONVERGE)  # delivered over HTTPS while our broker is down
    log = log_text(net, us)
    assert log.count("AMQP broker unreachable") == 1  # once per state change, not per message
    net.testnet("start", us, "--broker")
    net.wait_until(lambda: "AMQP broker reachable again" in log_text(net, us), 60, "reconnect")
    sent |= net.bursts("own-up", BURST // 4, [us])
    _converge_and_check(net, sent)
    log = log_text(net, us)
    for peer in net.names[1:]:  # AMQP resumed, noticed once per destination
        assert log.count(f"federation to {peer} falls back to HTTPS") == 1
        assert log.count(f"federation to {peer} goes over AMQP again") == 1


@pytest.mark.amqp_drills
def test_drill_poison_messages_are_dead_lettered(drill_net: Net) -> None:
    net = drill_net
    us, peer = net.names[0], net.names[1]
    peer_node = node(net, peer)
    before = {n: net.timeline(n) for n in net.names}
    cfg = load_config(str(net.servers[us]["config"]), env={})
    key = parse_signing_key(Path(cfg.signing_key_path).read_text())
    max_bytes = load_config(str(net.servers[peer]["config"]), env={}).limits.max_request_bytes
    txn = {"origin": us, "origin_server_ts": int(time.time() * 1000), "pdus": [], "edus": []}
    good = json.loads(encode_envelope(us, peer, "poison-1", txn, key))
    tampered = {**good, "txn": {**txn, "edus": [{"edu_type": "m.presence", "content": {"push": []}}]}}
    unsigned = {k: v for k, v in good.items() if k != "signatures"}
    replayed = json.loads(encode_envelope(us, "elsewhere.test", "poison-2", txn, key))
    oversized = b"{" + b" " * max_bytes + b"}"
    bodies = [json.dumps(tampered).encode(), json.dumps(unsigned).encode(), json.dumps(replayed).encode(), oversized]
    asyncio.run(_publish_into(peer_node.amqp_url, f"tricolor.fed.in.{peer}", bodies))
    dead = f"tricolor.fed.dead.{peer}"
    net.wait_until(lambda: _depth(peer_node, dead) >= 4, 60, "four dead letters")
    reasons = sorted(
        str(m["properties"]["headers"]["x-tricolor-reason"]).split(":")[0]
        for m in peer_node.api("POST", f"/api/queues/%2F/{dead}/get",
                               {"count": 10, "ackmode": "ack_requeue_false", "encoding": "auto"})
    )
    assert reasons == ["bad signature", "oversized", "unsigned", "wrong destination"]
    assert {n: net.timeline(n) for n in net.names} == before  # nothing changed in any room
    # the queue keeps flowing
    sent = net.bursts("after-poison", 3, [us])
    net.wait_converged(sent, 60)


def _depth(n: BrokerNode, queue: str) -> int:
    return int(n.api("GET", f"/api/queues/%2F/{queue}").get("messages", 0))


async def _publish_into(url: str, queue: str, bodies: list[bytes]) -> None:
    conn = await aio_pika.connect(url, timeout=10)
    async with conn:
        channel = await conn.channel(publisher_confirms=True)
        for body in bodies:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue, timeout=10,
            )


@pytest.mark.amqp_drills
def test_mixed_network_amqp_server_talks_https_to_a_server_without_broker() -> None:
    """hs1 runs a broker and transport amqp; hs2 is HTTPS-only and advertises nothing: hs1
    sends to hs2 over HTTPS (no queue, no shovel), and both see each other's messages."""
    with amqp_network(2, transport="amqp,https") as net:
        hs1, hs2 = net.names
        net.setup_room()
        sent = net.bursts("mixed", 20)
        assert_exactly_once_in_order(net, net.wait_converged(sent, 120), sent)
        status = net.status()
        assert status[hs1]["transport"] == "amqp" and status[hs2]["transport"] == "https"
        assert "broker" not in status[hs2]
        assert status[hs1]["broker"]["shovels"] == {} and status[hs1]["broker"]["outbound_queues"] == {}


# ---- metrics (issue 15) ----------------------------------------------------------------------


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@pytest.mark.amqp_drills
def test_metrics_show_a_backlog_while_the_peer_s_broker_is_down() -> None:
    """hs1 gets a metrics listener; with hs2's broker stopped, hs1's out queue for hs2 holds the
    transactions and its shovel is reported down, nothing falls back to HTTPS (our own broker
    is up); when the broker returns the backlog drains and the metrics say so."""
    with amqp_network(2) as net:
        hs1, hs2 = net.names
        net.setup_room()
        port = _free_port()
        config = Path(str(net.servers[hs1]["config"]))
        net.testnet("stop", hs1)
        text = config.read_text()
        first = "listeners:\n"
        assert first in text
        config.write_text(text.replace(
            first, f"{first}  - {{host: 127.0.0.1, port: {port}, resources: [metrics]}}\n", 1,
        ))
        net.testnet("start", hs1)
        metrics_url = f"http://127.0.0.1:{port}"
        depth = f'tricolor_amqp_queue_depth{{destination="{hs2}"}}'
        shovel = f'tricolor_shovel_up{{destination="{hs2}"}}'

        warm = net.bursts("warm", 2, [hs1])
        net.wait_converged(warm, 60)
        net.wait_until(lambda: _scrape(metrics_url).get(shovel) == 1.0, 60, "the shovel reported up")
        sent_before = _scrape(metrics_url)["synapse_federation_client_sent_transactions_total"]

        net.testnet("stop", hs2, "--broker")
        backlog = net.bursts("queued", 10, [hs1])
        seen: dict[str, float] = {}

        def backlog_reported() -> bool:
            seen.clear()
            seen.update({k: v for k, v in _scrape(metrics_url).items() if "amqp" in k or "shovel" in k})
            # one message per transaction, and a transaction may carry several PDUs
            return seen.get(depth, 0) >= 1 and seen.get(shovel) == 0.0

        try:
            net.wait_until(backlog_reported, 90, "a backlog for hs2 and its shovel reported down")
        except AssertionError as e:
            raise AssertionError(f"{e}; last AMQP metrics: {seen}") from None
        now = _scrape(metrics_url)
        assert now["tricolor_amqp_broker_up"] == 1.0
        assert now["tricolor_amqp_https_fallbacks_total"] == 0.0
        # published to our broker counts as delivered (its confirm)
        assert now["synapse_federation_client_sent_transactions_total"] >= sent_before + now[depth]

        net.testnet("start", hs2, "--broker")
        net.wait_converged(backlog, CONVERGE)
        net.wait_until(
            lambda: _scrape(metrics_url).get(depth) == 0.0 and _scrape(metrics_url).get(shovel) == 1.0,
            90, "the backlog drained and the shovel up again",
        )
        assert _scrape(metrics_url)["tricolor_amqp_dead_letters_total"] == 0.0
# ---- a mixed network with Synapse ------------------------------------------------------------


def _register_on_synapse(url: str, localpart: str) -> tuple[str, str]:
    """m.login.dummy registration, with the user-interactive session Synapse may ask for."""
    import urllib.error

    body: dict[str, object] = {"username": localpart, "password": "correct horse", "auth": {"type": "m.login.dummy"}}
    try:
        reply = call(url, "POST", "/_matrix/client/v3/register", body)
    except urllib.error.HTTPError as e:
        if e.code != 401:
            raise
        session = json.loads(e.read())["session"]
        body["auth"] = {"type": "m.login.dummy", "session": session}
        reply = call(url, "POST", "/_matrix/client/v3/register", body)
    return reply["user_id"], reply["access_token"]


@pytest.mark.amqp_drills
def test_drill_mixed_network_with_synapse(tmp_path: Path) -> None:
    """Two Tricolor servers federating over AMQP shovels and a default Synapse reached over
    HTTPS, in one room: 50-message bursts from all three at once arrive everywhere exactly
    once, in order per sender; Tricolor-to-Tricolor traffic went through the shovel, to
    Synapse over HTTPS (it advertises no AMQP endpoint), with no fallback logged."""
    from tests.interop.peers import PeerUnavailable, SynapsePeer, free_ports

    with amqp_network(2, names="ip") as net:
        hs1, hs2 = net.names
        client_port, federation_port = free_ports(2)
        synapse = SynapsePeer(tmp_path / "synapse", Path(net.dir) / "ca", client_port, federation_port)
        try:
            synapse.start()
        except PeerUnavailable as e:
            if os.environ.get("TRICOLOR_REQUIRE_SYNAPSE") == "1":
                raise
            pytest.skip(f"Synapse unavailable: {e}")
        try:
            net.setup_room()  # the two Tricolor servers, over AMQP
            syn = synapse.server_name
            net.servers[syn] = {"name": syn, "client_url": synapse.client_url}
            net.names.append(syn)
            net.users[syn], net.tokens[syn] = _register_on_synapse(synapse.client_url, "mixed")
            via = net.users[hs1].split(":", 1)[1]
            call(synapse.client_url, "POST", f"/_matrix/client/v3/join/{net.room}?server_name={via}", {},
                 net.tokens[syn], timeout=60)
            members = set(net.users.values())
            net.wait_until(lambda: all(members <= net.joined(n) for n in net.names), 90, "Synapse joined everywhere")

            sent = net.bursts("mixed-syn", 50)
            timelines = net.wait_converged(sent, CONVERGE)
            assert_exactly_once_in_order(net, timelines, sent)
            status = net.status()
            assert status[hs1]["broker"]["shovels"] == {hs2: "running"}  # none to Synapse
            assert status[hs2]["broker"]["shovels"] == {hs1: "running"}
            for name in (hs1, hs2):
                assert "falls back to HTTPS" not in log_text(net, name)
        finally:
            synapse.stop()
