"""Throughput and latency of the event backbone (outbox → relay → Kafka → inbox) against bare aiokafka.

Starts its own Kafka broker and PostgreSQL server in temporary directories on free ports and stops them at
the end. Every producer and consumer runs in a process of its own, as the services do. Prints a table and,
as the last line, one JSON object with every figure. How to read it: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import math
import multiprocessing
import os
import pwd
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/backbone.py` puts bench/ on the path, not the repository

import asyncpg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aiokafka.errors import KafkaError  # noqa: E402

from ceper.access import LocalIssuer  # noqa: E402
from ceper.broker import LocalKafka, free_port  # noqa: E402
from shared import kafka, tracing  # noqa: E402
from shared.db import backbone_tables, create_engine, session_factory  # noqa: E402
from shared.events import Envelope, dlq_topic_of, retry_topic_of, to_kafka, topic_of  # noqa: E402
from shared.events.capacity import FoundryUpdated  # noqa: E402
from shared.inbox import InboxConsumer, Subscriptions  # noqa: E402
from shared.kafka import BrokerError  # noqa: E402
from shared.logging import configure_logging  # noqa: E402
from shared.outbox import WAKE_KEY, Relay, stage  # noqa: E402
from shared.service import freeze_startup_heap  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topics import DLQ_TOPIC_CONFIG, EVENT_TOPIC_CONFIG, RETRY_TOPIC_CONFIG, ensure_topics  # noqa: E402

# The benchmarks' own throw-away issuer: the services they start trust it, their clients call as its admin.
ISSUER = LocalIssuer()
STAFF = ISSUER.auth(roles=["admin"], subject="bench", ttl_s=12 * 3600)
_jwks_url: list[str] = []


def issuer_env() -> dict[str, str]:
    """The environment that makes a service trust `ISSUER`; its JWKS is served for the rest of the run."""
    if not _jwks_url:
        _jwks_url.append(ISSUER.serve_in_background())
    return ISSUER.env(_jwks_url[0])


BACKENDS = ("sqlite", "postgresql")
PRODUCING_SERVICE = "capacity"
CONSUMING_SERVICE = "orders"
PREFILL_TRANSACTION = 500
TARGET_RATIO = 0.7
TARGET_RATIO_TO_PARTITIONED = 0.8
TARGET_EVENTS_PER_S = 5000
TARGET_P99_MS = 50.0
# Tracing switched off may cost the consumer at most 5 % against hooks that are not called at all.
TARGET_TRACING_OFF_RATIO = 0.95
# Cores other processes may take during a run before the report says the figures are disturbed.
OTHER_LOAD_WARNING = 0.25
QUIET_PATIENCE_S = 30.0

metadata = sa.MetaData()
backbone = backbone_tables(metadata)
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("foundry_code", sa.String(20), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
)
# Built once: a statement object reused with new parameters skips SQLAlchemy's per-call cache-key work.
INSERT_EFFECT = sa.insert(effects)


async def write_effect(session: Any, event_id: str, foundry_code: str, revision: int) -> None:
    """The effect of one event, written the same way by our handler and by the baseline consumer."""
    await session.execute(INSERT_EFFECT, {"event_id": event_id, "foundry_code": foundry_code, "revision": revision})


def foundry_updated(i: int, keys: int) -> FoundryUpdated:
    code = f"IKM-{i % keys:03d}"
    return FoundryUpdated(
        foundry_code=code,
        name=f"Foundry {code}",
        village="Batur",
        product_families=["BRAKE_BLOCKS", "PUMP_PARTS"],
        revision=i // keys + 1,
        updated_at=datetime.now(UTC),
    )


# --- the worker processes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What one producer/consumer pair works on: its own topics, consumer group and fresh databases."""

    bootstrap: str
    prefix: str
    producer_db: str
    consumer_db: str
    events: int = 0
    keys: int = 200
    rate: float = 0.0
    seconds: float = 0.0
    bulk: bool = False
    # "off" as shipped; "on": spans exported over OTLP to `otlp_endpoint`; "absent": the hooks are never called.
    tracing: str = "off"
    otlp_endpoint: str | None = None

    def settings(self) -> Settings:
        # Other knobs come from CEPER_… variables, so `CEPER_OUTBOX_BATCH_SIZE=1000` changes the runs too.
        return Settings(
            kafka_bootstrap_servers=self.bootstrap,
            kafka_topic_prefix=self.prefix,
            log_json=False,
            otel_exporter_otlp_endpoint=self.otlp_endpoint if self.tracing == "on" else None,
        )

    @property
    def topic(self) -> str:
        return self.settings().topic(topic_of(PRODUCING_SERVICE))


@dataclass
class Signals:
    ready: Any
    go: Any
    stop: Any
    # How many effects the consumers wait for; 0 until known (the latency run learns it at the end).
    target: Any
    # Effects committed by all consumer processes of the run together.
    applied: Any = None
    # Partitions each consumer process owns now, one slot per process: the group is settled when they add up.
    assigned: Any = None
    slot: int = 0


async def _until(flag: Any) -> None:
    # Polling keeps the event loop free; a blocking wait in a thread would outlive a failed run.
    while not flag.is_set():  # noqa: ASYNC110 — a multiprocessing event, set by another process
        await asyncio.sleep(0.002)


async def _until_assigned(assignment: Callable[[], set[Any]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not assignment():
        if time.monotonic() > deadline:
            raise TimeoutError("consumer got no partitions")
        await asyncio.sleep(0.01)


def _report_assignment(signals: Signals, assignment: Callable[[], set[Any]]) -> asyncio.Task[None]:
    """Keeps this process's slot of `signals.assigned` up to date, so the parent sees when the group has settled."""

    async def report() -> None:
        while True:
            signals.assigned[signals.slot] = len(assignment())
            await asyncio.sleep(0.02)

    return asyncio.create_task(report())


async def _create_tables(url: str) -> None:
    engine = await _engine_with_tables(url)
    await engine.dispose()


async def _engine_with_tables(url: str) -> Any:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return engine


def _trace(job: Job, service: str, engine: Any) -> None:
    """Tracing as the job asks: on, as a service configured with an OTLP endpoint (its database statements
    traced too); absent, the backbone's hooks replaced by bare answers, as if there were no tracing at all."""
    if job.tracing == "on":
        assert tracing.setup(service, job.settings(), engine=engine)
    elif job.tracing == "absent":
        # Module attributes replaced on purpose: the backbone calls them through the module.
        tracing.consuming = lambda *_args: nullcontext()
        tracing.event_headers = dict
        tracing.trace_id = lambda: None


class OtlpSink:
    """An OTLP/HTTP receiver that accepts every export and keeps nothing: the far end of the traced runs."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def relay_role(job: Job, signals: Signals) -> dict[str, Any]:
    """Ours, producing side: the outbox holds every event before the relay starts."""
    settings = job.settings()
    engine = await _engine_with_tables(job.producer_db)
    _trace(job, PRODUCING_SERVICE, engine)
    relay = Relay(PRODUCING_SERVICE, engine, backbone.outbox, settings)
    sessions = session_factory(engine, **{WAKE_KEY: relay.wake})
    for start in range(0, job.events, PREFILL_TRANSACTION):
        async with sessions.begin() as session:
            end = min(start + PREFILL_TRANSACTION, job.events)
            await stage(session, backbone.outbox, *[foundry_updated(i, job.keys) for i in range(start, end)])
    producer = kafka.producer(settings, client_id="bench-relay")
    await producer.start()
    freeze_startup_heap()  # as a service does once it has started
    signals.ready.set()
    await _until(signals.go)
    started = time.monotonic()
    await relay.start(producer)
    while relay.stats.published < job.events:  # noqa: ASYNC110 — a count the relay raises; there is no event to wait on
        await asyncio.sleep(0.002)
    acked = time.monotonic()
    await _until(signals.stop)
    await relay.stop()
    await producer.stop()
    await engine.dispose()
    return {"started": started, "acked": acked, "published": relay.stats.published}


async def bare_producer_role(job: Job, signals: Signals) -> dict[str, Any]:
    """Baseline, producing side: the same encoded messages straight to the producer, nothing stored."""
    settings = job.settings()
    messages = []
    for i in range(job.events):
        envelope = Envelope.of(foundry_updated(i, job.keys))
        message = to_kafka(envelope)
        messages.append((envelope.key.encode(), message.value, list(message.headers.items())))
    producer = kafka.producer(settings, client_id="bench-bare-producer")
    await producer.start()
    signals.ready.set()
    await _until(signals.go)
    started = time.monotonic()
    topic = job.topic
    futures = [await producer.send(topic, value=value, key=key, headers=headers) for key, value, headers in messages]
    await asyncio.gather(*futures)
    acked = time.monotonic()
    await _until(signals.stop)
    await producer.stop()
    return {"started": started, "acked": acked, "published": len(futures)}


# Stage times of the events in the batch being applied, per applying task.
staged_in_batch: contextvars.ContextVar[list[datetime]] = contextvars.ContextVar("staged_in_batch")


class Tally:
    """Effects committed so far (by this process and by all consumer processes of the run), when the target
    was reached, and each event's stage-to-commit latency."""

    def __init__(self, signals: Signals) -> None:
        self.target = signals.target
        self.applied = signals.applied
        self.count = 0
        self.done_at: float | None = None
        # Each commit's time and the stage times of its events, turned into latencies only once the run is over:
        # the consumer measured spends no CPU on it while it works.
        self._commits: list[tuple[float, list[datetime]]] = []

    def committed(self, count: int, staged_at: list[datetime] | None = None) -> None:
        if staged_at:
            self._commits.append((time.time(), staged_at))
        self.count += count
        with self.applied.get_lock():
            self.applied.value += count
        self.done()

    def latencies(self) -> list[tuple[float, float]]:
        """(staged at, seconds from staged to committed) of every event committed with its stage time."""
        out = []
        for committed_at, staged_at in self._commits:
            for staged in staged_at:
                stamp = staged.timestamp()
                out.append((stamp, committed_at - stamp))
        return out

    def done(self) -> bool:
        # The process whose commit reaches the target notes the time first; the others see it a poll later.
        if self.done_at is None and 0 < self.target.value <= self.applied.value:
            self.done_at = time.monotonic()
        return self.done_at is not None


async def inbox_role(job: Job, signals: Signals) -> dict[str, Any]:
    """Ours, consuming side: the real InboxConsumer with a handler that writes one effect row per event."""
    settings = job.settings()
    engine = await _engine_with_tables(job.consumer_db)
    _trace(job, CONSUMING_SERVICE, engine)

    async def apply_update(session: Any, envelope: Envelope[FoundryUpdated]) -> None:
        await write_effect(session, envelope.id, envelope.data.foundry_code, envelope.data.revision)
        staged_in_batch.get().append(envelope.time)

    subscriptions = Subscriptions(CONSUMING_SERVICE)
    subscriptions.add(FoundryUpdated, apply_update)
    consumer = InboxConsumer(CONSUMING_SERVICE, subscriptions, session_factory(engine), backbone.inbox, settings)
    tally = Tally(signals)
    apply = consumer.apply

    async def apply_and_tally(batches: Any) -> None:
        # apply() returns once the batch's transaction committed: that instant is the effect's commit time.
        # Batches of several partitions may be applied at once: each call collects its own stage times.
        token = staged_in_batch.set([])
        try:
            await apply(batches)
            staged_at = staged_in_batch.get()
        finally:
            staged_in_batch.reset(token)
        tally.committed(len(staged_at), staged_at)

    consumer.apply = apply_and_tally  # type: ignore[method-assign]
    producer = kafka.producer(settings, client_id="bench-inbox-dlq")
    await producer.start()
    await consumer.start(producer)
    freeze_startup_heap()  # as a service does once it has started
    await _until_assigned(consumer.assignment)
    # The events' partitions: the consumer also owns partitions of its retry topic, which stays empty here.
    events_topic = job.topic  # once: building the settings on every report tick would cost the consumer its CPU
    reporter = _report_assignment(signals, lambda: {tp for tp in consumer.assignment() if tp.topic == events_topic})
    signals.ready.set()
    while not tally.done():  # noqa: ASYNC110 — the tally is filled by the consumer; there is no event to wait on
        await asyncio.sleep(0.005)
    reporter.cancel()
    await consumer.stop()
    await producer.stop()
    await engine.dispose()
    tracing.flush()
    stats = consumer.stats
    return {
        "done_at": tally.done_at,
        "applied": stats.applied,
        "duplicates": stats.duplicates,
        "dead_lettered": stats.dead_lettered,
        "batches": stats.batches,
        "latencies": tally.latencies(),
    }


async def bare_consumer_role(job: Job, signals: Signals) -> dict[str, Any]:
    """Baseline, consuming side: poll, write the batch's effects in one transaction, commit the offsets.

    Row by row with `write_effect`, as our handler does; with `job.bulk`, one multi-row INSERT per batch.
    """
    settings = job.settings()
    engine = await _engine_with_tables(job.consumer_db)
    sessions = session_factory(engine)
    consumer = kafka.consumer(
        settings, job.topic, group_id=settings.consumer_group("bench-bare"), client_id="bench-bare-consumer"
    )
    await consumer.start()
    await _until_assigned(consumer.assignment)
    reporter = _report_assignment(signals, consumer.assignment)
    signals.ready.set()
    tally = Tally(signals)
    batches_seen = 0
    while not tally.done():
        batches = await consumer.getmany(timeout_ms=1000, max_records=settings.inbox_batch_size)
        if not batches:
            continue
        rows = []
        for records in batches.values():
            for record in records:
                data = json.loads(record.value)
                event_id = dict(record.headers)["ce_id"].decode()
                rows.append({"event_id": event_id, "foundry_code": data["foundry_code"], "revision": data["revision"]})
        async with sessions.begin() as session:
            if job.bulk:
                await session.execute(INSERT_EFFECT, rows)
            else:
                for row in rows:
                    await write_effect(session, **row)
        tally.committed(len(rows))
        await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        batches_seen += 1
    reporter.cancel()
    await consumer.stop()
    await engine.dispose()
    return {"done_at": tally.done_at, "applied": tally.count, "duplicates": 0, "dead_lettered": 0, "batches": batches_seen}


async def bare_partitioned_role(job: Job, signals: Signals) -> dict[str, Any]:
    """Baseline for applying partitions independently: the bare loop of `bare_consumer_role`, one per partition.

    One fetch loop hands each partition's records to a task of its own; each task writes its records' effects
    in one transaction and commits its partition's offset after it. A partition with a backlog is paused.
    """
    settings = job.settings()
    engine = await _engine_with_tables(job.consumer_db)
    sessions = session_factory(engine)
    consumer = kafka.consumer(
        settings, job.topic, group_id=settings.consumer_group("bench-bare"), client_id="bench-bare-partitioned"
    )
    await consumer.start()
    await _until_assigned(consumer.assignment)
    reporter = _report_assignment(signals, consumer.assignment)
    signals.ready.set()
    tally = Tally(signals)
    queues: dict[Any, asyncio.Queue[list[Any]]] = {}
    workers: list[asyncio.Task[None]] = []
    batches_seen = 0

    async def apply_partition(tp: Any, queue: asyncio.Queue[list[Any]]) -> None:
        nonlocal batches_seen
        while True:
            records = await queue.get()
            while not queue.empty() and len(records) < settings.inbox_batch_size:
                records += queue.get_nowait()
            rows = []
            for record in records:
                data = json.loads(record.value)
                event_id = dict(record.headers)["ce_id"].decode()
                rows.append({"event_id": event_id, "foundry_code": data["foundry_code"], "revision": data["revision"]})
            async with sessions.begin() as session:
                for row in rows:
                    await write_effect(session, **row)
            tally.committed(len(rows))
            await consumer.commit({tp: records[-1].offset + 1})
            batches_seen += 1
            if queue.empty() and tp in consumer.paused():
                consumer.resume(tp)

    while not tally.done():
        fetched = await consumer.getmany(timeout_ms=100, max_records=settings.inbox_batch_size)
        for tp, records in fetched.items():
            queue = queues.get(tp)
            if queue is None:
                queue = queues[tp] = asyncio.Queue()
                workers.append(asyncio.create_task(apply_partition(tp, queue)))
            queue.put_nowait(records)
            if queue.qsize() >= 2:
                consumer.pause(tp)
        failed = [worker for worker in workers if worker.done()]
        if failed:
            failed[0].result()
    for worker in workers:
        worker.cancel()
    reporter.cancel()
    await consumer.stop()
    await engine.dispose()
    return {"done_at": tally.done_at, "applied": tally.count, "duplicates": 0, "dead_lettered": 0, "batches": batches_seen}


async def service_role(job: Job, signals: Signals) -> dict[str, Any]:
    """Ours at a steady rate: a service staging events in small transactions, its relay woken by each commit."""
    settings = job.settings()
    engine = await _engine_with_tables(job.producer_db)
    relay = Relay(PRODUCING_SERVICE, engine, backbone.outbox, settings)
    sessions = session_factory(engine, **{WAKE_KEY: relay.wake})
    producer = kafka.producer(settings, client_id="bench-service")
    await producer.start()
    await relay.start(producer)
    freeze_startup_heap()  # as a service does once it has started
    signals.ready.set()
    await _until(signals.go)
    started_wall = time.time()
    started = time.monotonic()
    end = started + job.seconds
    staged = transactions = 0
    while (now := time.monotonic()) < end:
        # Stage what is due by now: one event per transaction when on time, a few when the loop fell behind.
        due = int((now - started) * job.rate) + 1 - staged
        if due <= 0:
            await asyncio.sleep(started + staged / job.rate - now)
            continue
        async with sessions.begin() as session:
            await stage(session, backbone.outbox, *[foundry_updated(staged + k, job.keys) for k in range(due)])
        staged += due
        transactions += 1
    elapsed = time.monotonic() - started
    signals.target.value = staged  # tells the consumer how many effects to wait for
    await _until(signals.stop)
    await relay.stop()
    await producer.stop()
    await engine.dispose()
    return {"started_wall": started_wall, "staged": staged, "transactions": transactions, "elapsed": elapsed}


ROLES: dict[str, Callable[[Job, Signals], Awaitable[dict[str, Any]]]] = {
    "relay": relay_role,
    "bare-producer": bare_producer_role,
    "inbox": inbox_role,
    "bare-consumer": bare_consumer_role,
    "bare-partitioned": bare_partitioned_role,
    "service": service_role,
}


def _worker(role: str, job: Job, signals: Signals, results: Any, profile_dir: str | None = None, name: str | None = None) -> None:
    name = name or role
    configure_logging(f"bench-{name}", level="WARNING", json=False)
    profiler = None
    if profile_dir:
        from pyinstrument import Profiler

        # Whole-thread sampling: the event loop's time in every task, not only the awaited one.
        profiler = Profiler(async_mode="disabled")
        profiler.start()
    try:
        result = asyncio.run(ROLES[role](job, signals))
    except BaseException as exc:
        results.put({"role": name, "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        if profiler is not None and profile_dir:
            profiler.stop()
            path = Path(profile_dir) / f"{job.prefix.rstrip('.')}-{name}.txt"
            path.write_text(profiler.output_text(unicode=True, show_all=False))
    results.put({"role": name, **result})


# --- the servers -------------------------------------------------------------------------------------


class BenchError(RuntimeError):
    pass


class LocalPostgres:
    """A throw-away PostgreSQL cluster in a temporary directory, with production's durability settings."""

    USER = "postgres"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ceper-bench-pg-"))
        self.data_dir = self.root / "data"
        self.port: int | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            account = pwd.getpwnam(self.USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.as_user = ["runuser", "-u", self.USER, "--"]
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}

    def _run(self, binary: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        from tests.fixtures.postgres import find_server_binaries

        bin_dir = find_server_binaries()
        if bin_dir is None:
            raise BenchError("PostgreSQL server binaries not found: run `bash deploy/install-system-deps.sh` as root")
        command = [*self.as_user, str(bin_dir / binary), *args]
        done = subprocess.run(command, cwd=self.root, env=self.env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise BenchError(f"{binary} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    def start(self) -> None:
        self._run(
            "initdb", "--pgdata", str(self.data_dir), "--username", self.USER, "--auth", "trust",
            "--encoding", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n")
        for _attempt in range(3):
            port = free_port()
            done = self._run(
                "pg_ctl", "start", "--pgdata", str(self.data_dir), "--log", str(self.root / "server.log"),
                "--wait", "--timeout", "60", "-o", f"-p {port}", check=False,
            )  # fmt: skip
            if done.returncode == 0:
                self.port = port
                return
            self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "immediate", check=False)
        raise BenchError(f"PostgreSQL did not start; see {self.root / 'server.log'}")

    def stop(self) -> None:
        if self.port is not None:
            stopped = self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait", check=False)
            if stopped.returncode != 0 and (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "immediate", "--wait", check=False)
            self.port = None
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.USER}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid: pg_ctl detaches it, so it is no descendant of ours."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    async def wal_position(self) -> int:
        """Bytes of write-ahead log the server has written so far: what a run costs the disk, whatever the noise."""
        connection = await asyncpg.connect(host="127.0.0.1", port=self.port, user=self.USER, database="postgres")
        try:
            return int(await connection.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
        finally:
            await connection.close()

    async def admin(self, sql: str) -> None:
        connection = await asyncpg.connect(host="127.0.0.1", port=self.port, user=self.USER, database="postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()


async def wait_for_group_coordinator(bootstrap: str, timeout: float = 60) -> None:
    """The first group lookup makes a fresh broker create its offsets topic; wait for it outside the runs."""
    admin = kafka.admin(bootstrap, "bench-warm-up")
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await admin.find_coordinator("bench-warm-up")
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise BenchError("Kafka has no group coordinator: see the broker log") from None
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


def start_kafka(root: Path) -> LocalKafka:
    failures = []
    for attempt in range(3):
        port = free_port()
        controller = free_port()
        if controller == port:
            continue
        # A fresh directory each attempt: a data dir is tied to the controller port it was formatted with.
        broker = LocalKafka(root / f"kafka-{attempt}", port=port, controller_port=controller)
        try:
            broker.start()
        except BrokerError as exc:  # another process may take a free port before the JVM binds it
            failures.append(str(exc))
            continue
        try:
            asyncio.run(wait_for_group_coordinator(broker.bootstrap))
        except BaseException:
            broker.stop()
            raise
        return broker
    raise BenchError(f"Kafka did not start: {failures[-1] if failures else 'no free ports'}")


# --- other load on the machine -----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds the machine spent busy since boot, steal included (time another VM took from us)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in stat.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICK


def _process_table() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, CPU seconds of the process and of its children already reaped)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        table[int(entry)] = (int(fields[1]), sum(int(v) for v in fields[11:15]) / _TICK)
    return table


class CpuMeter:
    """How much CPU went to processes that are not part of this benchmark while it measured.

    The benchmark is this process, its descendants (workers, Kafka) and the PostgreSQL server; everything
    else busy on the machine competes with it for the same cores and makes the figures lower.
    """

    def __init__(self, extra_roots: Callable[[], list[int]]) -> None:
        self.extra_roots = extra_roots
        self._start: tuple[float, float, float] | None = None

    def _ours_s(self) -> float:
        table = _process_table()
        family = {os.getpid(), *self.extra_roots()}
        grew = True
        while grew:  # descendants, as a fixpoint over the parent links
            before = len(family)
            family |= {pid for pid, (parent, _) in table.items() if parent in family}
            grew = len(family) > before
        return sum(table[pid][1] for pid in family if pid in table)

    def start(self) -> None:
        self._start = (time.monotonic(), _machine_busy_s(), self._ours_s())

    def wait_for_quiet(self, limit: float, patience_s: float) -> float:
        """Waits, up to `patience_s`, for a second in which other processes take under `limit` cores."""
        deadline = time.monotonic() + patience_s
        while True:
            self.start()
            time.sleep(1.0)
            other = self.other_cores()
            if other < limit or time.monotonic() >= deadline:
                return other

    def other_cores(self) -> float:
        """Cores used by other processes since `start()`, on average."""
        assert self._start is not None
        wall, busy, ours = self._start
        elapsed = time.monotonic() - wall
        other = (_machine_busy_s() - busy) - (self._ours_s() - ours)
        return max(0.0, other / elapsed) if elapsed > 0 else 0.0


# --- running pairs of workers ------------------------------------------------------------------------


@dataclass
class Throughput:
    events_per_s: float
    seconds: float
    producer_seconds: float  # until the broker acked the last event
    batches: int  # poll batches the consumer applied
    other_cores: float  # CPU that other processes on the machine took meanwhile
    wal_bytes: int | None = None  # PostgreSQL's write-ahead log written from the start to the last effect


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    measured: int
    achieved_rate: float
    events_per_transaction: float
    other_cores: float


@dataclass(frozen=True)
class Pipeline:
    """The producer and consumer roles of a pipeline measured for throughput, and how many consumer processes."""

    producer: str
    consumer: str
    consumers: int = 1
    bulk: bool = False
    tracing: str = "off"


def pipelines(consumers: int) -> dict[str, Pipeline]:
    modes = {
        "ours": Pipeline("relay", "inbox"),
        # Ours with tracing's hooks not called at all, and with tracing on: what tracing costs off and on.
        "untraced": Pipeline("relay", "inbox", tracing="absent"),
        "traced": Pipeline("relay", "inbox", tracing="on"),
        "baseline": Pipeline("bare-producer", "bare-consumer"),
        "partitioned": Pipeline("bare-producer", "bare-partitioned"),
        # Our consumer fed as the bare loops are (the bare producer, no outbox): consumer against consumer.
        "consumer": Pipeline("bare-producer", "inbox"),
        "bulk": Pipeline("bare-producer", "bare-consumer", bulk=True),
    }
    if consumers > 1:
        # The same consumer, as several processes of one consumer group: what scaling out adds.
        modes[f"ours-x{consumers}"] = Pipeline("relay", "inbox", consumers=consumers)
    return modes


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ctx = multiprocessing.get_context("spawn")
        self.root = Path(tempfile.mkdtemp(prefix="ceper-bench-"))
        self.kafka: LocalKafka | None = None
        self.postgres: LocalPostgres | None = None
        self.runs = 0
        self.meter = CpuMeter(lambda: [pid for pid in [self.postgres and self.postgres.pid] if pid])
        self.other_cores: list[float] = []  # one figure per measured run
        self.otlp = OtlpSink()

    def __enter__(self) -> Bench:
        try:
            log("starting Kafka …")
            self.kafka = start_kafka(self.root)
            if "postgresql" in self.args.backends:
                log("starting PostgreSQL …")
                self.postgres = LocalPostgres()
                self.postgres.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.otlp.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.kafka is not None:
            self.kafka.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- one fresh job: its own topics, consumer group and databases

    def new_job(self, backend: str, **work: Any) -> Job:
        assert self.kafka is not None
        self.runs += 1
        run = f"r{self.runs}"
        if backend == "sqlite":
            folder = self.root / "sqlite" / run
            folder.mkdir(parents=True)
            producer_db = f"sqlite+aiosqlite:///{folder / 'producer.db'}"
            consumer_db = f"sqlite+aiosqlite:///{folder / 'consumer.db'}"
        else:
            assert self.postgres is not None
            for side in ("producer", "consumer"):
                asyncio.run(self.postgres.admin(f'CREATE DATABASE "{run}_{side}"'))
            producer_db, consumer_db = self.postgres.url(f"{run}_producer"), self.postgres.url(f"{run}_consumer")
        job = Job(self.kafka.bootstrap, f"bench-{run}-{uuid.uuid4().hex[:6]}.", producer_db, consumer_db, **work)
        settings = job.settings()
        topics = {
            settings.topic(topic_of(PRODUCING_SERVICE)): EVENT_TOPIC_CONFIG,
            settings.topic(dlq_topic_of(CONSUMING_SERVICE)): DLQ_TOPIC_CONFIG,
            settings.topic(retry_topic_of(CONSUMING_SERVICE)): RETRY_TOPIC_CONFIG,
        }
        asyncio.run(ensure_topics(self.kafka.bootstrap, topics, partitions=settings.kafka_partitions))
        # Created here once: consumer processes of one group starting together would race on the DDL.
        asyncio.run(_create_tables(consumer_db))
        return job

    def drop_job(self, backend: str, job: Job) -> None:
        if backend == "sqlite":
            shutil.rmtree(Path(sa.make_url(job.producer_db).database or "").parent, ignore_errors=True)
        else:
            assert self.postgres is not None
            for url in (job.producer_db, job.consumer_db):
                name = sa.make_url(url).database
                asyncio.run(self.postgres.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def run_pair(
        self, job: Job, producer_role: str, consumer_role: str, consumers: int = 1
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Starts the producer and `consumers` consumer processes (one consumer group), lets the producer go
        once all are ready and the group has settled, returns the producer's result and the consumers' summed."""
        ctx = self.ctx
        profile = str(self.args.profile) if self.args.profile else None
        results = ctx.Queue()
        go, stop = ctx.Event(), ctx.Event()
        target = ctx.Value("q", job.events)
        applied = ctx.Value("q", 0)
        assigned = ctx.Array("i", consumers)
        producer_ready = ctx.Event()
        consumer_ready = [ctx.Event() for _ in range(consumers)]
        names = [consumer_role if consumers == 1 else f"{consumer_role}-{i + 1}" for i in range(consumers)]
        processes = {
            name: ctx.Process(
                target=_worker,
                args=(consumer_role, job, Signals(ready, go, stop, target, applied, assigned, slot), results, profile, name),
                daemon=True,
            )
            for slot, (name, ready) in enumerate(zip(names, consumer_ready, strict=True))
        }
        processes[producer_role] = ctx.Process(
            target=_worker,
            args=(producer_role, job, Signals(producer_ready, go, stop, target, applied), results, profile),
            daemon=True,
        )
        collected: dict[str, dict[str, Any]] = {}

        def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                try:
                    result = results.get(timeout=0.05)
                except queue.Empty:
                    result = None
                if result is not None:
                    if "error" in result:
                        raise BenchError(f"{result['role']} failed: {result['error']}")
                    collected[result["role"]] = result
                    continue
                dead = [role for role, p in processes.items() if not p.is_alive() and role not in collected]
                if dead:
                    raise BenchError(f"{', '.join(dead)} exited early while waiting for {what}")
                if time.monotonic() > deadline:
                    raise BenchError(f"timed out after {timeout:g} s waiting for {what}")

        def group_settled() -> bool:
            # Every consumer owns partitions, and together all of them: no rebalance is still under way.
            owned = list(assigned[:])
            return all(owned) and sum(owned) == job.settings().kafka_partitions

        try:
            for process in processes.values():
                process.start()
            wait_for(
                lambda: producer_ready.is_set() and all(e.is_set() for e in consumer_ready) and group_settled(),
                180,
                "workers to be ready",
            )
            # A burst of other work (a test suite, a build) would make this one run an outlier: let it pass.
            other = self.meter.wait_for_quiet(OTHER_LOAD_WARNING, QUIET_PATIENCE_S)
            if other >= OTHER_LOAD_WARNING:
                log(f"  the machine stays busy ({other:.2f} cores of other work): measuring anyway")
            self.meter.start()
            wal_before = self._wal_position()
            go.set()
            budget = 120 + job.events / 200 + job.seconds * 3
            wait_for(lambda: all(name in collected for name in names), budget, "the last effect")
            other_cores = self.meter.other_cores()
            wal_after = self._wal_position()
            stop.set()
            wait_for(lambda: producer_role in collected, 60, "the producer to stop")
            for process in processes.values():
                process.join(30)
        finally:
            stop.set()
            for process in processes.values():
                if process.is_alive():
                    process.terminate()
                    process.join(10)
        parts = [collected[name] for name in names]
        consumed: dict[str, Any] = {
            # The process whose commit reached the target noted the time first.
            "done_at": min(part["done_at"] for part in parts if part["done_at"] is not None),
            **{key: sum(part[key] for part in parts) for key in ("applied", "duplicates", "dead_lettered", "batches")},
            "latencies": [sample for part in parts for sample in part.get("latencies", [])],
            "other_cores": other_cores,
            "wal_bytes": None if wal_before is None or wal_after is None else wal_after - wal_before,
        }
        return collected[producer_role], consumed

    def _wal_position(self) -> int | None:
        if self.postgres is None or self.postgres.port is None:
            return None
        return asyncio.run(self.postgres.wal_position())

    # -- the measurements

    def throughput(self, backend: str, mode: str, events: int) -> Throughput:
        pipeline = pipelines(self.args.consumers)[mode]
        job = self.new_job(
            backend, events=events, keys=self.args.keys, bulk=pipeline.bulk, tracing=pipeline.tracing, otlp_endpoint=self.otlp.url
        )
        try:
            produced, consumed = self.run_pair(job, pipeline.producer, pipeline.consumer, pipeline.consumers)
        finally:
            self.drop_job(backend, job)
        if consumed["applied"] != events or consumed["duplicates"] or consumed["dead_lettered"]:
            raise BenchError(f"{mode} on {backend}: expected {events} effects exactly once, got {consumed}")
        seconds = consumed["done_at"] - produced["started"]
        return Throughput(
            events / seconds,
            seconds,
            produced["acked"] - produced["started"],
            consumed["batches"],
            consumed["other_cores"],
            consumed["wal_bytes"],
        )

    def latency(self, backend: str) -> Latency:
        warmup = self.args.latency_warmup
        job = self.new_job(backend, keys=self.args.keys, rate=self.args.rate, seconds=warmup + self.args.latency_seconds)
        try:
            produced, consumed = self.run_pair(job, "service", "inbox")
        finally:
            self.drop_job(backend, job)
        self.other_cores.append(consumed["other_cores"])
        cutoff = produced["started_wall"] + warmup
        samples = sorted(latency for staged, latency in consumed["latencies"] if staged >= cutoff)
        if not samples:
            raise BenchError(f"latency on {backend}: no events measured")
        return Latency(
            p50_ms=percentile(samples, 0.50) * 1000,
            p99_ms=percentile(samples, 0.99) * 1000,
            max_ms=samples[-1] * 1000,
            measured=len(samples),
            achieved_rate=produced["staged"] / produced["elapsed"],
            events_per_transaction=produced["staged"] / max(1, produced["transactions"]),
            other_cores=consumed["other_cores"],
        )

    def measure(self, backend: str) -> dict[str, Any]:
        args = self.args
        modes = pipelines(args.consumers)
        warm = min(args.events, 5000)
        log(f"[{backend}] warm-up: {warm} events through each pipeline")
        for mode in modes:
            self.throughput(backend, mode, warm)
        runs: dict[str, list[Throughput]] = {mode: [] for mode in modes}
        for repeat in range(args.repeats):
            # Alternating keeps slow drift (page cache, the broker's JIT) from favouring one pipeline.
            for mode in modes:
                result = self.throughput(backend, mode, args.events)
                runs[mode].append(result)
                self.other_cores.append(result.other_cores)
                log(
                    f"[{backend}] run {repeat + 1}/{args.repeats} {mode:<11} {result.events_per_s:>9,.0f} events/s "
                    f"({args.events:,} in {result.seconds:.2f} s; all acked after {result.producer_seconds:.2f} s; "
                    f"{result.batches} batches applied; other load {result.other_cores:.2f} cores"
                    + ("" if result.wal_bytes is None else f"; WAL {result.wal_bytes / args.events:,.0f} B/event")
                    + ")"
                )
        log(f"[{backend}] latency: {args.rate:g} events/s for {args.latency_seconds:g} s after {args.latency_warmup:g} s warm-up")
        latency = self.latency(backend)
        log(
            f"[{backend}] latency p50 {latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms, max {latency.max_ms:.1f} ms "
            f"(other load {latency.other_cores:.2f} cores)"
        )
        median = {mode: statistics.median(r.events_per_s for r in runs[mode]) for mode in modes}
        ours, baseline, partitioned, bulk = median["ours"], median["baseline"], median["partitioned"], median["bulk"]
        consumer = median["consumer"]
        group = median.get(f"ours-x{args.consumers}", ours)
        untraced, traced = median["untraced"], median["traced"]
        return {
            "ours_events_per_s": round(ours),
            "baseline_events_per_s": round(baseline),
            "ratio": round(ours / baseline, 3),
            "partitioned_events_per_s": round(partitioned),
            "ratio_to_partitioned": round(ours / partitioned, 3),
            "consumer_events_per_s": round(consumer),
            "consumer_ratio_to_partitioned": round(consumer / partitioned, 3),
            "group_consumers": args.consumers,
            "group_events_per_s": round(group),
            "group_ratio": round(group / ours, 3),
            "bulk_events_per_s": round(bulk),
            "ratio_to_bulk": round(ours / bulk, 3),
            "untraced_events_per_s": round(untraced),
            "tracing_off_ratio": round(ours / untraced, 3),
            "traced_events_per_s": round(traced),
            "tracing_on_ratio": round(traced / ours, 3),
            **{f"{mode}_runs_events_per_s": [round(r.events_per_s) for r in runs[mode]] for mode in modes},
            "latency_p50_ms": round(latency.p50_ms, 2),
            "latency_p99_ms": round(latency.p99_ms, 2),
            "latency_max_ms": round(latency.max_ms, 2),
            "latency_events_measured": latency.measured,
            "latency_rate_achieved": round(latency.achieved_rate, 1),
            "latency_events_per_transaction": round(latency.events_per_transaction, 2),
            "latency_other_load_cores": round(latency.other_cores, 2),
            "other_load_cores_max": round(max(r.other_cores for mode in modes for r in runs[mode]), 2),
        }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


# --- report ------------------------------------------------------------------------------------------


def targets_of(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pg = figures.get("postgresql")
    if pg is None:
        return {
            "ratio_ge_0_7": None,
            "consumer_ratio_to_partitioned_ge_0_8": None,
            "events_per_s_ge_5000": None,
            "p99_le_50ms": None,
            "tracing_off_within_5_percent": None,
            "all_met": None,
        }
    met = {
        "ratio_ge_0_7": pg["ratio"] >= TARGET_RATIO,
        "consumer_ratio_to_partitioned_ge_0_8": pg["consumer_ratio_to_partitioned"] >= TARGET_RATIO_TO_PARTITIONED,
        "events_per_s_ge_5000": pg["ours_events_per_s"] >= TARGET_EVENTS_PER_S,
        "p99_le_50ms": pg["latency_p99_ms"] <= TARGET_P99_MS,
        "tracing_off_within_5_percent": pg["tracing_off_ratio"] >= TARGET_TRACING_OFF_RATIO,
    }
    return {**met, "all_met": all(met.values())}


def report(args: argparse.Namespace, figures: dict[str, dict[str, Any]], other_cores: list[float]) -> None:
    settings = Settings()
    cores = os.cpu_count()
    print()
    print(
        f"Event backbone: {args.events:,} FoundryUpdated events over {args.keys} keys, {settings.kafka_partitions} partitions, "
        f"one consumer process (and {args.consumers} in one group), {cores} cores; median of {args.repeats} runs"
    )
    print(
        f"Relay batch {settings.outbox_batch_size}, inbox poll batch {settings.inbox_batch_size}; each run in fresh databases and topics"
    )
    print(
        f"Latency: {args.rate:g} events/s staged in small transactions for {args.latency_seconds:g} s, stage → effect committed"
    )
    print()
    group = f"ours x{args.consumers}"
    header = (
        f"{'backend':<11} {'ours ev/s':>10} {'baseline ev/s':>14} {'ratio':>6}   {'per-partition ev/s':>18} {'ratio':>6}   "
        f"{group + ' ev/s':>14} {'x' + str(args.consumers) + '/x1':>6}   {'bulk ev/s':>10} {'ratio':>6}   "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for backend, f in figures.items():
        print(
            f"{backend:<11} {f['ours_events_per_s']:>10,} {f['baseline_events_per_s']:>14,} {f['ratio']:>6.2f}   "
            f"{f['partitioned_events_per_s']:>18,} {f['ratio_to_partitioned']:>6.2f}   "
            f"{f['group_events_per_s']:>14,} {f['group_ratio']:>6.2f}   "
            f"{f['bulk_events_per_s']:>10,} {f['ratio_to_bulk']:>6.2f}   "
            f"{f['latency_p50_ms']:>7.1f} {f['latency_p99_ms']:>7.1f} {f['latency_max_ms']:>7.1f}"
        )
    print()
    for backend, f in figures.items():
        print(
            f"{backend} tracing: off {f['ours_events_per_s']:,} ev/s, hooks not called {f['untraced_events_per_s']:,} ev/s, "
            f"off/not called {f['tracing_off_ratio']:.3f}; on (OTLP) {f['traced_events_per_s']:,} ev/s, on/off {f['tracing_on_ratio']:.3f}"
        )
    print()
    for backend, f in figures.items():
        runs = "; ".join(
            f"{mode} " + " ".join(f"{value:,}" for value in f[f"{mode}_runs_events_per_s"]) for mode in pipelines(args.consumers)
        )
        print(f"{backend} runs (events/s): {runs}")
        print(
            f"{backend} latency run: {f['latency_events_measured']:,} events measured at {f['latency_rate_achieved']:g}/s, "
            f"{f['latency_events_per_transaction']:g} events per transaction"
        )
    other_max = max(other_cores, default=0.0)
    print(
        f"Other processes on the machine took up to {other_max:.2f} of its {cores} cores during a run"
        + (": these figures are lower than on a quiet machine" if other_max >= OTHER_LOAD_WARNING else "")
    )
    print()
    print("baseline:      bare aiokafka, the same INSERT per event as our handler, one transaction per poll batch")
    print("per-partition: bare aiokafka, one task per partition, each a transaction per batch of its partition")
    print("consumer:      our consumer fed by the bare producer, as the bare loops are (no outbox, no relay)")
    print(f"{group}:{' ' * max(1, 14 - len(group))}our consumer as {args.consumers} processes of one consumer group")
    print("bulk:          bare aiokafka, one multi-row INSERT per poll batch (a reference, not a target)")
    print()
    targets = targets_of(figures)
    if targets["all_met"] is None:
        print("Targets apply to PostgreSQL, which was not measured.")
    else:
        pg = figures["postgresql"]
        yes = {True: "met", False: "MISSED"}
        print("Targets (PostgreSQL, one consumer):")
        print(f"  ours >= {TARGET_RATIO} x baseline   {pg['ratio']:.2f}   {yes[targets['ratio_ge_0_7']]}")
        print(
            f"  our consumer >= {TARGET_RATIO_TO_PARTITIONED} x per-partition   {pg['consumer_ratio_to_partitioned']:.2f}   "
            f"{yes[targets['consumer_ratio_to_partitioned_ge_0_8']]}   "
            f"({pg['consumer_events_per_s']:,} against {pg['partitioned_events_per_s']:,} ev/s; with the outbox and relay "
            f"in front, {pg['ratio_to_partitioned']:.2f})"
        )
        print(f"  ours >= {TARGET_EVENTS_PER_S:,} events/s  {pg['ours_events_per_s']:,}   {yes[targets['events_per_s_ge_5000']]}")
        print(f"  p99 <= {TARGET_P99_MS:g} ms             {pg['latency_p99_ms']:.1f}   {yes[targets['p99_le_50ms']]}")
        print(
            f"  tracing off >= {TARGET_TRACING_OFF_RATIO} x not called   {pg['tracing_off_ratio']:.2f}   "
            f"{yes[targets['tracing_off_within_5_percent']]}"
        )
    print()
    summary = {
        "benchmark": "backbone",
        "machine": {
            "cores": cores,
            "python": sys.version.split()[0],
            "other_load_cores_max": round(max(other_cores, default=0.0), 2),
            "quiet": max(other_cores, default=0.0) < OTHER_LOAD_WARNING,
        },
        "events": args.events,
        "keys": args.keys,
        "partitions": settings.kafka_partitions,
        "outbox_batch_size": settings.outbox_batch_size,
        "inbox_batch_size": settings.inbox_batch_size,
        "repeats": args.repeats,
        "consumers": args.consumers,
        "latency_rate_per_s": args.rate,
        "latency_seconds": args.latency_seconds,
        "backends": figures,
        "targets": targets,
    }
    print(json.dumps(summary, separators=(",", ":")))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None, help="events per throughput run (default 20000; 4000 with --quick)")
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="a short run: fewer events, one repeat, 5 s of latency")
    parser.add_argument(
        "--repeats", type=int, default=None, help="throughput runs per pipeline; the median is reported (default 3)"
    )
    parser.add_argument("--keys", type=int, default=200, help="distinct aggregate keys (default 200)")
    parser.add_argument(
        "--consumers",
        type=int,
        default=2,
        help="also run our consumer as this many processes of one consumer group (default 2; 1 skips that pipeline)",
    )
    parser.add_argument("--rate", type=float, default=500.0, help="events per second in the latency run (default 500)")
    parser.add_argument(
        "--profile", type=Path, default=None, help="write a pyinstrument profile of every worker into this folder"
    )
    parser.add_argument("--latency-seconds", type=float, default=None, help="measured seconds of the latency run (default 15)")
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 4000 if args.quick else 20000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.latency_seconds is None:
        args.latency_seconds = 5.0 if args.quick else 15.0
    args.latency_warmup = 1.0 if args.quick else 3.0
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()
    args.backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    if args.events < 1 or args.repeats < 1 or args.rate <= 0 or args.latency_seconds <= 0 or args.keys < 1 or args.consumers < 1:
        parser.error("--events, --repeats, --keys, --consumers, --rate and --latency-seconds must be positive")
    return args


def exit_on_sigterm(_signum: int, _frame: Any) -> None:
    raise SystemExit(143)  # unwinds through the finally blocks, so whatever a benchmark started stops


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        with Bench(args) as bench:
            figures = {backend: bench.measure(backend) for backend in args.backends}
    except (BenchError, BrokerError) as exc:
        log(f"benchmark failed: {exc}")
        return 1
    report(args, figures, bench.other_cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
