"""Inbox consumers on the real broker, on SQLite and PostgreSQL: replicas and rebalances, partitions that never
wait for one another, outages told apart from faulty events, unknown types, the retry topic, lag, supervision."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import defaultdict
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import REGISTRY

from shared.dlq import list_dead_letters, redrive
from shared.events import Envelope, retry_topic_of, to_kafka, topic_of
from shared.events.capacity import FoundryRegistered
from shared.inbox import in_batch
from shared.topics import read_to_end
from tests.integration.probe import Probe, effects, registered, running_probe, settings_with, updated
from tests.support import eventually


def partition_of(key: str, partitions: int) -> int:
    """The partition the producers' default partitioner picks for `key`."""
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions))))


def codes_on_partitions(partitions: int, wanted: int) -> dict[int, list[str]]:
    """Foundry codes grouped by the partition their events go to, `wanted` codes of each partition."""
    found: dict[int, list[str]] = defaultdict(list)
    number = 100
    while any(len(found[p]) < wanted for p in range(partitions)):
        code = f"IKM-{number:03d}"
        number += 1
        if len(found[partition_of(code, partitions)]) < wanted:
            found[partition_of(code, partitions)].append(code)
    return found


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def effect_ids(probe: Probe) -> list[str]:
    return [row.event_id for row in await probe.effects()]


# --- replicas and rebalances ------------------------------------------------------------------------------


async def test_two_replicas_apply_every_event_once_while_rebalances_cut_batches(make_settings):
    """Two consumers of one group on one database; one is stopped and started again while events flow.

    Every rebalance takes partitions away in the middle of batches (each event takes a little while to apply):
    nothing may be lost, nothing applied twice, each foundry's events stay in order, and both stay alive.
    """
    settings = settings_with(make_settings, inbox_batch_size=40)
    codes = [f"IKM-{n:03d}" for n in range(1, 25)]
    revisions = 25
    async with running_probe(settings) as probe:
        probe.slow = dict.fromkeys(codes, 0.004)
        second = probe.replica()
        await second.start(probe.producer)
        try:
            published: list[str] = []

            async def publish_all() -> None:
                for revision in range(1, revisions + 1):
                    envelopes = await probe.publish(*[updated(code, revision) for code in codes])
                    published.extend(e.id for e in envelopes)
                    await asyncio.sleep(0.3)

            publishing = asyncio.create_task(publish_all())
            for _ in range(3):
                await eventually(lambda: asyncio.sleep(0, bool(second.assignment()) and bool(probe.consumer.assignment())))
                await asyncio.sleep(0.8)
                await second.stop()  # its partitions move to the first replica mid-batch
                await asyncio.sleep(0.8)
                await second.start(probe.producer)  # and some of them come back
            await publishing

            async def all_applied() -> bool:
                return len(await probe.effects()) >= len(published)

            await eventually(all_applied, timeout=120)
            await asyncio.sleep(1)  # a late duplicate would show now
            rows = await probe.effects()
            ids = [row.event_id for row in rows]
            assert len(ids) == len(set(ids)) == len(published) and set(ids) == set(published)
            seen: dict[str, list[int]] = defaultdict(list)
            for row in rows:
                seen[row.foundry_code].append(row.revision)
            assert all(seen[code] == list(range(1, revisions + 1)) for code in codes)
            assert await probe.inbox_count() == len(published)
            assert probe.consumer.running and second.running
            assert probe.consumer.stats.restarts == 0 and second.stats.restarts == 0
            assert probe.consumer.stats.dead_lettered == 0 and second.stats.dead_lettered == 0
        finally:
            await second.stop()


# --- partitions never wait for one another ---------------------------------------------------------------


async def test_a_slow_and_a_failing_event_hold_up_only_their_own_partitions(make_settings, backend):
    """A failing event's retry delays hold up its own partition only, on both databases. So does a slow event on
    PostgreSQL; SQLite has one writer at a time, so a transaction that takes long holds up every writer there."""
    settings = settings_with(make_settings, inbox_retry_backoff_s=3.0, inbox_max_attempts=3)
    by_partition = codes_on_partitions(settings.kafka_partitions, 2)
    (slow_code, slow_later), (failing_code, failing_later), (free_code, _) = (by_partition[p] for p in range(3))
    slow_too = backend == "postgresql"
    async with running_probe(settings) as probe:
        # The consumer is up and owns every partition before the clock starts.
        warm = await probe.publish(*[registered(codes[1]) for codes in by_partition.values()])
        await eventually(lambda: _has(probe, warm[-1].id), timeout=60)
        await eventually(
            lambda: asyncio.sleep(0, len(probe.consumer.stats.dead_letters) == 0 and probe.consumer.stats.applied == 3)
        )
        if slow_too:
            probe.slow[slow_code] = 12.0
        probe.failing.add(failing_code)
        (slow,) = await probe.publish(registered(slow_code))
        (failing,) = await probe.publish(registered(failing_code))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        after_slow, after_failing, free = await probe.publish(
            registered(slow_later), registered(failing_later), registered(free_code)
        )

        # The third partition goes on at once, while one partition applies a slow event and another waits out
        # the failing event's retry delays (3 s, then 6 s).
        await eventually(lambda: _has(probe, free.id), timeout=6)
        assert time.monotonic() - started < 6
        held_up = {failing.id, after_failing.id} | ({slow.id, after_slow.id} if slow_too else set())
        assert not held_up & set(await effect_ids(probe))

        # Within each partition the order holds: the later event comes after the slow one, and after the
        # failing one is dead-lettered.
        await eventually(lambda: _has(probe, after_failing.id), timeout=60)
        assert probe.consumer.stats.dead_letters == [failing.id]
        await eventually(lambda: _has(probe, after_slow.id), timeout=60)
        ids = await effect_ids(probe)
        assert ids.index(slow.id) < ids.index(after_slow.id)
        assert failing.id not in ids


async def _has(probe: Probe, event_id: str) -> bool:
    return event_id in await effect_ids(probe)


async def test_settlers_run_once_per_transaction_before_its_commit_and_never_for_a_dead_lettered_event(make_settings):
    """Reactions leave work to the settlers (`IN_BATCH` in the session); the settlers see every event of the
    transaction, a batch or an event retried alone, and what they write commits with it."""
    settings = settings_with(make_settings, inbox_max_attempts=2)
    codes = codes_on_partitions(settings.kafka_partitions, 8)[0]
    async with running_probe(settings) as probe:
        settlements: list[list[str]] = []

        async def leave_work(session, envelope):
            assert in_batch(session)
            session.info.setdefault("probe_applied", []).append(envelope.id)

        async def settle(session):
            applied = session.info.pop("probe_applied", [])
            if applied:
                settlements.append(applied)
                await session.execute(
                    sa.insert(effects).values(event_id=f"settled-{len(settlements)}", foundry_code="", revision=0)
                )

        probe.consumer.subscriptions.react(FoundryRegistered, leave_work)
        probe.consumer.subscriptions.settle(settle)
        (warm,) = await probe.publish(registered(codes[0]))
        await eventually(lambda: _has(probe, warm.id), timeout=60)

        # The later events wait behind a gated one, then make one batch.
        probe.gated.add(codes[1])
        (first,) = await probe.publish(registered(codes[1]))
        await asyncio.sleep(3)
        # Straight to the topic: on SQLite the gated transaction holds the probe's outbox, in the same database.
        rest = [Envelope.of(registered(code)) for code in codes[2:5]]
        for envelope in rest:
            message = to_kafka(envelope)
            await probe.producer.send_and_wait(
                settings.topic(topic_of("capacity")),
                message.value,
                key=envelope.key.encode(),
                headers=list(message.headers.items()),
            )
        await asyncio.sleep(2)
        probe.gate.set()
        await eventually(lambda: _has(probe, rest[-1].id), timeout=60)
        assert settlements == [[warm.id], [first.id], [e.id for e in rest]]

        # A batch with a failing event: the others are applied one per transaction, each settled alone; the failing
        # one is dead-lettered and never settled.
        probe.failing.add(codes[6])
        good, failing, later = await probe.publish(registered(codes[5]), registered(codes[6]), registered(codes[7]))
        await eventually(lambda: _has(probe, later.id), timeout=60)
        assert probe.consumer.stats.dead_letters == [failing.id]
        assert settlements[3:] == [[good.id], [later.id]]
        settled_rows = [i for i in await effect_ids(probe) if i.startswith("settled-")]
        assert len(settled_rows) == len(settlements) == 5


# --- an outage is not the event's fault -----------------------------------------------------------------


async def test_a_faulty_event_is_retried_a_bounded_number_of_times_then_dead_lettered_whatever_its_error(make_settings, backend):
    """SQLite raises OperationalError for a missing column, PostgreSQL ProgrammingError: neither is an outage."""
    settings = settings_with(make_settings, inbox_max_attempts=3)
    async with running_probe(settings) as probe:
        probe.faulty.add("IKM-321")
        (faulty,) = await probe.publish(registered("IKM-321"))
        await eventually(lambda: asyncio.sleep(0, probe.consumer.stats.dead_lettered == 1), timeout=60)
        probe.faulty.clear()  # the bug is fixed: the partition goes on
        (later,) = await probe.publish(updated("IKM-321", 2))
        await eventually(lambda: _has(probe, later.id), timeout=60)
        (letter,) = await list_dead_letters(settings, "orders")
        assert letter.event_id == faulty.id and letter.attempts == 3
        assert "no_such_column" in letter.error
        assert letter.error_type == ("OperationalError" if backend == "sqlite" else "ProgrammingError")


async def test_a_database_that_does_not_answer_pauses_consumption_and_dead_letters_nothing(make_settings, backend, request):
    settings = settings_with(make_settings, inbox_max_attempts=2, inbox_database_probe_timeout_s=1.0)
    async with running_probe(settings, sqlite_busy_timeout_s=1.0) as probe:
        (before,) = await probe.publish(registered("IKM-401"))
        await eventually(lambda: _has(probe, before.id))
        outage = await _database_outage(probe, backend, request)
        try:
            # Published straight to the topic: the probe's outbox lives in the same database.
            during = [Envelope.of(updated("IKM-401", revision)) for revision in range(2, 6)]
            for envelope in during:
                message = to_kafka(envelope)
                topic = settings.topic(topic_of("capacity"))
                await probe.producer.send_and_wait(
                    topic, message.value, key=envelope.key.encode(), headers=list(message.headers.items())
                )
            await asyncio.sleep(8)  # several failed attempts' worth, had they counted
            assert probe.consumer.stats.dead_lettered == 0 and probe.consumer.stats.applied == 1
            assert probe.consumer.running
        finally:
            await outage.end()
        await eventually(lambda: _has(probe, during[-1].id), timeout=60)
        assert await effect_ids(probe) == [before.id, *(e.id for e in during)]
        assert probe.consumer.stats.dead_lettered == 0
        assert await list_dead_letters(settings, "orders") == []


class _Outage:
    def __init__(self, end: Any) -> None:
        self.end = end


async def _database_outage(probe: Probe, backend: str, request: pytest.FixtureRequest) -> _Outage:
    """Makes the probe's database stop answering until `end()`: SQLite held locked by another process's
    writer, PostgreSQL refusing every connection to the database."""
    url = probe.engine.url
    if backend == "sqlite":
        holder = sqlite3.connect(url.database, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")

        async def release() -> None:
            holder.execute("ROLLBACK")
            holder.close()

        return _Outage(release)
    server = request.getfixturevalue("postgres_server")
    name = url.database

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(host=server.host, port=server.port, user=server.user, database="postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    return _Outage(lambda: admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))


# --- what a consumer does not know -----------------------------------------------------------------------


async def test_unknown_event_types_are_skipped_logged_once_and_counted(make_settings, caplog, capfd):
    settings = settings_with(make_settings)
    newer = "ceper.capacity.foundry_merged.v1"
    async with running_probe(settings) as probe:
        counted = sample("ceper_events_unknown_total", service="orders", event_type=newer)
        message = to_kafka(Envelope.of(registered("IKM-501")))
        headers = [(k, newer.encode() if k == "ce_type" else v) for k, v in message.headers.items()]
        topic = settings.topic(topic_of("capacity"))
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                await probe.producer.send_and_wait(topic, message.value, key=b"IKM-501", headers=headers)
            (known,) = await probe.publish(registered("IKM-501"))
            await eventually(lambda: _has(probe, known.id))
        assert sample("ceper_events_unknown_total", service="orders", event_type=newer) == counted + 3
        assert probe.consumer.stats.unknown == 3 and probe.consumer.stats.dead_lettered == 0
    # Wherever the line went (the logging setup of the service, or structlog's default before it), it went once.
    out, err = capfd.readouterr()
    line = "events of an unknown type are skipped"
    assert max(out.count(line), err.count(line), caplog.text.count(line)) == 1
    assert newer in out + err + caplog.text


async def test_an_event_beyond_what_the_tables_store_is_dead_lettered_with_the_reason(make_settings):
    """What PostgreSQL's columns would refuse, SQLite would store: both dead-letter it before it reaches a table."""
    settings = settings_with(make_settings)
    topic = settings.topic(topic_of("capacity"))
    async with running_probe(settings) as probe:
        oversized = {"name": "x" * 300_000}, {"foundry_code": "IKM-0000000000000000000025"}
        for change in oversized:
            envelope = Envelope.of(registered("IKM-550"))
            message = to_kafka(envelope)
            value = json.dumps({**json.loads(message.value), **change}).encode()
            await probe.producer.send_and_wait(topic, value, key=b"IKM-550", headers=list(message.headers.items()))
        (fitting,) = await probe.publish(registered("IKM-550"))
        await eventually(lambda: _has(probe, fitting.id))
        letters = await list_dead_letters(settings, "orders")
        assert [letter.error_type for letter in letters] == ["MalformedEvent", "MalformedEvent"]
        assert "name: String should have at most 200 characters" in letters[0].error
        assert "foundry_code: String should match pattern" in letters[1].error
        assert await effect_ids(probe) == [fitting.id]


# --- a redrive reaches the consumer that dead-lettered, and no other --------------------------------------


async def test_a_redrive_of_qualitys_dead_letter_does_not_reach_orders(make_settings):
    settings = settings_with(make_settings)
    async with running_probe(settings, service="quality") as quality, running_probe(settings, service="orders") as orders:
        quality.failing.add("IKM-610")
        (event,) = await quality.publish(registered("IKM-610"))
        await eventually(lambda: _has(orders, event.id))
        await eventually(lambda: asyncio.sleep(0, quality.consumer.stats.dead_lettered == 1), timeout=60)

        quality.failing.clear()
        sent = await redrive(settings, "quality")
        assert [letter.event_id for letter in sent] == [event.id]
        await eventually(lambda: _has(quality, event.id))
        await asyncio.sleep(2)  # time for orders to see it, were it sent where orders reads
        assert orders.consumer.stats.applied == 1 and orders.consumer.stats.duplicates == 0
        assert await effect_ids(orders) == [event.id]
        assert await list_dead_letters(settings, "orders") == []

        retried = [r async for records in read_to_end(settings, settings.topic(retry_topic_of("quality"))) for r in records]
        assert [dict(r.headers)["ce_id"].decode() for r in retried] == [event.id]
        original = [r async for records in read_to_end(settings, settings.topic(topic_of("capacity"))) for r in records]
        assert len(original) == 1  # the event's own topic got nothing new


# --- lag from the broker, supervision ---------------------------------------------------------------------


async def test_lag_keeps_rising_while_a_partition_is_stuck(make_settings):
    settings = settings_with(make_settings, inbox_lag_interval_s=0.5)
    code = "IKM-700"
    partition = str(partition_of(code, settings.kafka_partitions))
    topic = settings.topic(topic_of("capacity"))

    def lag() -> float:
        return sample("ceper_consumer_lag", service="orders", topic=topic, partition=partition)

    async def send(*events: Any) -> None:
        # Straight to the topic: on SQLite the stuck transaction holds the write lock the outbox would need.
        for data in events:
            envelope = Envelope.of(data)
            message = to_kafka(envelope)
            await probe.producer.send_and_wait(
                topic, message.value, key=envelope.key.encode(), headers=list(message.headers.items())
            )

    async with running_probe(settings) as probe:
        probe.gated.add(code)
        await send(registered(code))
        seen = []
        for round_ in range(1, 4):
            await send(*[updated(code, round_ * 10 + k) for k in range(5)])

            async def lag_grew(expected: int = 1 + round_ * 5) -> bool:
                return lag() >= expected

            await eventually(lag_grew, timeout=30)
            seen.append(lag())
        assert seen == sorted(seen) and seen[-1] == 16

        probe.gate.set()
        await eventually(lambda: asyncio.sleep(0, lag() == 0), timeout=30)
        measured = await probe.consumer.measure_lag()
        assert measured and all(behind == 0 for behind in measured.values())


async def test_a_consumer_loop_that_dies_is_restarted_counted_and_reported(make_settings):
    settings = settings_with(make_settings)
    async with running_probe(settings) as probe:
        consumer = probe.consumer
        await eventually(lambda: asyncio.sleep(0, consumer.running and bool(consumer.assignment())))
        restarts = sample("ceper_consumer_restarts_total", service="orders")
        assert sample("ceper_consumer_running", service="orders") == 1

        assert consumer._consumer is not None
        await consumer._consumer.stop()  # pulled from under the loop: its next fetch fails

        await eventually(lambda: asyncio.sleep(0, not consumer.running))
        assert consumer.status.startswith("restarting after 1 failure(s)")
        assert sample("ceper_consumer_running", service="orders") == 0
        await eventually(lambda: asyncio.sleep(0, consumer.running and bool(consumer.assignment())), timeout=60)
        assert consumer.status == "ok" and consumer.stats.restarts == 1
        assert sample("ceper_consumer_restarts_total", service="orders") == restarts + 1
        assert sample("ceper_consumer_running", service="orders") == 1

        (after,) = await probe.publish(registered("IKM-801"))
        await eventually(lambda: _has(probe, after.id))


async def test_settings_name_the_replica_with_a_stable_instance_id(make_settings):
    settings = settings_with(make_settings, instance_id="orders-a")
    async with running_probe(settings) as probe:
        (event,) = await probe.publish(registered("IKM-901"))
        await eventually(lambda: _has(probe, event.id))
        assert probe.consumer.running
    with pytest.raises(ValueError, match="instance_id"):
        settings_with(make_settings, instance_id="not a name!")
