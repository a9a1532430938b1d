"""Prometheus metrics of one process (served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """A registry per process object, so tests can build several pipelines side by side."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events_in = Counter("geotel_events_in", "Events read, by topic", ["topic"],
                                 registry=r)
        self.events_out = Counter("geotel_events_out", "Events written, by topic", ["topic"],
                                  registry=r)
        self.deadletters = Counter("geotel_deadletters", "Dead letters, by reason", ["reason"],
                                   registry=r)
        self.ingest_requests = Counter("geotel_ingest_requests", "Ingest requests, by status",
                                       ["status"], registry=r)
        self.ingest_events = Counter("geotel_ingest_events", "Ingest events, by outcome",
                                     ["outcome"], registry=r)
        self.field_warnings = Counter(
            "geotel_ingest_field_warnings", "Fields of accepted or rejected uploads that were "
            "not stored, by event kind and problem (unknown_field, ambiguous_unit)",
            ["kind", "problem"], registry=r)
        self.ingest_app_requests = Counter("geotel_ingest_app_requests", "Tracker-app "
                                           "requests, by app and status", ["app", "status"],
                                           registry=r)
        self.ingest_app_points = Counter(
            "geotel_ingest_app_points", "Tracker-app points, by app and outcome (accepted, "
            "duplicate, rejected: answered as success to the app but not stored; skipped: "
            "messages without a position)", ["app", "outcome"], registry=r)
        self.spoof_attempts = Counter("geotel_ingest_spoof_attempts",
                                      "Events claiming another device or rep", registry=r)
        self.sink_batch_seconds = Histogram("geotel_sink_batch_seconds",
                                            "ClickHouse batch write latency", registry=r)
        self.sink_batch_rows = Histogram("geotel_sink_batch_rows", "Rows per ClickHouse batch",
                                         buckets=(10, 100, 1000, 5000, 20000, 100000),
                                         registry=r)
        self.consumer_lag = Gauge("geotel_consumer_lag", "Messages behind the end, by "
                                  "topic partition", ["topic", "partition"], registry=r)
        self.index_version = Gauge("geotel_geo_index_version", "Territory index version in use",
                                   registry=r)
        self.sink_degraded = Gauge("geotel_sink_degraded", "1 while ClickHouse writes fail",
                                   registry=r)
