"""Request ids, request metrics and the probes: what operators see of every request.

``observe`` is the root app's outermost middleware: it gives each request an id (the
``X-Request-Id`` response header and every log line written for it; a peer's or proxy's
own ``X-Request-Id`` is logged beside ours), counts and times it by method, servlet (the
handler's module and name, as Synapse labels by servlet class) and status code, and writes one
access log line. ``/health`` is liveness (the process answers), ``/ready`` readiness
(database, Redis and broker, as configured). ``/metrics`` is served by an app of its
own, mounted only on listeners whose resources are ``[metrics]``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from homeserver.core import request_id
from homeserver.http.middleware import Handler
from homeserver.http.responses import ok
from homeserver.services.metrics import Metrics, StatusCollector
from homeserver.services.readiness import Readiness

access_log = logging.getLogger("tricolor.access")

METRICS = web.AppKey("metrics", Metrics)
STATUS = web.AppKey("metrics_status", StatusCollector)
READINESS = web.AppKey("readiness", Readiness)


def servlet_name(handler: object) -> str:
    """A handler's label: its module and name (``client_api.rooms.send``), unique across
    sub-apps and fixed for the life of the process, like Synapse's servlet class names."""
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{getattr(handler, '__module__', None) or type(handler).__module__}.{name}"


def servlet(request: web.Request, names: dict[object, str]) -> str:
    """The label for a request, or "unmatched" (what the router answers 404/405)."""
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    handler = info.route.handler
    name = names.get(handler)
    if name is None:
        name = names[handler] = servlet_name(handler)  # once per route
    return name


def observe(metrics: Metrics, access_lines: bool = True) -> web.middleware:  # type: ignore[valid-type]
    """The middleware; ``access_lines`` False drops the per-request log line (the id is
    still returned and on every other line)."""
    requests_received, responses, response_time = (
        metrics.requests_received, metrics.responses, metrics.response_time,
    )
    names: dict[object, str] = {}  # handler -> label, bounded by the routes
    # Label children, looked up once per (method, servlet[, code]): the library's labels()
    # takes a lock and builds a tuple each call.
    received: dict[tuple[str, str], Any] = {}
    answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @web.middleware
    async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request_id.new_id()
        token = request_id.current.set(rid)
        start = time.perf_counter()
        name = servlet(request, names)
        method = request.method
        counter = received.get((method, name))
        if counter is None:
            counter = received[(method, name)] = requests_received.labels(method, name)
        counter.inc()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            if not resp.prepared:
                resp.headers[request_id.HEADER] = rid
            return resp
        finally:
            elapsed = time.perf_counter() - start
            children = answered.get((method, name, status))
            if children is None:
                code = str(status)
                children = answered[(method, name, status)] = (
                    responses.labels(method, code), response_time.labels(method, name, code),
                )
            children[0].inc()
            children[1].observe(elapsed)
            if access_lines and access_log.isEnabledFor(logging.INFO):
                peer = request_id.peer_id(request.headers.get(request_id.HEADER))
                access_log.info(
                    "%s %s %s %d %.1fms%s", request.remote, method, request.path, status,
                    elapsed * 1000, f" peer_request_id={peer}" if peer else "",
                    extra={"http": {"method": method, "path": request.path, "status": status,
                                    "ms": round(elapsed * 1000, 1), "servlet": name,
                                    "remote": request.remote, "peer_request_id": peer}},
                )
            request_id.current.reset(token)

    return observed


async def health(request: web.Request) -> web.Response:
    """GET /health: liveness. Answers as long as the event loop does; asks nothing of the
    database, so a database outage does not get a healthy process restarted."""
    return ok({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """GET /ready: 200 when every configured dependency answers, else 503 naming the
    ones that do not (load balancers take the worker out until then)."""
    checks = await request.app[READINESS].check()
    body = {"status": "ready" if all(checks.values()) else "unavailable",
            "checks": {name: "ok" if up else "down" for name, up in checks.items()}}
    return ok(body, status=200 if all(checks.values()) else 503)


async def metrics_page(request: web.Request) -> web.Response:
    """GET /metrics in the Prometheus text exposition format."""
    await request.app[STATUS].refresh()
    body = generate_latest(request.app[METRICS].registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def create_metrics_app(metrics: Metrics, status: StatusCollector) -> web.Application:
    """The app a ``metrics`` listener serves: /metrics and the two probes, nothing else
    (keep the port off the public internet: it tells how busy the server is)."""
    app = web.Application()
    app[METRICS] = metrics
    app[STATUS] = status
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/health", health)
    return app
