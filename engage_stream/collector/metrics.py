"""The collector's Prometheus metrics, `engage_collector_*`, in the project's registry.

Registered in `engage_stream.metrics.REGISTRY`, so a collector running inside a worker
shows them on the worker's `/metrics` and a stand-alone one on its own. Label values are
small fixed sets: endpoint names, status codes, source ids (never write keys), ingest's
dead-letter reasons.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from engage_stream.metrics import REGISTRY, labelled

__all__ = ["labelled"]

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

requests = Counter(
    "engage_collector_requests_total",
    "Tracking API requests by endpoint (track, …, batch), HTTP status and source",
    ["endpoint", "status", "source"],
    registry=REGISTRY,
)
request_errors = Counter(
    "engage_collector_request_errors_total",
    "Requests answered with an error, by its code (unauthorized, payload_too_large, …)",
    ["code"],
    registry=REGISTRY,
)
events_accepted = Counter(
    "engage_collector_events_accepted_total",
    "Events acknowledged by Kafka on the input topic",
    ["type", "source"],
    registry=REGISTRY,
)
events_rejected = Counter(
    "engage_collector_events_rejected_total",
    "Events of answered requests that were not forwarded (dead-lettered), by reason",
    ["reason", "source"],
    registry=REGISTRY,
)
batch_events = Histogram(
    "engage_collector_batch_events",
    "Events per request",
    buckets=(1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500),
    registry=REGISTRY,
)
request_seconds = Histogram(
    "engage_collector_request_seconds",
    "Time from a request's arrival to its answer",
    ["endpoint"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
produce_seconds = Histogram(
    "engage_collector_produce_seconds",
    "Time for Kafka to acknowledge one produced group of requests",
    buckets=_SECONDS,
    registry=REGISTRY,
)
inflight_bytes = Gauge(
    "engage_collector_inflight_bytes",
    "Event bytes handed to the producer and not yet acknowledged",
    registry=REGISTRY,
)
kafka_available = Gauge(
    "engage_collector_kafka_available",
    "1 while the collector can reach Kafka and its topics",
    registry=REGISTRY,
)
backpressure = Counter(
    "engage_collector_backpressure_total",
    "Requests refused (429) because too many bytes awaited Kafka's acknowledgement",
    registry=REGISTRY,
)
rate_limited = Counter(
    "engage_collector_rate_limited_total",
    "Requests refused (429) by a write key's rate limit",
    ["source"],
    registry=REGISTRY,
)
