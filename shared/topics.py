"""Reading a topic from its beginning to its current end, for operator tools (DLQ, replay)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from .settings import Settings


async def read_to_end(settings: Settings, *topics: str, batch: int = 1000) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Yields batches of every record now in the topics, without joining a consumer group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        client_id="ceper-tools",
    )
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
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="ceper-tools")
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
