"""How fast orders replans a failed lot: from `lot_failed` published to the new `allocation_planned` published; then
capacity drops (plan versions per drop, time to settle, time to accepted again) and reading an order against `/healthz`.

Starts its own Kafka broker and PostgreSQL server in temporary directories (reusing `backbone.py`'s), runs the real
capacity, quality and orders services under uvicorn, one process each, on fresh databases, and seeds a cooperative
through their APIs: members with composite brake-block capacity and certificates, then a few KAI purchase orders,
planned, reserved and accepted. A background process meanwhile keeps the services busy at a steady rate (capacity
changes at members, lots registered and passed for the orders). The samples: a lot registered for one of an order's
allocations fails its laboratory test, one every `--interval` seconds, round-robin over the orders. Each one's
latency is the Kafka timestamp of the order's new `allocation_planned` minus that of the `lot_failed` (both stamped
by the producing service's client when its relay sends them). The baseline, from the same run and the same broker:
bare aiokafka consumers that read the same `lot_failed` records and produce a message at once (transport), or after
committing one row to a database of the same kind (durable). Prints a table and, last, one JSON line; exits non-zero
when a target is missed (p99 on PostgreSQL, a new plan for every failed lot). How to read it: bench/README.md.

    .venv/bin/python bench/reaction.py                     # both databases, 150 samples each (about 3 minutes)
    .venv/bin/python bench/reaction.py --quick             # PostgreSQL only, 30 samples (under a minute)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import multiprocessing
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/reaction.py` puts bench/ on the path, not the repository


import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from backbone import STAFF, BenchError, CpuMeter, LocalPostgres, exit_on_sigterm, issuer_env, log, percentile, start_kafka  # noqa: E402

from ceper.broker import LocalKafka, free_port  # noqa: E402
from ceper.demo.cooperative import Member, composite_cooperative  # noqa: E402
from shared import kafka  # noqa: E402
from shared.db import create_engine  # noqa: E402
from shared.events import topic_of  # noqa: E402
from shared.kafka import BrokerError  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topics import EVENT_TOPIC_CONFIG, ensure_topics, partitions_of, platform_topics  # noqa: E402

BACKENDS = ("sqlite", "postgresql")
SERVICES = ("capacity", "quality", "orders")
FAMILY = "BRAKE_BLOCK_COMPOSITE"
ITEM = "BB-COMP-K"
LOT_FAILED = "ceper.quality.lot_failed.v1"
ALLOCATION_PLANNED = "ceper.orders.allocation_planned.v1"
BASELINE_TOPIC = "bench.reaction.baseline"
VARIANTS = ("transport", "durable")
TARGET_P99_MS = 150.0
TARGET_ACCEPTED_S = 1.0  # an order is accepted again within this of a capacity drop
TARGET_GET_P99_MS = 100.0  # GET of one order at 16 concurrent readers
TARGET_GET_SLOWDOWN = 1.2  # GET after 100 plan versions against after one, p50
OTHER_LOAD_WARNING = 0.25
# How long an order's next failed lot waits for the previous one's new plan (and the last ones at the end).
REACTION_TIMEOUT_S = 20.0
SITES = ("BY-YK", "BY-MRI", "BY-TGL", "BY-SGU", "BY-KAC")
EXCEPTION_REASONS = ("press_breakdown", "power_cut", "material_shortage", "public_holiday", "furnace_breakdown")


def _die_with_parent() -> None:
    # If the benchmark is killed outright, the kernel stops what it started: no services left on the ports.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# --- the cooperative -------------------------------------------------------------------------------------------


def purchase_order(n: int, units: int, today: date) -> dict[str, Any]:
    """A KAI order for composite blocks: three deliveries, two to four months out, to one Balai Yasa."""
    quantities = [units // 3, units // 3, units - 2 * (units // 3)]
    site = SITES[n % len(SITES)]
    deliveries = [
        {"due_date": (today + timedelta(days=63 + 28 * i + n)).isoformat(), "quantity": q, "site_code": site}
        for i, q in enumerate(quantities)
    ]
    return {
        "buyer_code": "KAI",
        "po_number": f"KAI/PO/BENCH/{n + 1:04d}",
        "issued_on": today.isoformat(),
        "lines": [
            {
                "line_no": 1,
                "item_code": ITEM,
                "quantity": units,
                "unit_price": 203700,
                "deliveries": deliveries,
                "requirements": {"certificates": ["SNI", "ISO9001"], "min_tkdn_percent": 25},
            }
        ],
    }


def lab_samples(plan: dict[str, Any], passing: bool) -> list[dict[str, Any]]:
    """A laboratory report's rows: all within the specification, or one more bad sample than the plan accepts."""
    good = {
        "friction_coefficient": 0.25, "density": 2.05, "hardness": 78, "compressive_strength": 41.5,
        "impact_strength": 2.4, "back_plate_bond": "pass",
    }  # fmt: skip
    rows = [dict(good) for _ in range(plan["sample_size"])]
    if not passing:
        for row in rows[: plan["rejection_number"]]:
            row["friction_coefficient"] = 0.15
    return rows


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any], what: str, **kwargs: Any) -> httpx.Response:
    answer = await client.post(url, json=body, **kwargs)
    if answer.status_code not in (200, 201):
        raise BenchError(f"{what} failed: {answer.status_code} {answer.text[:400]}")
    return answer


async def _gather_limited(jobs: list[Callable[[], Awaitable[Any]]], limit: int = 8) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


async def _until(check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def seed_members(urls: dict[str, str], members: list[Member]) -> None:
    """Registers the members at capacity with their weekly composite capacity, then their certificates at quality."""
    today = date.today()
    async with httpx.AsyncClient(auth=STAFF, timeout=60) as client:

        def register(m: Member) -> Callable[[], Awaitable[None]]:
            async def job() -> None:
                body = {
                    "code": m.code,
                    "name": m.name,
                    "village": m.village,
                    "product_families": m.product_families,
                    "presses": m.presses,
                }
                await _post(client, f"{urls['capacity']}/v1/foundries", body, f"registering {m.code}")
                change = {"kind": "standard", "reason": "declared", "product_family": FAMILY, "weekly_units": m.weekly_units}
                await _post(client, f"{urls['capacity']}/v1/foundries/{m.code}/capacity-changes", change, f"capacity of {m.code}")

            return job

        await _gather_limited([register(m) for m in members])
        codes = {m.code for m in members}

        async def quality_knows() -> bool:
            return codes <= {f["code"] for f in (await client.get(f"{urls['quality']}/v1/foundries")).json()}

        await _until(quality_knows, 60, "quality to learn the members from capacity's events")
        validity = {
            "valid_from": (today - timedelta(days=120)).isoformat(),
            "valid_until": (today + timedelta(days=720)).isoformat(),
        }

        def certify(m: Member) -> Callable[[], Awaitable[None]]:
            async def job() -> None:
                certificates: list[dict[str, Any]] = [
                    {"kind": "ISO9001", "number": f"ISO-{m.code}", "issuer": "PT Sucofindo (LSSM)"},
                    {
                        "kind": "TKDN",
                        "number": f"TKDN-{m.code}",
                        "issuer": "Kementerian Perindustrian",
                        "tkdn_percent": m.tkdn_percent,
                    },
                ]
                if m.sni:
                    certificates.append({"kind": "SNI", "number": f"SNI-{m.code}", "issuer": "LSPro B4T", "items": [ITEM]})
                for certificate in certificates:
                    body = {"foundry_code": m.code, **certificate, **validity}
                    await _post(client, f"{urls['quality']}/v1/certificates", body, f"{certificate['kind']} of {m.code}")

            return job

        await _gather_limited([certify(m) for m in members])

        async def orders_knows() -> bool:
            return codes <= {f["code"] for f in (await client.get(f"{urls['orders']}/v1/foundries")).json()}

        await _until(orders_knows, 60, "orders to learn the members")


async def place_orders(urls: dict[str, str], count: int, units: int) -> dict[str, dict[str, Any]]:
    """Posts the purchase orders one after another, each once the previous one is accepted (so the setup does not
    depend on how their reservations race), and returns each order as orders shows it."""
    today = date.today()
    accepted: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(auth=STAFF, timeout=60) as client:
        for n in range(count):
            answer = await _post(
                client, f"{urls['orders']}/v1/purchase-orders", purchase_order(n, units, today), f"purchase order {n + 1}",
                headers={"Idempotency-Key": f"bench-reaction-{n}"},
            )  # fmt: skip
            order_id = answer.json()["id"]
            last: dict[str, Any] = {}

            async def is_accepted(order_id: str = order_id, last: dict[str, Any] = last) -> bool:
                last.update((await client.get(f"{urls['orders']}/v1/purchase-orders/{order_id}")).json())
                if last["status"] not in ("received", "planned", "accepted"):
                    raise BenchError(f"order {order_id} is {last['status']}: {json.dumps(last.get('plan'))[:600]}")
                return last["status"] == "accepted"

            try:
                await _until(is_accepted, 120, f"purchase order {n + 1} to be accepted", interval=0.2)
            except BenchError as exc:
                raise BenchError(f"{exc}; it is {last.get('status')}, plan {json.dumps(last.get('plan'))[:400]}") from None
            accepted[order_id] = dict(last)
    return accepted


async def consumer_lag(settings: Settings, group: str, topics: list[str]) -> int:
    """Records of `topics` the consumer group has not committed yet."""
    bootstrap = settings.kafka_bootstrap_servers
    admin = kafka.admin(bootstrap, "bench-reaction-lag")
    probe = kafka.consumer(settings, group_id=None, client_id="bench-reaction-lag")
    await admin.start()
    await probe.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(await partitions_of(bootstrap, t))]
        ends = await probe.end_offsets(partitions)
        return sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in partitions)
    finally:
        await probe.stop()
        await admin.close()


async def wait_caught_up(settings: Settings, group: str, topics: list[str], timeout: float = 120) -> None:
    async def caught_up() -> bool:
        return await consumer_lag(settings, group, topics) == 0

    await _until(caught_up, timeout, f"consumer group {group} to catch up", interval=0.3)


# --- the services ----------------------------------------------------------------------------------------------


class Platform:
    """Capacity, quality and orders under uvicorn, one process each, on fresh databases and fresh topics."""

    def __init__(self, root: Path, backend: str, kafka_broker: LocalKafka, postgres: LocalPostgres | None) -> None:
        self.root = root / backend
        self.root.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        self.kafka = kafka_broker
        self.postgres = postgres
        self.prefix = f"bench-{backend[:2]}-{uuid.uuid4().hex[:6]}."
        self.settings = Settings(kafka_bootstrap_servers=kafka_broker.bootstrap, kafka_topic_prefix=self.prefix, log_json=False)
        self.ports = {service: free_port() for service in SERVICES}
        self.urls = {service: f"http://127.0.0.1:{port}" for service, port in self.ports.items()}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.database_urls: dict[str, str] = {}

    def topic(self, service_or_name: str) -> str:
        return self.settings.topic(topic_of(service_or_name) if service_or_name in SERVICES else service_or_name)

    def _database(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.root / f'{name}.db'}"
        assert self.postgres is not None
        database = f"{self.prefix.rstrip('.').replace('-', '_')}_{name}"
        asyncio.run(self.postgres.admin(f'CREATE DATABASE "{database}"'))
        return self.postgres.url(database)

    def __enter__(self) -> Platform:
        try:
            for name in (*SERVICES, "baseline"):
                self.database_urls[name] = self._database(name)
            topics = {**platform_topics(self.settings), self.topic(BASELINE_TOPIC): EVENT_TOPIC_CONFIG}
            asyncio.run(ensure_topics(self.kafka.bootstrap, topics, partitions=self.settings.kafka_partitions))
            env = {
                **os.environ,
                "CEPER_ENV": "dev",
                "CEPER_VAR_DIR": str(self.root / "var"),
                "CEPER_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
                "CEPER_KAFKA_TOPIC_PREFIX": self.prefix,
                "CEPER_LOG_LEVEL": "WARNING",
                **{f"CEPER_{s.upper()}_DATABASE_URL": self.database_urls[s] for s in SERVICES},
                **issuer_env(),
            }
            for service in SERVICES:
                command = [sys.executable, "-m", "uvicorn", "--factory", f"services.{service}.app:create_app", "--host", "127.0.0.1",
                           "--port", str(self.ports[service]), "--log-level", "warning", "--no-access-log"]  # fmt: skip
                with (self.root / f"{service}.log").open("wb") as out:
                    self.processes[service] = subprocess.Popen(
                        command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True, preexec_fn=_die_with_parent,
                    )  # fmt: skip
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        with httpx.Client(auth=STAFF, timeout=3) as client:
            while pending:
                for service in sorted(pending):
                    if self.processes[service].poll() is not None:
                        raise BenchError(
                            f"{service} exited with code {self.processes[service].returncode}:\n{self.log_tail(service)}"
                        )
                    try:
                        if client.get(f"{self.urls[service]}/readyz").status_code == 200:
                            pending.discard(service)
                    except httpx.HTTPError:
                        pass
                if time.monotonic() > deadline:
                    raise BenchError(f"not ready after {timeout:g} s: {', '.join(sorted(pending))}")
                time.sleep(0.2)

    def log_tail(self, service: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / f"{service}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        for service, process in self.processes.items():
            if process.poll() is not None:
                raise BenchError(f"{service} exited with code {process.returncode} during the run:\n{self.log_tail(service)}")

    def pids(self) -> dict[str, int]:
        return {service: p.pid for service, p in self.processes.items() if p.poll() is None}

    def __exit__(self, *_exc: object) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: consumer, relay and pools stop
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = {}


# --- watching the topics ---------------------------------------------------------------------------------------


@dataclass
class PlanSeen:
    timestamp_ms: int  # the record's Kafka timestamp: when orders' relay sent it
    staged: float  # the CloudEvent's time: when orders staged it in the planning transaction
    planned: float  # the event's planned_at: taken at the end of the planner's work, before the commit
    units: int  # planned units in the whole plan
    allocations: list[dict[str, Any]]


class Observer:
    """Reads every topic from its end without a consumer group and keeps what the samples need."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.kinds = {platform.topic(s): s for s in SERVICES} | {platform.topic(BASELINE_TOPIC): "baseline"}
        self.lot_failed: dict[str, int] = {}
        self.plans: dict[tuple[str, int], PlanSeen] = {}
        self.latest: dict[str, int] = {}  # order id → highest plan version seen
        self.baseline: dict[tuple[str, str], int] = {}  # (variant, lot code) → timestamp
        self.records: list[tuple[int, str, str]] = []  # (timestamp, topic kind, event type) of every record
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    def know(self, order_id: str, order: dict[str, Any]) -> None:
        plan = order["plan"]
        self.latest[order_id] = plan["version"]
        self.plans[(order_id, plan["version"])] = PlanSeen(
            0, 0.0, 0.0, sum(a["quantity"] for a in plan["allocations"]), plan["allocations"]
        )

    async def start(self) -> None:
        bootstrap = self.platform.kafka.bootstrap
        self._consumer = kafka.consumer(
            self.platform.settings, group_id=None, client_id="bench-reaction-observer", fetch_max_wait_ms=50
        )
        await self._consumer.start()
        partitions = [TopicPartition(t, p) for t in self.kinds for p in sorted(await partitions_of(bootstrap, t))]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)  # resolves the end now, before any sample is made
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            for tp, records in batches.items():
                kind = self.kinds[tp.topic]
                for record in records:
                    headers = dict(record.headers)
                    type_name = headers.get("ce_type", b"").decode()
                    self.records.append((record.timestamp, kind, type_name or kind))
                    if type_name == LOT_FAILED:
                        self.lot_failed[json.loads(record.value)["lot_code"]] = record.timestamp
                    elif type_name == ALLOCATION_PLANNED:
                        data = json.loads(record.value)
                        order_id, version = data["order_id"], data["plan_version"]
                        self.plans[(order_id, version)] = PlanSeen(
                            record.timestamp,
                            datetime.fromisoformat(headers["ce_time"].decode()).timestamp(),
                            datetime.fromisoformat(data["planned_at"]).timestamp(),
                            sum(a["quantity"] for a in data["allocations"]),
                            data["allocations"],
                        )
                        self.latest[order_id] = max(version, self.latest.get(order_id, 0))
                    elif kind == "baseline":
                        data = json.loads(record.value)
                        self.baseline[(data["variant"], data["lot_code"])] = record.timestamp
            if batches:
                self.changed.set()

    def check(self) -> None:
        if self._task is not None and self._task.done():
            error = self._task.exception() if not self._task.cancelled() else None
            raise BenchError(f"the observer stopped reading the topics: {error!r}")

    async def wait_for_version(self, order_id: str, above: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.latest.get(order_id, 0) <= above:
            self.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))
        return True


# --- the baseline and the background load: worker processes ------------------------------------------------------


@dataclass(frozen=True)
class BaselineJob:
    bootstrap: str
    prefix: str
    database_url: str


async def baseline_role(job: BaselineJob, ready: Any, stop: Any) -> dict[str, Any]:
    """Bare aiokafka consumers of quality's topic: each `lot_failed` makes one message on the baseline topic at once
    (transport), or after committing one row to a database of the same kind (durable); offsets committed after."""
    settings = Settings(kafka_bootstrap_servers=job.bootstrap, kafka_topic_prefix=job.prefix, log_json=False)
    source, target = settings.topic(topic_of("quality")), settings.topic(BASELINE_TOPIC)
    metadata = sa.MetaData()
    reactions = sa.Table(
        "reactions", metadata, sa.Column("lot_code", sa.String(64), primary_key=True), sa.Column("at", sa.Float, nullable=False)
    )
    engine = create_engine(job.database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    insert = sa.insert(reactions)
    producer = kafka.producer(settings, client_id="bench-baseline")
    await producer.start()
    handled = Counter[str]()

    async def react(variant: str, consumer: AIOKafkaConsumer) -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.inbox_batch_size)
            if not batches:
                continue
            failed = [r for records in batches.values() for r in records if dict(r.headers).get("ce_type") == LOT_FAILED.encode()]
            if failed and variant == "durable":
                async with engine.begin() as conn:
                    await conn.execute(insert, [{"lot_code": json.loads(r.value)["lot_code"], "at": time.time()} for r in failed])
            futures = []
            for record in failed:
                lot_code = json.loads(record.value)["lot_code"]
                value = json.dumps({"variant": variant, "lot_code": lot_code}).encode()
                futures.append(await producer.send(target, value=value, key=record.key))
            await asyncio.gather(*futures)
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
            handled[variant] += len(failed)

    consumers = {
        variant: kafka.consumer(
            settings, source, group_id=settings.consumer_group(f"bench-baseline-{variant}"), client_id=f"bench-baseline-{variant}"
        )
        for variant in VARIANTS
    }
    for consumer in consumers.values():
        await consumer.start()
    deadline = time.monotonic() + 60
    while not all(c.assignment() for c in consumers.values()):
        if time.monotonic() > deadline:
            raise TimeoutError("the baseline consumers got no partitions")
        await asyncio.sleep(0.05)
    # Start at the end: the seeding's events are not the baseline's business.
    for consumer in consumers.values():
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
    ready.set()
    await asyncio.gather(*(react(variant, consumer) for variant, consumer in consumers.items()))
    for consumer in consumers.values():
        await consumer.stop()
    await producer.stop()
    await engine.dispose()
    return {"handled": dict(handled)}


@dataclass(frozen=True)
class LoadJob:
    urls: dict[str, str]
    members: list[tuple[str, int]]  # code, standard weekly units
    allocations: list[tuple[str, str, str]]  # order id, allocation id, foundry code
    capacity_rate: float  # capacity changes a second
    lot_rate: float  # lots registered and passed a second
    lot_units: int
    seed: int
    # A token signed in this process: the load runs in a process of its own, whose `STAFF` would have a key of its
    # own that the services do not trust.
    headers: dict[str, str]


async def load_role(job: LoadJob, ready: Any, stop: Any) -> dict[str, Any]:
    """Steady background work, scheduled at fixed rates whatever the answers' latency (up to 16 requests in flight):
    members report capacity exceptions in weeks far ahead (a closure, a breakdown) and withdraw them again; lots are
    registered for the orders' allocations and pass their test."""
    rng = random.Random(job.seed)
    today = date.today()
    far = today + timedelta(weeks=36)  # after every order's last production week: nothing reserved there to revoke
    done = Counter[str]()
    errors: list[str] = []
    in_flight = asyncio.Semaphore(16)
    open_exceptions: dict[str, str] = {}  # member → change id of its exception in force
    member_cursor = 0
    lot_cursor = 0

    async def capacity_change(client: httpx.AsyncClient) -> None:
        nonlocal member_cursor
        code, weekly = job.members[member_cursor % len(job.members)]
        member_cursor += 1
        if code in open_exceptions:
            body: dict[str, Any] = {
                "kind": "withdrawal",
                "reason": "repaired",
                "product_family": FAMILY,
                "withdraws": open_exceptions.pop(code),
            }
        else:
            start = far + timedelta(days=rng.randint(0, 60))
            body = {
                "kind": "exception", "reason": rng.choice(EXCEPTION_REASONS), "product_family": FAMILY,
                "weekly_units": weekly // 2, "from_date": start.isoformat(), "to_date": (start + timedelta(days=rng.randint(1, 6))).isoformat(),
            }  # fmt: skip
        answer = await client.post(f"{job.urls['capacity']}/v1/foundries/{code}/capacity-changes", json=body)
        if answer.status_code == 201:
            if body["kind"] == "exception":
                open_exceptions[code] = answer.json()["change_id"]
            done["capacity_changes"] += 1
        else:
            errors.append(f"capacity change {answer.status_code}: {answer.text[:200]}")

    # Member after member, each time for the next of its allocations: every member keeps a steady record of passed
    # lots, so the failed lots of the samples never add up to a suspension.
    by_member: dict[str, list[tuple[str, str]]] = {}
    for order_id, allocation_id, foundry in job.allocations:
        by_member.setdefault(foundry, []).append((order_id, allocation_id))
    members = sorted(by_member)

    async def passing_lot(client: httpx.AsyncClient) -> None:
        nonlocal lot_cursor
        foundry = members[lot_cursor % len(members)]
        order_id, allocation_id = by_member[foundry][(lot_cursor // len(members)) % len(by_member[foundry])]
        lot_code = f"{foundry}-K-BG{lot_cursor:05d}"
        lot_cursor += 1
        body = {
            "lot_code": lot_code,
            "foundry_code": foundry,
            "item_code": ITEM,
            "quantity": job.lot_units,
            "order_id": order_id,
            "allocation_id": allocation_id,
        }
        lot = await client.post(f"{job.urls['quality']}/v1/lots", json=body)
        if lot.status_code != 201:
            errors.append(f"lot {lot.status_code}: {lot.text[:200]}")
            return
        report = {
            "report_number": f"LHU/BG/{lot_code}",
            "laboratory": "Lab QA Koperasi Batur Jaya",
            "samples": lab_samples(lot.json()["sampling_plan"], True),
        }
        result = await client.post(f"{job.urls['quality']}/v1/lots/{lot_code}/results", json=report)
        if result.status_code == 201:
            done["lots_passed"] += 1
        else:
            errors.append(f"lot result {result.status_code}: {result.text[:200]}")

    async def guarded(work: Callable[[httpx.AsyncClient], Awaitable[None]], client: httpx.AsyncClient) -> None:
        try:
            await work(client)
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            in_flight.release()

    async def steady(
        rate: float, work: Callable[[httpx.AsyncClient], Awaitable[None]], client: httpx.AsyncClient, name: str
    ) -> None:
        if rate <= 0:
            return
        started = time.monotonic()
        n = 0
        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            due = started + n / rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(min(due - now, 0.1))
                continue
            n += 1
            if in_flight.locked():
                done[f"{name}_skipped"] += 1  # the services fell behind: the rate is kept, not made up later
                continue
            await in_flight.acquire()
            task = asyncio.create_task(guarded(work, client))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)

    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(headers=job.headers, timeout=30, limits=limits) as client:
        ready.set()
        started = time.monotonic()
        await asyncio.gather(
            steady(job.capacity_rate, capacity_change, client, "capacity_changes"),
            steady(job.lot_rate, passing_lot, client, "lots"),
        )
        elapsed = time.monotonic() - started
    return {"done": dict(done), "seconds": elapsed, "errors": len(errors), "first_errors": errors[:5]}


ROLES: dict[str, Callable[[Any, Any, Any], Awaitable[dict[str, Any]]]] = {"baseline": baseline_role, "load": load_role}


def _worker(role: str, job: Any, ready: Any, stop: Any, results: Any) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through `stop`, also on Ctrl-C
    try:
        result = asyncio.run(ROLES[role](job, ready, stop))
    except BaseException as exc:
        results.put({"role": role, "error": f"{type(exc).__name__}: {exc}"})
        raise
    results.put({"role": role, **result})


class Workers:
    """The baseline and background-load processes: started, made ready, stopped, their results collected."""

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.results = self.ctx.Queue()
        self.stop_flag = self.ctx.Event()
        self.processes: dict[str, Any] = {}
        self.collected: dict[str, dict[str, Any]] = {}

    def start(self, role: str, job: Any, timeout: float = 90) -> None:
        ready = self.ctx.Event()
        process = self.ctx.Process(target=_worker, args=(role, job, ready, self.stop_flag, self.results), daemon=True)
        process.start()
        self.processes[role] = process
        deadline = time.monotonic() + timeout
        while not ready.is_set():
            self._drain()
            if not process.is_alive() or time.monotonic() > deadline:
                raise BenchError(f"the {role} worker did not start: {self.collected.get(role, {}).get('error', 'it exited')}")
            time.sleep(0.05)

    def _drain(self) -> None:
        while True:
            try:
                result = self.results.get_nowait()
            except queue.Empty:
                return
            self.collected[result["role"]] = result

    def check_alive(self) -> None:
        self._drain()
        for role, process in self.processes.items():
            if "error" in self.collected.get(role, {}) or (not process.is_alive() and role not in self.collected):
                raise BenchError(f"the {role} worker failed: {self.collected.get(role, {}).get('error', 'it exited')}")

    def stop(self, timeout: float = 30) -> dict[str, dict[str, Any]]:
        self.stop_flag.set()
        deadline = time.monotonic() + timeout
        while any(role not in self.collected for role in self.processes) and time.monotonic() < deadline:
            try:
                result = self.results.get(timeout=0.1)
                self.collected[result["role"]] = result
            except queue.Empty:
                if not any(p.is_alive() for role, p in self.processes.items() if role not in self.collected):
                    break
        self.close()
        for role, result in self.collected.items():
            if "error" in result:
                raise BenchError(f"the {role} worker failed: {result['error']}")
        return self.collected

    def close(self) -> None:
        self.stop_flag.set()
        for process in self.processes.values():
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)
        self.processes = {}


# --- CPU of each part ------------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_table() -> dict[int, tuple[int, float]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry)] = (int(fields[1]), sum(int(v) for v in fields[11:15]) / _TICK)
    return table


def cpu_seconds(roots: dict[str, int], alone: frozenset[str] = frozenset()) -> dict[str, float]:
    """CPU seconds so far of each named process with its descendants (without them for the names in `alone`)."""
    table = _cpu_table()
    out = {}
    for name, root in roots.items():
        family = {root}
        grew = name not in alone
        while grew:
            before = len(family)
            family |= {pid for pid, (parent, _) in table.items() if parent in family}
            grew = len(family) > before
        out[name] = sum(table[pid][1] for pid in family if pid in table)
    return out


# The benchmark's own process, without the services, broker and workers it started.
ALONE = frozenset({"benchmark"})


# --- one backend -----------------------------------------------------------------------------------------------


@dataclass
class Sample:
    lot_code: str
    order_id: str
    version_before: int  # the order's plan version in force when the lot failed
    warmup: bool = False


@dataclass
class Driver:
    """Fails lots one after another, round-robin over the orders, each on the member with the fewest failures."""

    urls: dict[str, str]
    observer: Observer
    initial: dict[str, list[dict[str, Any]]]  # order id → allocations of its accepted plan
    lot_units: int
    samples: list[Sample] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)  # failed lots per member so far
    unresolved: int = 0
    _registered: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # lot code → (order, sampling plan)

    @property
    def orders(self) -> list[str]:
        return list(self.initial)

    def _pick(self, order_id: str) -> dict[str, Any]:
        # Allocations of the plan accepted before the samples: every later plan keeps them, and their members are the
        # ones the background load passes lots for.
        allocations = self.initial[order_id]
        return min(allocations, key=lambda a: (self.failures[a["foundry_code"]], a["week"], a["allocation_id"]))

    async def register(self, client: httpx.AsyncClient, n: int) -> str:
        order_id = self.orders[n % len(self.orders)]
        allocation = self._pick(order_id)
        self.failures[allocation["foundry_code"]] += 1
        lot_code = f"{allocation['foundry_code']}-K-F{n:05d}"
        body = {"lot_code": lot_code, "foundry_code": allocation["foundry_code"], "item_code": ITEM, "quantity": self.lot_units,
                "order_id": order_id, "allocation_id": allocation["allocation_id"]}  # fmt: skip
        answer = await _post(client, f"{self.urls['quality']}/v1/lots", body, f"registering lot {lot_code}")
        self._registered[lot_code] = (order_id, answer.json()["sampling_plan"])
        return lot_code

    async def fail(self, client: httpx.AsyncClient, lot_code: str, warmup: bool) -> None:
        order_id, plan = self._registered.pop(lot_code)
        # One sample at a time per order: the previous failure of this order must have its new plan first.
        previous = next((s for s in reversed(self.samples) if s.order_id == order_id), None)
        if previous is not None and not await self.observer.wait_for_version(
            order_id, previous.version_before, REACTION_TIMEOUT_S
        ):
            self.unresolved += 1
        sample = Sample(lot_code, order_id, self.observer.latest[order_id], warmup=warmup)
        report = {"report_number": f"LHU/{lot_code}", "laboratory": "B4T Bandung", "samples": lab_samples(plan, False)}
        answer = await _post(client, f"{self.urls['quality']}/v1/lots/{lot_code}/results", report, f"failing lot {lot_code}")
        if answer.json()["status"] != "failed":
            raise BenchError(f"lot {lot_code} was meant to fail but {answer.json()['status']}")
        self.samples.append(sample)

    async def run(self, warmup: int, count: int, interval: float, check: Callable[[], None]) -> None:
        async with httpx.AsyncClient(auth=STAFF, timeout=30) as client:
            upcoming = await self.register(client, 0)
            started = time.monotonic()
            for n in range(warmup + count):
                await asyncio.sleep(max(0.0, started + n * interval - time.monotonic()))
                check()
                await self.fail(client, upcoming, warmup=n < warmup)
                if n + 1 < warmup + count:
                    # The next lot is registered half an interval later, apart from this failure's reaction.
                    await asyncio.sleep(max(0.0, started + (n + 0.5) * interval - time.monotonic()))
                    upcoming = await self.register(client, n + 1)
            for order_id in self.orders:
                last = next((s for s in reversed(self.samples) if s.order_id == order_id), None)
                if last is not None and not await self.observer.wait_for_version(
                    order_id, last.version_before, REACTION_TIMEOUT_S
                ):
                    self.unresolved += 1


async def plans_table(database_url: str) -> list[Any]:
    from services.orders import store

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list(
                await conn.execute(
                    sa.select(
                        store.plans.c.order_id,
                        store.plans.c.version,
                        store.plans.c.reason,
                        store.plans.c.solver,
                        store.plans.c.shortfall,
                    )
                )
            )
    finally:
        await engine.dispose()


# --- capacity drops and reading an order ----------------------------------------------------------------------


async def capacity_drops(platform: Platform, orders: dict[str, dict[str, Any]], drops: int) -> list[dict[str, Any]]:
    """One after another, the busiest member of an order (round robin) loses its busiest week and the three after it:
    per drop, the plan versions each touched order gets, the time until no new version appears (settled) and until
    every touched order is accepted again, from the capacity change's answer, polling every 50 ms."""
    from shared.weeks import add_weeks, week_end, week_start

    url = platform.urls["orders"]
    out: list[dict[str, Any]] = []
    async with httpx.AsyncClient(auth=STAFF, timeout=30) as client:

        async def versions() -> dict[str, tuple[int, str]]:
            seen = {}
            for order_id in orders:
                order = (await client.get(f"{url}/v1/purchase-orders/{order_id}")).json()
                seen[order_id] = ((order.get("plan") or {}).get("version", 0), order["status"])
            return seen

        for k in range(drops):
            order_id = list(orders)[k % len(orders)]
            plan = (await client.get(f"{url}/v1/purchase-orders/{order_id}")).json()["plan"]
            units: dict[str, dict[str, int]] = {}
            for a in plan["allocations"]:
                weeks = units.setdefault(a["foundry_code"], {})
                weeks[a["week"]] = weeks.get(a["week"], 0) + a["quantity"]
            member = max(sorted(units), key=lambda code: sum(units[code].values()))
            first = max(sorted(units[member]), key=lambda week: units[member][week])
            last = add_weeks(first, 3)
            before = await versions()
            body = {"kind": "exception", "reason": "press_breakdown", "product_family": FAMILY, "weekly_units": 0,
                    "from_date": week_start(first).isoformat(), "to_date": week_end(last).isoformat()}  # fmt: skip
            answer = await _post(
                client, f"{platform.urls['capacity']}/v1/foundries/{member}/capacity-changes", body, "a capacity drop"
            )
            changed = time.perf_counter()
            seen, last_change, accepted_at = before, changed, None
            while time.perf_counter() - last_change < 2.0 and time.perf_counter() - changed < 60:
                await asyncio.sleep(0.05)
                now = await versions()
                at = time.perf_counter()
                if {o: v for o, (v, _) in now.items()} != {o: v for o, (v, _) in seen.items()}:
                    last_change, accepted_at = at, None
                seen = now
                touched = [o for o in orders if now[o][0] > before[o][0]]
                if touched and accepted_at is None and all(now[o][1] == "accepted" for o in touched):
                    accepted_at = at
            added = {o: seen[o][0] - before[o][0] for o in orders if seen[o][0] > before[o][0]}
            out.append(
                {
                    "member": member,
                    "weeks": [first, last],
                    "reservations_revoked": len(answer.json()["revoked"]),
                    "orders_touched": len(added),
                    "max_versions_per_order": max(added.values(), default=0),
                    "settle_s": round(last_change - changed, 3) if added else 0.0,
                    "accepted_s": None if accepted_at is None else round(accepted_at - changed, 3),
                }
            )
            log(f"[{platform.backend}] drop {k + 1}: {member} {first}…{last}: {out[-1]}")
    return out


@dataclass
class Reads:
    """Latencies of one kind of read, pooled over the rounds it was measured in."""

    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    failures: int = 0
    requests: int = 0
    # wrk's figures of each round (it reports percentiles, not every latency): p50 is their median, p99 and max the
    # highest of the rounds.
    rounds: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        if self.rounds:
            rate = round(self.requests / self.seconds, 1) if self.seconds else None
            figures = {
                "p50_ms": round(statistics.median(r["p50_ms"] for r in self.rounds), 1),
                "p99_ms": round(max(r["p99_ms"] for r in self.rounds), 1),
                "max_ms": round(max(r["max_ms"] for r in self.rounds), 1),
            }
            return {**figures, "requests_per_s": rate, "failures": self.failures, "client": "wrk"}
        rate = round(len(self.latencies_ms) / self.seconds, 1) if self.seconds else None
        return {**summary_ms(self.latencies_ms), "requests_per_s": rate, "failures": self.failures, "client": "httpx"}


# wrk's report, read by this script: percentiles in microseconds, then the counts.
WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("ceper p50 %d p99 %d max %d requests %d errors %d non2xx %d\\n",
    latency:percentile(50), latency:percentile(99), latency.max, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


async def wrk_load(url: str, readers: int, seconds: float, headers: dict[str, str], into: Reads) -> None:
    """`readers` connections of wrk (C, two threads) on GET `url` for `seconds`: a client whose own cost does not
    decide the latencies, as 16 readers in one Python process do (that process alone took a core)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_REPORT)
    try:
        header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
        process = await asyncio.create_subprocess_exec(
            "wrk", "-t", "2", "-c", str(readers), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", script.name, *header_args, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await process.communicate()
    finally:
        os.unlink(script.name)
    text = output.decode(errors="replace")
    found = next((line.split() for line in text.splitlines() if line.startswith("ceper p50")), None)
    if found is None:
        raise BenchError(f"wrk gave no report for {url}:\n{text}")
    figures = dict(zip(found[1::2], (int(v) for v in found[2::2]), strict=True))
    into.rounds.append({"p50_ms": figures["p50"] / 1000, "p99_ms": figures["p99"] / 1000, "max_ms": figures["max"] / 1000})
    into.requests += figures["requests"]
    into.failures += figures["errors"] + figures["non2xx"]
    into.seconds += max(1, round(seconds))


async def read_load(client: httpx.AsyncClient, url: str, readers: int, seconds: float, into: Reads) -> None:
    """`readers` concurrent loops of GET `url` for `seconds`, added to `into`."""
    deadline = time.perf_counter() + seconds

    async def reader() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.get(url)
            into.latencies_ms.append((time.perf_counter() - started) * 1000)
            into.failures += response.status_code != 200

    begun = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(readers)))
    into.seconds += time.perf_counter() - begun


async def add_plan_versions(database_url: str, order_id: str, count: int) -> int:
    """History as replans leave it: `count` more versions of the order's plan, each a full copy of the one in force.
    Written to orders' database directly, so the read is measured after 100 versions without 100 replans."""
    from services.orders import store

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            plan = (
                await conn.execute(
                    sa.select(store.plans)
                    .where(store.plans.c.order_id == order_id)
                    .order_by(store.plans.c.version.desc())
                    .limit(1)
                )
            ).one()
            rows = (
                (
                    await conn.execute(
                        sa.select(store.allocations).where(
                            store.allocations.c.order_id == order_id, store.allocations.c.plan_version == plan.version
                        )
                    )
                )
                .mappings()
                .all()
            )
            for version in range(plan.version + 1, plan.version + count + 1):
                await conn.execute(
                    sa.insert(store.plans).values(**{**plan._mapping, "version": version, "reason": "bench: history"})
                )
                await conn.execute(sa.insert(store.allocations), [{**row, "plan_version": version} for row in rows])
            return int(plan.version) + count
    finally:
        await engine.dispose()


async def order_reads(args: argparse.Namespace, platform: Platform) -> dict[str, Any]:
    """GET of one order at `--readers` concurrent readers beside `/healthz` in the same run: two fresh orders, one
    left at its first plan version and one given 99 more, read in turns (three rounds each) so that whatever else
    the machine does weighs on both alike."""
    url = platform.urls["orders"]
    async with httpx.AsyncClient(auth=STAFF, timeout=60, limits=httpx.Limits(max_connections=args.readers)) as client:
        ids = []
        for n in (1, 2):
            body = purchase_order(args.orders + n, args.order_units, date.today())
            answer = await _post(
                client, f"{url}/v1/purchase-orders", body, "an order to read", headers={"Idempotency-Key": f"bench-reads-{n}"}
            )
            order_id = answer.json()["id"]

            async def accepted(order_id: str = order_id) -> bool:
                return (await client.get(f"{url}/v1/purchase-orders/{order_id}")).json()["status"] == "accepted"

            await _until(accepted, 120, "an order to read to be accepted")
            ids.append(order_id)
        versions = await add_plan_versions(platform.database_urls["orders"], ids[1], 99)
        log(f"[{platform.backend}] reading orders and /healthz, {args.readers} readers, {args.read_seconds:g} s each …")
        one, many, health = Reads(), Reads(), Reads()
        use_wrk = shutil.which("wrk") is not None
        if not use_wrk:
            log(f"[{platform.backend}] wrk not found (apt-get install wrk): reading with httpx, whose own cost weighs in")
        headers = STAFF.headers()  # a token lasting the whole run
        for _ in range(3):
            for target, into in (
                (f"v1/purchase-orders/{ids[0]}", one),
                ("healthz", health),
                (f"v1/purchase-orders/{ids[1]}", many),
            ):
                if use_wrk:
                    await wrk_load(f"{url}/{target}", args.readers, args.read_seconds / 3, headers, into)
                else:
                    await read_load(client, f"{url}/{target}", args.readers, args.read_seconds / 3, into)
    first, after = one.summary(), many.summary()
    return {
        "readers": args.readers,
        "versions": versions,
        "get_one_version": first,
        "get_after_versions": after,
        "healthz": health.summary(),
        "slowdown_p50": round(after["p50_ms"] / first["p50_ms"], 3) if first["p50_ms"] else None,
        "slowdown_p99": round(after["p99_ms"] / first["p99_ms"], 3) if first["p99_ms"] else None,
    }


def summary_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 0.50), 1),
        "p99_ms": round(percentile(ordered, 0.99), 1),
        "max_ms": round(ordered[-1], 1),
    }


def measure(
    args: argparse.Namespace, root: Path, kafka_broker: LocalKafka, postgres: LocalPostgres | None, backend: str, meter: CpuMeter
) -> dict[str, Any]:
    members = composite_cooperative(args.members, args.seed, random.Random(args.seed))
    with Platform(root, backend, kafka_broker, postgres) as platform:
        try:
            return _measure(args, platform, kafka_broker, members, backend, meter)
        except BenchError as exc:
            tails = "\n".join(f"--- {s} log, last lines:\n{platform.log_tail(s)}" for s in SERVICES)
            raise BenchError(f"{exc}\n{tails}") from None


def _measure(
    args: argparse.Namespace, platform: Platform, kafka_broker: LocalKafka, members: list[Member], backend: str, meter: CpuMeter
) -> dict[str, Any]:
    started = time.perf_counter()
    log(
        f"[{backend}] seeding {len(members)} members with capacity and certificates, then {args.orders} orders of {args.order_units:,} units …"
    )
    asyncio.run(seed_members(platform.urls, members))
    orders = asyncio.run(place_orders(platform.urls, args.orders, args.order_units))
    consumed_topics = [platform.topic(s) for s in SERVICES]
    asyncio.run(wait_caught_up(platform.settings, platform.settings.consumer_group("orders"), consumed_topics))
    allocations = [
        (o, a["allocation_id"], a["foundry_code"]) for o, order in orders.items() for a in order["plan"]["allocations"]
    ]
    log(
        f"[{backend}] seeded in {time.perf_counter() - started:.0f} s: {len(allocations)} allocations accepted; "
        f"background {args.capacity_rate:g} capacity changes/s and {args.lot_rate:g} lots/s"
    )
    workers = Workers()
    try:
        workers.start("baseline", BaselineJob(kafka_broker.bootstrap, platform.prefix, platform.database_urls["baseline"]))
        other = meter.wait_for_quiet(OTHER_LOAD_WARNING, args.quiet_patience)
        if other >= OTHER_LOAD_WARNING:
            log(f"[{backend}] the machine stays busy ({other:.2f} cores of other work): measuring anyway")
        workers.start(
            "load",
            LoadJob(
                platform.urls,
                [(m.code, m.weekly_units) for m in members],
                allocations,
                args.capacity_rate,
                args.lot_rate,
                args.background_lot_units,
                args.seed,
                STAFF.headers(),
            ),
        )
        result = asyncio.run(_sample(args, platform, workers, orders, meter))
        loads = workers.stop()
    finally:
        workers.close()
    platform.check_alive()
    result["plans"] = asyncio.run(plans_table(platform.database_urls["orders"]))
    figures = analyse(args, backend, result, loads)
    if args.drops:
        log(f"[{backend}] {args.drops} capacity drops, one at a time …")
        figures["capacity_drops"] = asyncio.run(capacity_drops(platform, orders, args.drops))
    if args.read_seconds > 0:
        figures["order_reads"] = asyncio.run(order_reads(args, platform))
    platform.check_alive()
    return figures


async def _sample(
    args: argparse.Namespace, platform: Platform, workers: Workers, orders: dict[str, dict[str, Any]], meter: CpuMeter
) -> dict[str, Any]:
    observer = Observer(platform)
    for order_id, order in orders.items():
        observer.know(order_id, order)
    await observer.start()
    try:
        await asyncio.sleep(args.settle)  # the background load reaches its pace first
        roots = {**platform.pids(), "kafka": platform.kafka.pid or 0, "postgresql": (platform.postgres.pid if platform.postgres else None) or 0,
                 **{role: p.pid for role, p in workers.processes.items()}, "benchmark": os.getpid()}  # fmt: skip
        roots = {name: pid for name, pid in roots.items() if pid}
        cpu_before = cpu_seconds(roots, ALONE)
        meter.start()
        window_start = time.time()
        driver = Driver(platform.urls, observer, {o: order["plan"]["allocations"] for o, order in orders.items()}, args.lot_units)

        def check() -> None:
            platform.check_alive()
            workers.check_alive()
            observer.check()

        log(
            f"[{platform.backend}] {args.warmup_samples} warm-up and {args.samples} measured failed lots, one every {args.interval:g} s …"
        )
        await driver.run(args.warmup_samples, args.samples, args.interval, check)
        await asyncio.sleep(1.0)  # the baseline's last messages
        window_end = time.time()
        other = meter.other_cores()
        cpu_after = cpu_seconds(roots, ALONE)
        accepted = await accepted_orders(platform.urls["orders"], list(orders))
    finally:
        await observer.stop()
    seconds = window_end - window_start
    cpu = {name: round((cpu_after[name] - cpu_before[name]) / seconds, 2) for name in cpu_before if name in cpu_after}
    return {
        "observer": observer,
        "driver": driver,
        "window": (window_start, window_end),
        "other_cores": other,
        "cpu_cores": cpu,
        "accepted": accepted,
    }


async def accepted_orders(orders_url: str, ids: list[str], timeout: float = 15) -> int:
    """How many of the orders are accepted again (every allocation of the plan in force reserved), waiting a while."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(auth=STAFF, timeout=30) as client:
        while True:
            statuses = [(await client.get(f"{orders_url}/v1/purchase-orders/{order_id}")).json()["status"] for order_id in ids]
            accepted = statuses.count("accepted")
            if accepted == len(ids) or time.monotonic() > deadline:
                return accepted
            await asyncio.sleep(0.5)


def analyse(args: argparse.Namespace, backend: str, result: dict[str, Any], loads: dict[str, dict[str, Any]]) -> dict[str, Any]:
    observer: Observer = result["observer"]
    driver: Driver = result["driver"]
    by_lot: dict[str, tuple[str, int]] = {}
    other_replans = Counter[str]()
    solvers = Counter[str]()
    window_start, window_end = result["window"]
    sample_orders = {s.order_id for s in driver.samples}
    first_version = {}
    for s in driver.samples:
        first_version.setdefault(s.order_id, s.version_before)
    short = 0
    for order_id, version, reason, solver, shortfall in result["plans"]:
        if reason.startswith("lot ") and " failed testing" in reason:
            by_lot[reason.split()[1]] = (order_id, version)
            solvers[solver] += 1
            short += bool(shortfall)
        elif order_id in sample_orders and version > first_version.get(order_id, version):
            other_replans[reason.split(":")[0]] += 1
    ours, transport, durable, to_planned, to_published = [], [], [], [], []
    missing, uncovered = [], 0
    measured = [s for s in driver.samples if not s.warmup]
    for s in measured:
        failed = observer.lot_failed.get(s.lot_code)
        planned = by_lot.get(s.lot_code)
        seen = observer.plans.get(planned) if planned else None
        if failed is None or seen is None:
            missing.append(s.lot_code)
            continue
        ours.append(seen.timestamp_ms - failed)
        to_planned.append(seen.planned * 1000 - failed)
        to_published.append(seen.timestamp_ms - seen.staged * 1000)
        before = observer.plans.get((planned[0], planned[1] - 1))
        if before is None or seen.units - before.units != args.lot_units:
            uncovered += 1
        for variant, into in (("transport", transport), ("durable", durable)):
            stamp = observer.baseline.get((variant, s.lot_code))
            if stamp is not None:
                into.append(stamp - failed)
    seconds = window_end - window_start
    in_window = [
        (kind, type_name) for stamp, kind, type_name in observer.records if window_start * 1000 <= stamp <= window_end * 1000
    ]
    consumed = Counter(
        type_name.split(".")[2] if type_name.count(".") >= 3 else type_name
        for kind, type_name in in_window
        if kind in ("capacity", "quality")
    )
    load = loads.get("load", {})
    done = load.get("done", {})
    figures: dict[str, Any] = {
        "samples": len(measured),
        "reacted": len(ours),
        "missing": len(missing),
        "missing_lots": missing[:10],
        "not_covering_the_failed_units": uncovered,
        "unresolved_waits": driver.unresolved,
        "orders_accepted_at_the_end": result["accepted"],
        **summary_ms(ours),
        "mean_ms": round(sum(ours) / len(ours), 1) if ours else None,
        "baseline_transport": summary_ms(transport),
        "baseline_durable": summary_ms(durable),
        "baseline_samples": {"transport": len(transport), "durable": len(durable)},
        "breakdown": {
            "lot_failed_to_planned_at": summary_ms(to_planned),
            "staged_to_published": summary_ms(to_published),
        },
        "solvers": dict(solvers),
        "new_plans_with_a_shortfall": short,
        "other_replans_of_sampled_orders": dict(other_replans),
        "background": {
            "capacity_changes_per_s": round(done.get("capacity_changes", 0) / load["seconds"], 1) if load.get("seconds") else 0.0,
            "lots_passed_per_s": round(done.get("lots_passed", 0) / load["seconds"], 1) if load.get("seconds") else 0.0,
            "skipped": {k: v for k, v in done.items() if k.endswith("_skipped")},
            "errors": load.get("errors", 0),
            "first_errors": load.get("first_errors", []),
        },
        "consumed_events_per_s": round(sum(consumed.values()) / seconds, 1),
        "consumed_by_type": dict(consumed.most_common()),
        "window_s": round(seconds, 1),
        "cpu_cores": result["cpu_cores"],
        "other_load_cores": round(result["other_cores"], 2),
    }
    for variant in VARIANTS:
        base = figures[f"baseline_{variant}"]
        figures[f"ratio_p50_to_{variant}"] = (
            round(figures["p50_ms"] / max(base["p50_ms"], 1.0), 1) if ours and base["p50_ms"] is not None else None
        )
        figures[f"ratio_p99_to_{variant}"] = (
            round(figures["p99_ms"] / max(base["p99_ms"], 1.0), 1) if ours and base["p99_ms"] is not None else None
        )
    log(
        f"[{backend}] p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms over {len(ours)} samples "
        f"({len(missing)} missing); {figures['consumed_events_per_s']} events/s consumed from capacity and quality; "
        f"other load {figures['other_load_cores']:.2f} cores"
    )
    return figures


# --- report ----------------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def targets_of(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for backend, f in figures.items():
        targets[f"{backend}_every_lot_replanned"] = f["missing"] == 0 and f["samples"] > 0
        drops = [d for d in f.get("capacity_drops") or [] if d["orders_touched"]]
        targets[f"{backend}_one_plan_version_per_drop"] = all(d["max_versions_per_order"] <= 1 for d in drops) if drops else None
        targets[f"{backend}_accepted_within_{TARGET_ACCEPTED_S:g}s_of_a_drop"] = (
            all(d["accepted_s"] is not None and d["accepted_s"] <= TARGET_ACCEPTED_S for d in drops) if drops else None
        )
        reads = f.get("order_reads")
        targets[f"{backend}_order_get_p99_le_{TARGET_GET_P99_MS:g}ms"] = (
            None
            if not reads
            else max(reads["get_one_version"]["p99_ms"], reads["get_after_versions"]["p99_ms"]) <= TARGET_GET_P99_MS
        )
        targets[f"{backend}_order_get_after_100_versions_le_{TARGET_GET_SLOWDOWN:g}x"] = (
            None if not reads or reads["slowdown_p50"] is None else reads["slowdown_p50"] <= TARGET_GET_SLOWDOWN
        )
    pg = figures.get("postgresql")
    targets[f"postgresql_p99_le_{TARGET_P99_MS:g}ms"] = (
        None if pg is None else (pg["p99_ms"] is not None and pg["p99_ms"] <= TARGET_P99_MS)
    )
    return targets


def report(args: argparse.Namespace, figures: dict[str, dict[str, Any]]) -> bool:
    """Prints the figures; returns False when a measured target was missed."""
    settings = Settings()
    print()
    print(
        f"Reaction: lot_failed published -> the order's new allocation_planned published (Kafka record timestamps); "
        f"{args.samples} failed lots of {args.lot_units} units per backend, one every {args.interval:g} s over {args.orders} orders "
        f"({args.members} members, {args.order_units:,} units each)"
    )
    print(
        f"Background: {args.capacity_rate:g} capacity changes/s and {args.lot_rate:g} passed lots/s through the APIs; "
        f"{settings.kafka_partitions} partitions, inbox poll batch {settings.inbox_batch_size}, relay batch {settings.outbox_batch_size}; "
        f"{os.cpu_count()} cores for everything"
    )
    print()
    header = (
        f"{'backend':<11}{'samples':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}   {'transport p50/p99':>17}{'ratio':>12}"
        f"   {'durable p50/p99':>15}{'ratio':>12}   {'consumed ev/s':>13}"
    )
    print(header)
    print("-" * len(header))
    for backend, f in figures.items():
        t, d = f["baseline_transport"], f["baseline_durable"]
        print(
            f"{backend:<11}{f['reacted']:>8}{_ms(f['p50_ms']):>8}{_ms(f['p99_ms']):>8}{_ms(f['max_ms']):>8}   "
            f"{_ms(t['p50_ms']) + ' / ' + _ms(t['p99_ms']):>17}{str(f['ratio_p50_to_transport']) + ' / ' + str(f['ratio_p99_to_transport']):>12}   "
            f"{_ms(d['p50_ms']) + ' / ' + _ms(d['p99_ms']):>15}{str(f['ratio_p50_to_durable']) + ' / ' + str(f['ratio_p99_to_durable']):>12}   "
            f"{f['consumed_events_per_s']:>13}"
        )
    print()
    for backend, f in figures.items():
        b = f["breakdown"]
        print(
            f"{backend}: lot_failed -> planned_at p50 {_ms(b['lot_failed_to_planned_at']['p50_ms'])} / p99 {_ms(b['lot_failed_to_planned_at']['p99_ms'])} ms "
            f"(consume, inbox batch, planning); staged -> published p50 {_ms(b['staged_to_published']['p50_ms'])} / p99 "
            f"{_ms(b['staged_to_published']['p99_ms'])} ms (commit, relay wake-up, send)"
        )
        bg = f["background"]
        print(
            f"{backend}: background achieved {bg['capacity_changes_per_s']} capacity changes/s and {bg['lots_passed_per_s']} lots/s "
            f"({bg['errors']} errors, skipped {bg['skipped'] or 'none'}); events consumed by type {f['consumed_by_type']}"
        )
        print(
            f"{backend}: {f['missing']} of {f['samples']} failed lots without a new plan, {f['not_covering_the_failed_units']} new plans not "
            f"adding the lot's units, {f['new_plans_with_a_shortfall']} with a shortfall; solvers {f['solvers']}; other replans of the sampled orders {f['other_replans_of_sampled_orders'] or 'none'}; "
            f"{f['orders_accepted_at_the_end']} of {args.orders} orders accepted again at the end"
        )
        if f["orders_accepted_at_the_end"] < args.orders:
            print(
                f"{backend}: NOTE {args.orders - f['orders_accepted_at_the_end']} of {args.orders} orders were not accepted again within "
                "15 s of the last sample: an allocation of the plan in force is still not reserved"
            )
        print(f"{backend}: CPU cores used during the samples {f['cpu_cores']}; other processes {f['other_load_cores']:.2f} cores")
    other_max = max((f["other_load_cores"] for f in figures.values()), default=0.0)
    if other_max >= OTHER_LOAD_WARNING:
        print(
            f"Other processes on the machine took up to {other_max:.2f} of its {os.cpu_count()} cores during the samples: the tail is longer than on a quiet machine"
        )
    print()
    print(
        "transport: a bare aiokafka consumer of quality's topic produces one message per lot_failed at once (same client settings)"
    )
    print("durable:   the same, after committing one row per poll batch to a database of the same kind")
    print("ratio:     ours / baseline, p50 and p99")
    print()
    for backend, f in figures.items():
        for n, d in enumerate(f.get("capacity_drops") or [], start=1):
            print(
                f"{backend}: capacity drop {n}: {d['member']} {d['weeks'][0]}…{d['weeks'][1]}, {d['reservations_revoked']} reservations"
                f" revoked, {d['orders_touched']} orders replanned, at most {d['max_versions_per_order']} plan version(s) each;"
                f" settled after {d['settle_s'] * 1000:.0f} ms, accepted again after {_ms(None if d['accepted_s'] is None else d['accepted_s'] * 1000)} ms"
            )
        reads = f.get("order_reads")
        if reads:
            for label, key in (
                ("one plan version", "get_one_version"),
                (f"{reads['versions']} versions", "get_after_versions"),
                ("/healthz", "healthz"),
            ):
                r = reads[key]
                print(
                    f"{backend}: GET {label:<18} {reads['readers']} readers: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms,"
                    f" {r['requests_per_s']} req/s, {r['failures']} failures"
                )
            print(
                f"{backend}: GET after {reads['versions']} versions / after one: p50 × {reads['slowdown_p50']}, p99 × {reads['slowdown_p99']}"
            )
    targets = targets_of(figures)
    pg_target = f"postgresql_p99_le_{TARGET_P99_MS:g}ms"
    yes = {True: "met", False: "MISSED", None: "not measured"}
    print("Targets:")
    pg = figures.get("postgresql")
    print(f"  PostgreSQL p99 <= {TARGET_P99_MS:g} ms   {_ms(pg['p99_ms']) if pg else '-':>6}   {yes[targets[pg_target]]}")
    for backend in figures:
        print(f"  {backend}: every failed lot replanned   {yes[targets[f'{backend}_every_lot_replanned']]}")
        for name in (
            "one_plan_version_per_drop",
            f"accepted_within_{TARGET_ACCEPTED_S:g}s_of_a_drop",
            f"order_get_p99_le_{TARGET_GET_P99_MS:g}ms",
            f"order_get_after_100_versions_le_{TARGET_GET_SLOWDOWN:g}x",
        ):
            print(f"  {backend}: {name.replace('_', ' ')}   {yes[targets[f'{backend}_{name}']]}")
    missed = not all(v for v in targets.values() if v is not None)
    # As in backbone.py: null when PostgreSQL, which the target is for, was not measured.
    met = None if targets[pg_target] is None else not missed
    print()
    summary = {
        "benchmark": "reaction",
        "machine": {
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "other_load_cores_max": other_max,
            "quiet": other_max < OTHER_LOAD_WARNING,
        },
        "samples": args.samples,
        "warmup_samples": args.warmup_samples,
        "interval_s": args.interval,
        "members": args.members,
        "orders": args.orders,
        "order_units": args.order_units,
        "lot_units": args.lot_units,
        "background": {"capacity_changes_per_s": args.capacity_rate, "lots_per_s": args.lot_rate},
        "partitions": settings.kafka_partitions,
        "inbox_batch_size": settings.inbox_batch_size,
        "outbox_batch_size": settings.outbox_batch_size,
        "backends": figures,
        "targets": targets,
        "targets_met": met,
    }
    print(json.dumps(summary, separators=(",", ":")))
    return not missed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default=None, help="default both; postgresql with --quick")
    parser.add_argument(
        "--quick", action="store_true", help="PostgreSQL only, fewer members, orders and samples (under a minute)"
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="measured failed lots per backend (default 150; 30 with --quick)"
    )
    parser.add_argument(
        "--warmup-samples", type=int, default=None, help="failed lots first, not counted (default 10; 5 with --quick)"
    )
    parser.add_argument("--interval", type=float, default=0.4, help="seconds between two failed lots (default 0.4)")
    parser.add_argument("--members", type=int, default=None, help="member foundries (default 40; 24 with --quick)")
    parser.add_argument(
        "--orders", type=int, default=None, help="purchase orders the failures rotate over (default 6; 3 with --quick)"
    )
    parser.add_argument("--order-units", type=int, default=6000, help="units per purchase order (default 6000)")
    parser.add_argument(
        "--lot-units", type=int, default=200, help="units per failed lot (default 200, the planner's minimum foundry-week)"
    )
    parser.add_argument("--capacity-rate", type=float, default=15.0, help="background capacity changes per second (default 15)")
    parser.add_argument(
        "--lot-rate", type=float, default=5.0, help="background lots registered and passed per second (default 5)"
    )
    parser.add_argument("--background-lot-units", type=int, default=50, help="units per background lot (default 50)")
    parser.add_argument(
        "--drops", type=int, default=3, help="capacity drops after the failed lots, one at a time (default 3; 0: none)"
    )
    parser.add_argument("--readers", type=int, default=16, help="concurrent readers of one order and of /healthz (default 16)")
    parser.add_argument(
        "--read-seconds", type=float, default=3.0, help="seconds each read load lasts (default 3; 0: no reads measured)"
    )
    parser.add_argument("--seed", type=int, default=1995)
    args = parser.parse_args(argv)
    quick = args.quick
    args.backend = args.backend or ("postgresql" if quick else "both")
    args.samples = args.samples if args.samples is not None else (30 if quick else 150)
    args.warmup_samples = args.warmup_samples if args.warmup_samples is not None else (5 if quick else 10)
    args.members = args.members if args.members is not None else (24 if quick else 40)
    args.orders = args.orders if args.orders is not None else (3 if quick else 6)
    args.settle = 2.0 if quick else 3.0
    args.quiet_patience = 5.0 if quick else 30.0
    if args.samples < 1 or args.warmup_samples < 0 or args.interval <= 0 or not 3 <= args.members <= 170 or args.orders < 1:
        parser.error(
            "--samples and --interval must be positive, --warmup-samples not negative, --members 3 to 170, --orders at least 1"
        )
    if (
        args.order_units < 600
        or args.lot_units < 1
        or args.capacity_rate < 0
        or args.lot_rate < 0
        or args.background_lot_units < 1
    ):
        parser.error("--order-units at least 600; --lot-units and --background-lot-units positive; rates not negative")
    args.backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="ceper-bench-reaction-"))
    kafka_broker: LocalKafka | None = None
    postgres: LocalPostgres | None = None
    try:
        log("starting Kafka …")
        kafka_broker = start_kafka(root)
        if "postgresql" in args.backends:
            log("starting PostgreSQL …")
            postgres = LocalPostgres()
            postgres.start()
        meter = CpuMeter(lambda: [pid for pid in [postgres and postgres.pid] if pid])
        figures = {backend: measure(args, root, kafka_broker, postgres, backend, meter) for backend in args.backends}
    except (BenchError, BrokerError) as exc:
        log(f"benchmark failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted: stopping the services, the broker and the database")
        return 130
    finally:
        if postgres is not None:
            postgres.stop()
        if kafka_broker is not None:
            kafka_broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0 if report(args, figures) else 1


if __name__ == "__main__":
    sys.exit(main())
