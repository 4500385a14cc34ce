"""Replicas as real processes: a killed or restarted replica consumes again within seconds, and a broker outage
shows in a service's log as a few lines, not as its retries."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from ceper.broker import LocalKafka, free_port
from services.quality import store as quality_store
from shared import kafka
from shared.db import create_engine
from shared.events import Envelope, to_kafka, topic_of
from shared.settings import Settings
from shared.topics import ensure_platform_topics
from tests.fixtures.kafka import free_port_pair
from tests.integration.probe import registered
from tests.support import eventually

REPO = Path(__file__).resolve().parents[2]
# From serving HTTP to consuming again: joining the group and taking the partitions back. The interpreter's start
# before it (imports: about 1.5 s of CPU, far longer on a machine other work keeps busy) is reported, not asserted.
RECOVERY_WITHIN_S = 5.0


class ServiceProcess:
    """One replica of a service under uvicorn, configured through `CEPER_…` variables like production."""

    def __init__(self, service: str, env: dict[str, str], log_path: Path) -> None:
        self.service = service
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.serving_at: float | None = None  # when it first answered HTTP

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.serving_at = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", f"services.{self.service}.app:create_app",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    async def metric(self, name: str, **labels: str) -> float | None:
        """A sample of this process's /metrics, or None while it does not answer."""
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                text = (await http.get(f"{self.url}/metrics")).text
        except httpx.HTTPError:
            return None
        if self.serving_at is None:
            self.serving_at = time.monotonic()
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        total = 0.0
        for line in text.splitlines():
            match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
            if match and all(part in match.group(1).split(",") for part in wanted.split(",") if part):
                total += float(match.group(2))
        return total

    async def consuming(self) -> bool:
        """Its consumer runs and has applied an event since this process started."""
        running = await self.metric("ceper_consumer_running", service=self.service)
        applied = await self.metric("ceper_events_consumed_total", service=self.service)
        return bool(running) and bool(applied)


def service_env(bootstrap: str, prefix: str, var_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CEPER_")}
    env.update(
        {
            "CEPER_ENV": "test",
            "CEPER_VAR_DIR": str(var_dir),
            "CEPER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CEPER_KAFKA_TOPIC_PREFIX": prefix,
            "CEPER_KAFKA_PARTITIONS": "3",
            "CEPER_LOG_JSON": "true",
            "CEPER_LOG_LEVEL": "INFO",
            **extra,
        }
    )
    return env


@asynccontextmanager
async def foundries_flowing(settings: Settings, per_second: float = 5.0) -> AsyncIterator[list[str]]:
    """Publishes a new foundry to capacity's topic every 1/`per_second` s while inside; yields their event ids."""
    producer: AIOKafkaProducer = kafka.producer(settings, client_id="test-flow")
    await producer.start()
    sent: list[str] = []
    topic = settings.topic(topic_of("capacity"))

    async def flow() -> None:
        number = 1000
        while True:
            envelope = Envelope.of(registered(f"IKM-{number}"))
            message = to_kafka(envelope)
            await producer.send_and_wait(topic, message.value, key=envelope.key.encode(), headers=list(message.headers.items()))
            sent.append(envelope.id)
            number += 1
            await asyncio.sleep(1 / per_second)

    task = asyncio.create_task(flow())
    try:
        yield sent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()


async def wait_consuming(replica: ServiceProcess, timeout: float = 90) -> tuple[float, float]:
    """Seconds from the replica's process start, and from its first HTTP answer, until it has consumed an event."""
    await eventually(replica.consuming, timeout=timeout, interval=0.1)
    now = time.monotonic()
    assert replica.serving_at is not None
    return now - replica.started_at, now - replica.serving_at


async def test_a_killed_or_restarted_replica_consumes_again_within_seconds(make_settings, tmp_path):
    """Two quality replicas (static members `quality-a`, `quality-b`) consume capacity's foundry register while
    foundries keep arriving. One is killed (SIGKILL) and started again, then stopped cleanly and started again."""
    settings = make_settings()
    env = service_env(settings.kafka_bootstrap_servers, settings.kafka_topic_prefix, settings.var_dir)
    if settings.quality_database_url:
        env["CEPER_QUALITY_DATABASE_URL"] = settings.quality_database_url
    await ensure_platform_topics(settings)
    replicas = {
        name: ServiceProcess("quality", {**env, "CEPER_INSTANCE_ID": f"quality-{name}"}, tmp_path / f"quality-{name}.log")
        for name in ("a", "b")
    }
    figures: dict[str, tuple[float, float]] = {}
    try:
        async with foundries_flowing(settings) as sent:
            for replica in replicas.values():
                replica.start()
            for replica in replicas.values():
                await wait_consuming(replica)
            a = replicas["a"]
            for how in (signal.SIGKILL, signal.SIGTERM):
                a.stop(how)
                a.start()
                figures[how.name] = await wait_consuming(a)
            await asyncio.sleep(1)
        engine = create_engine(settings.database_url("quality"))
        try:

            async def all_applied() -> bool:
                async with engine.connect() as conn:
                    inbox = quality_store.backbone.inbox
                    ids = (await conn.execute(sa.select(inbox.c.event_id))).scalars().all()
                return set(sent) <= set(ids)

            await eventually(all_applied, timeout=60)
            async with engine.connect() as conn:
                codes = (await conn.execute(sa.select(quality_store.foundry_projection.c.code))).scalars().all()
            assert len(codes) == len(set(codes)) == len(sent)
        finally:
            await engine.dispose()
    finally:
        for replica in replicas.values():
            replica.stop()
    for how, (total, recovery) in figures.items():
        print(f"after {how}: consuming again {total:.1f} s after the process started, {recovery:.1f} s after it served HTTP")
    assert all(recovery <= RECOVERY_WITHIN_S for _, recovery in figures.values()), figures


@pytest.fixture
def own_broker() -> LocalKafka:
    port, controller = free_port_pair()
    root = Path(tempfile.mkdtemp(prefix="ceper-test-outage-"))
    broker = LocalKafka(root / "kafka", port=port, controller_port=controller)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_a_broker_outage_logs_when_it_starts_and_ends_not_its_retries(own_broker, tmp_path):
    """A quality replica on a broker of its own; the broker stops for 30 s and comes back."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = Settings(kafka_bootstrap_servers=own_broker.bootstrap, kafka_topic_prefix=prefix, kafka_partitions=3)
    await ensure_platform_topics(settings)
    log_path = tmp_path / "quality.log"
    replica = ServiceProcess("quality", service_env(own_broker.bootstrap, prefix, tmp_path / "var"), log_path)
    replica.start()
    try:
        async with foundries_flowing(settings, per_second=2):
            await wait_consuming(replica)
        before = len(log_path.read_bytes().splitlines())

        await asyncio.to_thread(own_broker.stop)
        await asyncio.sleep(30)
        during = log_path.read_bytes().splitlines()[before:]
        await asyncio.to_thread(own_broker.start)

        applied = await replica.metric("ceper_events_consumed_total", service="quality") or 0.0

        async def consuming_again() -> bool:
            return (await replica.metric("ceper_events_consumed_total", service="quality") or 0.0) > applied

        async with foundries_flowing(settings, per_second=2):
            await eventually(consuming_again, timeout=120, interval=0.5)

        async def end_logged() -> bool:
            return b"measured again" in log_path.read_bytes()

        await eventually(end_logged, timeout=60, interval=0.5)
        outage = log_path.read_bytes().splitlines()[before:]
    finally:
        replica.stop()
    lines = [json.loads(line) for line in outage if line.startswith(b"{")]
    print(f"{len(during)} log lines in 30 s of outage, {len(lines)} until consuming again")
    assert len(during) <= 30, b"\n".join(during).decode()[-5000:]
    assert len(lines) <= 60, "\n".join(str(line) for line in lines)[-5000:]
    events = [line.get("event", "") for line in lines]
    assert any("cannot be measured" in event for event in events), events  # the outage starts
    assert any("measured again" in event for event in events), events  # and ends
