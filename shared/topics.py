"""The platform's topics: creating them with their configuration, and reading them from beginning to end.

Services create the topics they need before producing (`ensure_platform_topics`); operator tools (DLQ,
replay) read a topic's records as they are now without joining a consumer group (`read_to_end`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code

from . import kafka
from .events import dlq_topic_of, retry_topic_of, topic_of
from .events.registry import SERVICES
from .kafka import BrokerError
from .settings import Settings

# Event topics are the system of record for replay: kept forever. Dead letters too, until redriven, and the
# redriven ones on a service's retry topic, which only that service reads.
EVENT_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
DLQ_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
RETRY_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


def platform_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic of the platform, prefixed as the settings say, with its configuration."""
    topics: dict[str, dict[str, str]] = {}
    for service in SERVICES:
        topics[settings.topic(topic_of(service))] = EVENT_TOPIC_CONFIG
        topics[settings.topic(dlq_topic_of(service))] = DLQ_TOPIC_CONFIG
        topics[settings.topic(retry_topic_of(service))] = RETRY_TOPIC_CONFIG
    return topics


async def ensure_platform_topics(settings: Settings) -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, platform_topics(settings), partitions=settings.kafka_partitions)


async def ensure_topics(bootstrap: str, topics: dict[str, dict[str, str]], partitions: int = 6, *, timeout: float = 30) -> None:
    """Create the missing ones of `topics` (name -> topic configs), replication factor 1, and wait until
    every one has a leader for each partition. Topics that already exist are left as they are."""
    if not topics:
        return
    admin = kafka.admin(bootstrap, "ceper-topics", request_timeout_ms=int(timeout * 1000))
    try:
        try:
            await admin.start()
        except KafkaConnectionError:
            raise BrokerError(
                f"Kafka is not reachable at {bootstrap}: start the local broker with `ceper kafka start`, "
                "or check CEPER_KAFKA_BOOTSTRAP_SERVERS"
            ) from None
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1, topic_configs={key: str(value) for key, value in configs.items()})
            for name, configs in topics.items()
            if name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing, timeout_ms=int(timeout * 1000))
            for result in response.to_object()["topic_errors"]:
                code = result["error_code"]
                # Another process may create the same topic between our list and our create.
                if code == 0 or code == TopicAlreadyExistsError.errno:
                    continue
                error = for_code(code)
                detail = result.get("error_message") or error.description
                raise BrokerError(f"Could not create topic {result['topic']!r}: {error.__name__}: {detail}")
        await _wait_for_leaders(admin, list(topics), timeout)
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        described = await admin.describe_topics(names)
        pending = sorted(
            {
                topic["topic"]
                for topic in described
                if topic["error_code"] != 0
                or not topic["partitions"]
                or any(partition["leader"] < 0 for partition in topic["partitions"])
            }
            | (set(names) - {topic["topic"] for topic in described})
        )
        if not pending:
            return
        if loop.time() >= deadline:
            raise BrokerError(f"Topics {', '.join(pending)} have no leader after {timeout:g} s: see the broker log")
        await asyncio.sleep(0.1)


async def read_to_end(settings: Settings, *topics: str, batch: int = 1000) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Yields batches of every record now in the topics, without joining a consumer group."""
    consumer = kafka.consumer(settings, group_id=None, client_id="ceper-tools")
    await consumer.start()
    try:
        partitions: list[TopicPartition] = []
        for topic in topics:
            numbers = await partitions_of(settings.kafka_bootstrap_servers, topic)
            partitions += [TopicPartition(topic, p) for p in sorted(numbers)]
        if not partitions:
            return
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        for tp in partitions:
            if tp not in remaining:
                consumer.pause(tp)
        while remaining:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=batch)
            out: list[ConsumerRecord[bytes, bytes]] = []
            for tp, records in fetched.items():
                for record in records:
                    if record.offset < ends[tp]:
                        out.append(record)
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            # Transaction markers occupy offsets no record is returned for; position settles the question.
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            if out:
                yield out
    finally:
        await consumer.stop()


async def partitions_of(bootstrap_servers: str, topic: str) -> set[int]:
    # A consumer without a group only learns the partitions of topics it was assigned: ask an admin client.
    admin = kafka.admin(bootstrap_servers, "ceper-tools")
    await admin.start()
    try:
        for _ in range(50):
            described = await admin.describe_topics([topic])
            for entry in described:
                if entry.get("error_code", 0) == 0 and entry.get("partitions"):
                    return {p["partition"] for p in entry["partitions"]}
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return set()
