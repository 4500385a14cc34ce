"""Consumer lag as the broker sees it: each partition's end offset minus the consumer group's committed offset.

Measured by a periodic task of its own with clients of its own, not from the records a consumer happens to
fetch, so the figure keeps rising while a consumer is stuck, paused or dead. Every replica of a service
measures its whole group: the replicas report the same figures (alerts take the max, not the sum).
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from . import kafka, metrics
from .logging import get_logger
from .settings import Settings

log = get_logger(__name__)

MEASURE_TIMEOUT_S = 10.0


class LagMeter:
    def __init__(self, service: str, group_id: str, topics: list[str], settings: Settings) -> None:
        self.service = service
        self.group_id = group_id
        self.topics = topics
        self.settings = settings
        self.lag: dict[TopicPartition, int] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._failing_since: float | None = None

    async def measure(self) -> dict[TopicPartition, int]:
        """Measures and exports the lag of every partition of the topics; keeps the last figures on failure."""
        try:
            # Bounded: aiokafka's clients retry for as long as the broker is away.
            lag = await asyncio.wait_for(self._measure(), MEASURE_TIMEOUT_S)
        except Exception as exc:  # the broker is away: say so once, try again on the next round
            await self.close()
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("consumer lag cannot be measured from the broker", service=self.service, error=repr(exc))
            return self.lag
        if self._failing_since is not None:
            log.info(
                "consumer lag measured again", service=self.service, after_s=round(time.monotonic() - self._failing_since, 1)
            )
            self._failing_since = None
        for tp, behind in lag.items():
            metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(behind)
        self.lag = lag
        return lag

    async def _measure(self) -> dict[TopicPartition, int]:
        admin, offsets = await self._clients()
        partitions = [
            TopicPartition(described["topic"], partition["partition"])
            for described in await admin.describe_topics(self.topics)
            if described.get("error_code", 0) == 0
            for partition in described.get("partitions", [])
        ]
        if not partitions:
            return {}
        committed = await admin.list_consumer_group_offsets(self.group_id, partitions=partitions)
        ends = await offsets.end_offsets(partitions)
        uncommitted = [tp for tp in partitions if committed.get(tp) is None or committed[tp].offset < 0]
        # A partition the group never committed is read from its beginning (auto_offset_reset=earliest).
        beginnings = await offsets.beginning_offsets(uncommitted) if uncommitted else {}
        lag = {}
        for tp in partitions:
            position = beginnings[tp] if tp in beginnings else committed[tp].offset
            lag[tp] = max(0, ends[tp] - position)
        return lag

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._offsets is None:
            bootstrap = self.settings.kafka_bootstrap_servers
            client_id = f"ceper-{self.service}-lag"
            admin = kafka.admin(bootstrap, client_id, request_timeout_ms=5000)
            # Without a group: it only asks for offsets, it never joins or consumes.
            offsets = kafka.consumer(self.settings, group_id=None, client_id=client_id, request_timeout_ms=5000)
            try:
                await admin.start()
                await offsets.start()
            except BaseException:
                await admin.close()
                await offsets.stop()
                raise
            self._admin, self._offsets = admin, offsets
        return self._admin, self._offsets

    async def close(self) -> None:
        admin, offsets, self._admin, self._offsets = self._admin, self._offsets, None, None
        if admin is not None:
            await admin.close()
        if offsets is not None:
            await offsets.stop()
