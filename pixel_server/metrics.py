"""Prometheus metrics, one registry per app so several apps (tests) never share counters.

With ``--workers N`` each process counts its own hits; a scrape reaches one worker. Sum over
the ``pid`` label, or run one worker per container, to see the whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .bounds import REFUSAL_REASONS, REFUSALS, Refusals

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# `*_created` series double the output and no dashboard of ours reads them
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it untyped

COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Children:
    """A labelled metric's children by their label values, each looked up once:
    ``labels()`` validates the values and takes the metric's lock on every call. For label
    values from a fixed set (statuses, reasons), never from input."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class Metrics:
    """Every counter the service exposes at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        pid = {"pid": str(os.getpid())}
        self.received = Counter(
            "pixel_hits_received",
            "Hits accepted from requests, by kind.",
            ["kind"],
            registry=registry,
        )
        self.stored = Counter(
            "pixel_hits_stored",
            "Hits committed to the store, by kind.",
            ["kind"],
            registry=registry,
        )
        self.duplicates = Counter(
            "pixel_hits_duplicate",
            "Hits not stored because their eid was already stored.",
            ["kind"],
            registry=registry,
        )
        self.dropped = Counter(
            "pixel_hits_dropped",
            "Hits lost, by kind and reason (queue_full, rejected, shutdown).",
            ["kind", "reason"],
            registry=registry,
        )
        self.tokens_invalid = Counter(
            "pixel_tokens_invalid",
            "Signed tokens refused, by token kind and reason.",
            ["token", "reason"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "pixel_auth_failures",
            "Wrong keys or tokens sent, by surface (api, events, dashboard, metrics).",
            ["surface"],
            registry=registry,
        )
        self.auth_limited = Counter(
            "pixel_auth_limited",
            "Attempts refused with 429: their network sent too many wrong keys (authlimit.py).",
            ["surface"],
            registry=registry,
        )
        self.redirects_refused = Counter(
            "pixel_redirect_targets_refused",
            "Validly signed redirect targets refused now.",
            ["reason"],
            registry=registry,
        )
        self.not_stored = Counter(
            "pixel_hits_not_stored",
            "Hits answered but deliberately not stored, by kind and reason: notrack (a link"
            " signed --notrack) or excluded (from PIXEL_EXCLUDE_NETWORKS).",
            ["kind", "reason"],
            registry=registry,
        )
        self.redirects_revoked = Counter(
            "pixel_redirects_revoked",
            "Clicks on revoked links, answered with the revoked page.",
            registry=registry,
        )
        self.revocations_stale = Counter(
            "pixel_revocations_refresh_failed",
            "Failed reads of the revocations (the last copy read kept deciding).",
            registry=registry,
        )
        self.store_errors = Counter(
            "pixel_store_errors", "Failed write attempts (each is retried).", registry=registry
        )
        self.spilled = Counter(
            "pixel_hits_spilled",
            "Hits written to the spill journal while the store was unavailable.",
            registry=registry,
        )
        self.replayed = Counter(
            "pixel_hits_replayed",
            "Hits moved from the spill journal into the store.",
            registry=registry,
        )
        self.spill_bytes = Gauge(
            "pixel_spill_bytes", "Bytes in spill journals not yet replayed.", registry=registry
        )
        self.queue_depth = Gauge(
            "pixel_queue_depth", "Hits waiting to be written.", registry=registry
        )
        self.batch_size = Histogram(
            "pixel_batch_size",
            "Hits per committed transaction.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "pixel_commit_seconds",
            "Time to write and commit one batch.",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )
        self.events = Counter(
            "pixel_events",
            "Events posted to /e, by outcome (accepted, duplicate, rejected) and the reason of"
            " a rejection (empty otherwise).",
            ["outcome", "reason"],
            registry=registry,
        )
        self.events_flagged = Counter(
            "pixel_events_flagged",
            "Events stored although PIXEL_EVENT_SCHEMAS does not know their name"
            " (unknown_event) or they break its schema (schema_violation).",
            ["reason"],
            registry=registry,
        )
        self.relabeled = Counter(
            "pixel_traffic_relabeled",
            "Stored hits given another class by the burst pass, by class and reason (burst,"
            " trap_message).",
            ["traffic", "reason"],
            registry=registry,
        )
        self.burst_passes = Counter(
            "pixel_burst_passes",
            "Burst passes over recent clicks, by outcome (ok, failed).",
            ["outcome"],
            registry=registry,
        )
        self.loss = Gauge(
            "pixel_loss_report_events",
            "The loss report of the sessions begun since yesterday 00:00 UTC (all campaigns,"
            " read at most once a minute): events sent, received, lost, repeated, duplicates.",
            ["count"],
            registry=registry,
        )
        self.event_posts = Counter(
            "pixel_event_posts",
            "Requests to /e, by HTTP status of the answer.",
            ["status"],
            registry=registry,
        )
        self.info = Gauge("pixel_worker_info", "This worker process.", ["pid"], registry=registry)
        self.info.labels(**pid).set(1)
        registry.register(RefusalCollector(REFUSALS))
        self._watching = False

    def watch_store(self, store: object) -> None:
        """Expose the store's own counters (PostgreSQL's in-doubt writes) from now on."""
        if hasattr(store, "in_doubt") and not self._watching:
            self._watching = True
            self.registry.register(StoreCollector(store))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RefusalCollector(Collector):
    """``pixel_connections_refused_total``: counted by the HTTP protocol, outside any app."""

    def __init__(self, refusals: Refusals) -> None:
        self.refusals = refusals

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "pixel_connections_refused",
            "Connections refused or closed for a server bound (uvicorn), by reason.",
            labels=["reason"],
        )
        for reason in REFUSAL_REASONS:
            family.add_metric([reason], self.refusals.counts[reason])
        yield family


class StoreCollector(Collector):
    """``pixel_store_writes_in_doubt_total``: writes whose commit could not be confirmed
    (store/postgres.py); their eid-less hits may be stored twice."""

    def __init__(self, store: object) -> None:
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "pixel_store_writes_in_doubt",
            "Batches spilled although they may have committed (PostgreSQL unreachable to ask).",
            value=int(getattr(self.store, "in_doubt", 0)),
        )
