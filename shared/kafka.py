"""The one Kafka client factory: every producer, consumer and admin client of the platform is made here.

Services, operator tools, tests and benchmarks all build their clients through these functions, so the
settings that make our guarantees (acks from every replica, the idempotent producer, committed reads,
manual offset commits) are written once.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from .settings import Settings


class BrokerError(RuntimeError):
    """The broker could not be reached or refused what was asked; the message says what to do next."""


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
    """A consumer that commits by hand and reads only committed records; `group_id=None` reads without a group."""
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


def admin(bootstrap_servers: str, client_id: str, *, request_timeout_ms: int = 10000) -> AIOKafkaAdminClient:
    """An admin client (topics, partitions, group offsets); tools that know only the broker's address use it too."""
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id, request_timeout_ms=request_timeout_ms)
