"""The event backbone on the real broker: outbox → relay → Kafka → inbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections import defaultdict
from datetime import datetime

from ceper.broker import LocalKafka
from shared.dlq import list_dead_letters, redrive
from shared.events import Envelope, to_kafka, topic_of
from shared.inbox import DLQ_ORIGIN_OFFSET, DLQ_ORIGIN_PARTITION, DLQ_ORIGIN_TOPIC
from shared.outbox import Relay
from shared.topics import read_to_end
from tests.fixtures.kafka import free_port_pair
from tests.integration.probe import backbone, registered, running_probe, settings_with, updated
from tests.support import eventually, published, run_ceper


async def test_same_event_delivered_twice_changes_state_once(make_settings):
    settings = settings_with(make_settings)
    async with running_probe(settings) as probe:
        envelope = Envelope.of(registered("IKM-010"))
        message = to_kafka(envelope)
        topic = settings.topic(topic_of("capacity"))
        headers = list(message.headers.items())
        await probe.producer.send_and_wait(topic, message.value, key=envelope.key.encode(), headers=headers)
        await eventually(probe.effects)
        # The same event again, as a relay retry or a redelivery after a crash would bring it.
        await probe.producer.send_and_wait(topic, message.value, key=envelope.key.encode(), headers=headers)
        await eventually(lambda: asyncio.sleep(0, probe.consumer.stats.duplicates >= 1))
        rows = await probe.effects()
        assert [(r.foundry_code, r.event_id) for r in rows] == [("IKM-010", envelope.id)]
        assert await probe.inbox_count() == 1


async def test_poison_goes_to_dlq_partition_moves_on_and_redrive_applies_it(make_settings):
    settings = settings_with(make_settings)
    async with running_probe(settings) as probe:
        probe.failing.add("IKM-666")
        first, poison = await probe.publish(registered("IKM-666"), updated("IKM-666", 1))
        await eventually(lambda: asyncio.sleep(0, probe.relay.stats.published >= 2))
        # A message that is no CloudEvent at all, then a valid later event on the same key (same partition).
        topic = settings.topic(topic_of("capacity"))
        await probe.producer.send_and_wait(topic, b"not json at all", key=b"IKM-666")

        async def all_three_dead_lettered():
            return probe.consumer.stats.dead_lettered >= 3

        await eventually(all_three_dead_lettered, timeout=60)
        # The partition moved on: a later event of the same key is applied while the others wait in the DLQ.
        probe.failing.clear()
        (later,) = await probe.publish(updated("IKM-666", 2))

        async def later_applied():
            return [r for r in await probe.effects() if r.event_id == later.id]

        await eventually(later_applied)
        letters = await list_dead_letters(settings, "orders")
        by_id = {letter.event_id: letter for letter in letters}
        assert poison.id in by_id and first.id in by_id
        malformed = [letter for letter in letters if letter.event_id is None]
        assert len(malformed) == 1 and malformed[0].error_type == "MalformedEvent"
        dead = by_id[poison.id]
        assert dead.error_type == "RuntimeError" and "cannot apply IKM-666" in dead.error
        assert dead.origin_topic == topic and dead.attempts == settings.inbox_max_attempts
        headers = dict(dead.headers)
        assert headers[DLQ_ORIGIN_TOPIC].decode() == topic
        assert int(headers[DLQ_ORIGIN_PARTITION]) == malformed[0].origin_partition
        assert int(headers[DLQ_ORIGIN_OFFSET]) < malformed[0].origin_offset

        # The handler is fixed: redriving the two events applies them, the malformed one stays dead.
        sent = await redrive(settings, "orders", event_ids={first.id, poison.id})
        assert {letter.event_id for letter in sent} == {first.id, poison.id}

        async def redriven_applied():
            ids = {r.event_id for r in await probe.effects()}
            return {first.id, poison.id} <= ids

        await eventually(redriven_applied)
        pending = await list_dead_letters(settings, "orders")
        assert [letter.event_id for letter in pending] == [None]
        assert await redrive(settings, "orders", event_ids={poison.id}) == []  # redriven once only


async def test_per_key_order_holds_across_partitions(make_settings):
    settings = settings_with(make_settings, outbox_batch_size=37, inbox_batch_size=50)
    codes = [f"IKM-{i:03d}" for i in range(1, 31)]
    async with running_probe(settings) as probe:
        for revision in range(1, 11):
            # Several transactions, keys interleaved, so batches mix keys and partitions.
            await probe.publish(*[updated(code, revision) for code in codes[:15]])
            await probe.publish(*[updated(code, revision) for code in codes[15:]])

        async def all_applied():
            return len(await probe.effects()) == 300

        await eventually(all_applied, timeout=60)
        seen: dict[str, list[int]] = defaultdict(list)
        for row in await probe.effects():
            seen[row.foundry_code].append(row.revision)
        assert all(seen[code] == list(range(1, 11)) for code in codes)

    partitions = set()
    async for records in read_to_end(settings, settings.topic(topic_of("capacity"))):
        partitions |= {r.partition for r in records}
    assert len(partitions) == settings.kafka_partitions > 1


async def test_event_survives_broker_stop_while_relay_holds_it(make_settings, tmp_path):
    port, controller = free_port_pair()
    broker = LocalKafka(tmp_path / "own-kafka", port=port, controller_port=controller)
    await asyncio.to_thread(broker.start)
    try:
        settings = settings_with(make_settings, kafka_bootstrap_servers=broker.bootstrap, outbox_max_backoff_s=1.0)
        async with running_probe(settings) as probe:
            (before,) = await probe.publish(registered("IKM-100"))
            await eventually(probe.effects)
            await asyncio.to_thread(broker.stop)
            (held,) = await probe.publish(registered("IKM-101"))
            await asyncio.sleep(2)
            assert await probe.unsent() == 1  # still in the outbox: no broker acknowledged it
            await asyncio.to_thread(broker.start)

            async def delivered():
                return [r for r in await probe.effects() if r.event_id == held.id] and await probe.unsent() == 0

            await eventually(delivered, timeout=90)
            assert [r.event_id for r in await probe.effects()] == [before.id, held.id]
    finally:
        await asyncio.to_thread(broker.stop)


async def test_kcat_reads_our_event_with_cloudevents_headers(make_settings):
    kcat = shutil.which("kcat")
    assert kcat, "kcat missing: run deploy/install-system-deps.sh (make test does)"
    settings = settings_with(make_settings)
    async with running_probe(settings, consume=False) as probe:
        (envelope,) = await probe.publish(registered("IKM-042"))
        await eventually(lambda: asyncio.sleep(0, probe.relay.stats.published >= 1))
    result = await asyncio.to_thread(
        subprocess.run,
        [
            kcat,
            "-b",
            settings.kafka_bootstrap_servers,
            "-C",
            "-t",
            settings.topic(topic_of("capacity")),
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%h\t%s\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    key, headers, value = result.stdout.strip().split("\t")
    assert key == "IKM-042"
    header_map = dict(h.split("=", 1) for h in headers.split(","))
    assert header_map["ce_id"] == envelope.id
    assert header_map["ce_type"] == "ceper.capacity.foundry_registered.v1"
    assert header_map["ce_source"] == "/ceper/capacity"
    assert header_map["ce_specversion"] == "1.0"
    assert header_map["ce_subject"] == "IKM-042"
    assert header_map["content-type"] == "application/json"
    assert datetime.fromisoformat(header_map["ce_time"].replace("Z", "+00:00")).tzinfo is not None
    assert json.loads(value)["foundry_code"] == "IKM-042"


async def test_sent_outbox_rows_leave_the_outbox(make_settings):
    settings = settings_with(make_settings)
    async with running_probe(settings, consume=False) as probe:
        backlog, _ = await probe.relay.refresh_gauges()
        assert backlog == 0
        staged = await probe.publish(registered("IKM-201"), registered("IKM-202"))
        await eventually(lambda: asyncio.sleep(0, probe.relay.stats.published >= 2))
        assert await probe.unsent() == 0  # no row left behind: the topic keeps the events
        on_topic = [e.id for code in ("IKM-201", "IKM-202") for e in await published(settings, "capacity", code)]
        assert on_topic == [e.id for e in staged]
        backlog, age = await probe.relay.refresh_gauges()
        assert backlog == 0 and age == 0


async def test_dlq_cli_lists_and_redrives_on_the_real_broker(make_settings):
    settings = settings_with(make_settings)
    async with running_probe(settings) as probe:
        probe.failing.add("IKM-500")
        (poison,) = await probe.publish(registered("IKM-500"))
        await eventually(lambda: asyncio.sleep(0, probe.consumer.stats.dead_lettered >= 1))

        listed = await asyncio.to_thread(run_ceper, settings, "dlq", "list", "orders", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [r["event_id"] for r in rows] == [poison.id]
        assert rows[0]["origin"].startswith(settings.topic(topic_of("capacity")) + "/")
        assert "cannot apply IKM-500" in rows[0]["error"]

        probe.failing.clear()
        redriven = await asyncio.to_thread(run_ceper, settings, "dlq", "redrive", "orders")
        assert redriven.returncode == 0, redriven.stderr
        assert "1 dead letter(s) sent back" in redriven.stdout
        await eventually(lambda: probe.effects())
        assert [r.event_id for r in await probe.effects()] == [poison.id]

        after = await asyncio.to_thread(run_ceper, settings, "dlq", "list", "orders")
        assert "No pending dead letters" in after.stdout

        unknown = await asyncio.to_thread(run_ceper, settings, "dlq", "list", "nosuch")
        assert unknown.returncode == 1 and "unknown service 'nosuch'" in unknown.stderr
        assert "Traceback" not in unknown.stderr


async def test_only_one_relay_publishes_at_a_time(make_settings, backend):
    """Replicas of a service share its database: one relay leads on PostgreSQL, the other waits its turn."""
    settings = settings_with(make_settings)
    async with running_probe(settings, consume=False) as first:
        assert await first.relay.is_leader()
        second = Relay("capacity", first.engine, backbone.outbox, settings)
        try:
            assert await second.is_leader() is (backend == "sqlite")
            await first.relay.stop()  # the leader goes away: its lock with it
            assert await second.is_leader()
        finally:
            await second.stop()
