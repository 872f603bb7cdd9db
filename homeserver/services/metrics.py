"""Prometheus metrics for one process: what /metrics (a listener of its own) exposes.

Names and labels follow Synapse's where the concept is the same, so its Grafana
dashboard reads ours with at most a relabel; Tricolor's own start with ``tricolor_``.
Hot paths only add to counters (the HTTP middleware, one commit subscriber, a counting
transport); everything else is read when Prometheus scrapes, from the services'
own state (``StatusCollector``), so an idle server does no metrics work at all.
One registry per process (built by the composition root), never the library's global one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from homeserver.services.fanout import Committed

# Synapse's buckets for response times (synapse/http/request_metrics.py uses the default
# ones plus a few long ones for /sync long-polls).
RESPONSE_TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@attrs.frozen
class Metrics:
    """The registry and the counters code adds to as things happen."""

    registry: CollectorRegistry
    requests_received: Counter  # synapse_http_server_requests_received_total{method,servlet}
    responses: Counter  # synapse_http_server_responses_total{method,code}
    response_time: Histogram  # synapse_http_server_response_time_seconds{method,servlet,code}
    events_persisted: Counter  # synapse_storage_events_persisted_events_total
    sent_transactions: Counter  # synapse_federation_client_sent_transactions_total
    sent_pdus: Counter  # synapse_federation_client_sent_pdu_destinations_total
    sent_edus: Counter  # synapse_federation_client_sent_edus_total
    failed_transactions: Counter  # tricolor_federation_client_failed_transactions_total{result}
    unhandled_errors: Counter  # tricolor_http_server_unhandled_errors_total{servlet}

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        return cls(
            registry=r,
            requests_received=Counter(
                "synapse_http_server_requests_received", "HTTP requests received",
                ["method", "servlet"], registry=r,
            ),
            responses=Counter(
                "synapse_http_server_responses", "HTTP responses sent", ["method", "code"], registry=r,
            ),
            response_time=Histogram(
                "synapse_http_server_response_time_seconds", "Time to answer an HTTP request",
                ["method", "servlet", "code"], buckets=RESPONSE_TIME_BUCKETS, registry=r,
            ),
            events_persisted=Counter(
                "synapse_storage_events_persisted_events", "Events persisted (timeline, outliers, backfill)",
                registry=r,
            ),
            sent_transactions=Counter(
                "synapse_federation_client_sent_transactions", "Federation transactions delivered",
                registry=r,
            ),
            sent_pdus=Counter(
                "synapse_federation_client_sent_pdu_destinations",
                "PDUs delivered, counted once per destination", registry=r,
            ),
            sent_edus=Counter(
                "synapse_federation_client_sent_edus", "EDUs delivered", registry=r,
            ),
            failed_transactions=Counter(
                "tricolor_federation_client_failed_transactions",
                "Federation transaction attempts not delivered, by result (retry or refused)",
                ["result"], registry=r,
            ),
            unhandled_errors=Counter(
                "tricolor_http_server_unhandled_errors",
                "Requests that ended in an unexpected exception (answered 500 M_UNKNOWN)",
                ["servlet"], registry=r,
            ),
        )


class CountCommits:
    """A room-writer subscriber: events persisted, one counter addition per commit."""

    def __init__(self, metrics: Metrics) -> None:
        self._counter = metrics.events_persisted

    def on_committed(self, commit: Committed) -> None:
        self._counter.inc(len(commit.events))


@attrs.frozen
class Sample:
    """One value of a metric family read at scrape time."""

    value: float
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Source:
    """A metric whose values some service already knows; ``read`` is called on each scrape
    and must be cheap and synchronous (no I/O)."""

    name: str
    help: str
    kind: str  # "gauge" or "counter"
    read: Callable[[], Iterable[Sample]]
    labels: tuple[str, ...] = ()


class StatusCollector:
    """Turns ``Source``s into metric families on each scrape. ``refresh`` callables (the
    few figures that need a query, e.g. PDUs waiting in the outbox) run first, from the
    /metrics handler, so ``collect`` itself stays synchronous as the library wants."""

    def __init__(
        self, sources: Iterable[Source], refresh: Iterable[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self._sources = tuple(sources)
        self._refresh = tuple(refresh)

    async def refresh(self) -> None:
        for step in self._refresh:
            await step()

    def describe(self) -> list[Metric]:
        return []  # values are read at scrape time; nothing to describe up front

    def collect(self) -> Iterable[Metric]:
        for source in self._sources:
            family: Any
            if source.kind == "counter":
                family = CounterMetricFamily(source.name, source.help, labels=source.labels)
            else:
                family = GaugeMetricFamily(source.name, source.help, labels=source.labels)
            for sample in source.read():
                family.add_metric([sample.labels[name] for name in source.labels], sample.value)
            yield family


def one(value: Callable[[], float]) -> Callable[[], Iterable[Sample]]:
    """A label-less source: one value."""
    return lambda: (Sample(float(value())),)


def per(label: str, values: Callable[[], Mapping[str, float]]) -> Callable[[], Iterable[Sample]]:
    """A source with one label: a sample per key."""
    return lambda: [Sample(float(v), {label: k}) for k, v in values().items()]


def cache_sources(caches: Callable[[], Mapping[str, Any]]) -> list[Source]:
    """Synapse's cache metrics for our LRU caches: hits and lookups (rate = hits / lookups)."""
    return [
        Source("synapse_util_caches_cache_hits", "Cache hits", "counter",
               per("name", lambda: {n: c.hits for n, c in caches().items()}), ("name",)),
        Source("synapse_util_caches_cache", "Cache lookups", "counter",
               per("name", lambda: {n: c.lookups for n, c in caches().items()}), ("name",)),
        Source("synapse_util_caches_cache_size", "Entries in the cache", "gauge",
               per("name", lambda: {n: len(c) for n, c in caches().items()}), ("name",)),
    ]
