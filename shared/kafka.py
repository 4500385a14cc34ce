"""The one Kafka client factory: producers, consumers and the topics each service needs."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from .events import dlq_topic_of, topic_of
from .events.registry import SERVICES
from .settings import Settings

# Event topics are the system of record for replay: kept forever. Dead letters too, until redriven.
EVENT_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
DLQ_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


def producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=10000,
        retry_backoff_ms=200,
    )


def consumer(settings: Settings, *topics: str, group_id: str | None, client_id: str, **options: object) -> AIOKafkaConsumer:
    defaults: dict[str, object] = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": settings.inbox_batch_size,
        "fetch_max_wait_ms": 100,
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 1000,
    }
    defaults.update(options)
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group_id, client_id=client_id, **defaults
    )


def platform_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic of the platform, prefixed as the settings say, with its configuration."""
    topics: dict[str, dict[str, str]] = {}
    for service in SERVICES:
        topics[settings.topic(topic_of(service))] = EVENT_TOPIC_CONFIG
        topics[settings.topic(dlq_topic_of(service))] = DLQ_TOPIC_CONFIG
    return topics


async def ensure_platform_topics(settings: Settings) -> None:
    from .broker import ensure_topics

    await ensure_topics(settings.kafka_bootstrap_servers, platform_topics(settings), partitions=settings.kafka_partitions)
