"""The event contract: every event type the platform publishes, with its topic, key and data model."""

from . import capacity, orders, quality  # noqa: F401  (importing registers the types)
from .envelope import Envelope, MalformedEvent, event_type_of, from_kafka, to_kafka
from .registry import REGISTRY, EventData, EventType, dlq_topic_of, retry_topic_of, schema_of, topic_of

__all__ = [
    "REGISTRY",
    "Envelope",
    "EventData",
    "EventType",
    "MalformedEvent",
    "dlq_topic_of",
    "event_type_of",
    "from_kafka",
    "retry_topic_of",
    "schema_of",
    "to_kafka",
    "topic_of",
]
