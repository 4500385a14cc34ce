"""Prometheus metrics every service exposes on `/metrics`; business metrics live with their service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("ceper_http_requests", "HTTP requests handled", ["service", "method", "route", "status"])
HTTP_DURATION = Histogram(
    "ceper_http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PRODUCED = Counter("ceper_events_produced", "Events published to Kafka (acked)", ["service", "event_type"])
EVENTS_CONSUMED = Counter("ceper_events_consumed", "Events applied by a consumer", ["service", "event_type"])
EVENTS_DUPLICATE = Counter("ceper_events_duplicate", "Redelivered events skipped by the inbox", ["service", "event_type"])
EVENTS_FAILED = Counter("ceper_events_failed", "Failed attempts to apply an event", ["service", "event_type"])
EVENTS_DEAD_LETTERED = Counter("ceper_events_dead_lettered", "Events sent to the dead-letter topic", ["service", "event_type"])
EVENT_HANDLING = Histogram(
    "ceper_event_batch_seconds",
    "Time to apply one batch of a partition's events in one transaction",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
EVENTS_UNKNOWN = Counter(
    "ceper_events_unknown", "Events of a type no version of this service knows, skipped", ["service", "event_type"]
)
CONSUMER_LAG = Gauge(
    "ceper_consumer_lag",
    "Messages behind the end of the partition: its end offset minus the consumer group's committed offset",
    ["service", "topic", "partition"],
)
CONSUMER_RUNNING = Gauge("ceper_consumer_running", "1 while the service's inbox consumer runs, 0 while it is down", ["service"])
CONSUMER_RESTARTS = Counter("ceper_consumer_restarts", "Times the inbox consumer loop failed and was restarted", ["service"])
OUTBOX_BACKLOG = Gauge("ceper_outbox_backlog", "Outbox events not yet acknowledged by Kafka", ["service"])
OUTBOX_OLDEST_AGE = Gauge("ceper_outbox_oldest_age_seconds", "Age of the oldest outbox event not yet acknowledged", ["service"])
