"""The local broker against a real JVM and aiokafka: round trip, topics, config, restarts and shutdown."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ceper.broker import LocalKafka
from shared import kafka
from shared.kafka import BrokerError
from shared.settings import Settings
from shared.topics import ensure_topics
from tests.fixtures.kafka import free_port_pair


def unique(name: str) -> str:
    # The broker is shared by the whole session: every test brings its own topics and groups.
    return f"test.{name}.{uuid.uuid4().hex[:8]}"


def settings_for(bootstrap: str) -> Settings:
    return Settings(kafka_bootstrap_servers=bootstrap)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    producer = kafka.producer(settings_for(bootstrap), client_id="test-broker")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value, key=key, headers=[("ce_type", b"ceper.test.v1")])
    finally:
        await producer.stop()
    return sent.partition, sent.offset


async def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[tuple[bytes, bytes]]:
    consumer = kafka.consumer(settings_for(bootstrap), topic, group_id=None, client_id="test-broker")
    await consumer.start()
    records: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < expected:
                batches = await consumer.getmany(timeout_ms=500)
                records += [(r.key, r.value) for batch in batches.values() for r in batch]
    finally:
        await consumer.stop()
    return records


async def describe_config(bootstrap: str, resource: ConfigResource) -> dict[str, str]:
    admin = kafka.admin(bootstrap, "test-broker")
    await admin.start()
    try:
        [response] = await admin.describe_configs([resource])
    finally:
        await admin.close()
    [result] = response.to_object()["resources"]
    return {entry["config_names"]: entry["config_value"] for entry in result["config_entries"]}


async def test_produce_and_consume_round_trip(kafka_broker: LocalKafka) -> None:
    topic, group = unique("roundtrip"), unique("group")
    await ensure_topics(kafka_broker.bootstrap, {topic: {}})
    partition, offset = await produce(kafka_broker.bootstrap, topic, b"LOT-7", b'{"lot": "LOT-7"}')

    consumer = kafka.consumer(settings_for(kafka_broker.bootstrap), topic, group_id=group, client_id="test-broker")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(record.topic, record.partition))
    finally:
        await consumer.stop()

    assert (record.key, record.value) == (b"LOT-7", b'{"lot": "LOT-7"}')
    assert dict(record.headers)["ce_type"] == b"ceper.test.v1"
    assert (record.partition, record.offset) == (partition, offset)
    assert committed == offset + 1


async def test_ensure_topics_is_idempotent_and_applies_configs(kafka_broker: LocalKafka) -> None:
    compacted, plain = unique("compacted"), unique("plain")
    wanted = {compacted: {"cleanup.policy": "compact"}, plain: {}}
    await ensure_topics(kafka_broker.bootstrap, wanted, partitions=3)
    await ensure_topics(kafka_broker.bootstrap, wanted, partitions=3)

    admin = kafka.admin(kafka_broker.bootstrap, "test-broker")
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics([compacted, plain])}
    finally:
        await admin.close()
    assert {name: len(t["partitions"]) for name, t in described.items()} == {compacted: 3, plain: 3}
    assert all(p["replicas"] == [1] for t in described.values() for p in t["partitions"])

    configs = await describe_config(kafka_broker.bootstrap, ConfigResource(ConfigResourceType.TOPIC, compacted))
    assert configs["cleanup.policy"] == "compact"


async def test_ensure_topics_reports_a_bad_config(kafka_broker: LocalKafka) -> None:
    with pytest.raises(BrokerError, match=r"no\.such\.config"):
        await ensure_topics(kafka_broker.bootstrap, {unique("bad"): {"no.such.config": "1"}})


async def test_broker_runs_with_the_single_node_settings(kafka_broker: LocalKafka) -> None:
    configs = await describe_config(kafka_broker.bootstrap, ConfigResource(ConfigResourceType.BROKER, "1"))
    assert configs["auto.create.topics.enable"] == "false"
    assert configs["log.retention.ms"] == "-1"
    assert configs["num.partitions"] == "6"
    assert configs["offsets.topic.replication.factor"] == "1"
    assert configs["group.initial.rebalance.delay.ms"] == "0"


def test_start_is_a_no_op_when_running(kafka_broker: LocalKafka) -> None:
    pid = kafka_broker.pid
    kafka_broker.start()
    assert kafka_broker.pid == pid
    assert kafka_broker.status()["running"] is True


def test_events_survive_a_restart_and_stop_leaves_no_process(tmp_path: Path) -> None:
    port, controller_port = free_port_pair()
    broker = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port)
    topic = unique("durable")
    try:
        broker.start()
        first_pid = broker.pid
        cluster_id = broker.cluster_id
        asyncio.run(ensure_topics(broker.bootstrap, {topic: {}}))
        asyncio.run(produce(broker.bootstrap, topic, b"ORD-1", b"placed"))

        assert broker.stop() is True
        assert first_pid is not None and not pid_alive(first_pid)
        assert not broker.pid_path.exists()
        assert broker.stop() is False

        broker.start()
        assert broker.pid not in (None, first_pid)
        assert broker.cluster_id == cluster_id
        assert asyncio.run(read_all(broker.bootstrap, topic, expected=1)) == [(b"ORD-1", b"placed")]

        # A second handle on the same data dir (as `ceper kafka stop` in another shell) finds and stops it.
        second_pid = broker.pid
        other = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port)
        assert other.pid == second_pid
        assert other.stop() is True
        assert not broker.is_running()  # also reaps the exited child, which would linger as a zombie
        assert second_pid is not None and not pid_alive(second_pid)
    finally:
        broker.stop()


def test_a_broker_that_dies_at_start_fails_fast_with_its_log(tmp_path: Path) -> None:
    port, controller_port = free_port_pair()
    # Too small a heap: the JVM exits at once (ExitOnOutOfMemoryError) instead of hanging.
    broker = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port, heap_mb=4)
    with pytest.raises(BrokerError, match="OutOfMemoryError"):
        broker.start(timeout=60)
    assert not broker.is_running()
    assert not broker.pid_path.exists()


async def test_ensure_topics_without_a_broker_says_how_to_start_one() -> None:
    port, _ = free_port_pair()
    with pytest.raises(BrokerError, match="ceper kafka start"):
        await ensure_topics(f"127.0.0.1:{port}", {unique("nowhere"): {}})
