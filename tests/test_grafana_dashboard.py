"""contrib/grafana/tricolor-dashboard.json names only metrics Tricolor exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.exposition import generate_latest

from homeserver.services.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "contrib/grafana/tricolor-dashboard.json"
# Where the metrics read at scrape time are declared (Source("name", ...)).
SOURCES = (ROOT / "homeserver/app.py", ROOT / "homeserver/services/metrics.py")


def _exported() -> set[str]:
    """Families a process always exports, plus every family declared as a Source."""
    page = generate_latest(Metrics.create().registry).decode()
    names = set(re.findall(r"^# TYPE (\S+) ", page, flags=re.M))
    for source in SOURCES:
        names |= set(re.findall(r'Source\(\s*"([a-z_]+)"', source.read_text()))
    return names


def test_every_expression_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    exported = _exported()
    used = {m for e in exprs for m in re.findall(r"\b((?:synapse|tricolor|process)_[a-z_]+)", e)}
    missing = sorted(
        name for name in used
        if re.sub(r"_(total|bucket|count|sum)$", "", name) not in exported and name not in exported
    )
    assert not missing, missing
    for name in ("tricolor_sync_waiters", "tricolor_ws_connections", "tricolor_amqp_queue_depth",
                 "tricolor_shovel_up", "tricolor_ai_requests_total",
                 "synapse_http_server_response_time_seconds_bucket"):
        assert name in used, f"the dashboard does not chart {name}"


def test_panels_do_not_overlap() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    cells = set()
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))
