"""A probe consumer for backbone tests: a real outbox, relay and inbox consumer on a test table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from shared import kafka
from shared.db import backbone_tables, create_engine, session_factory
from shared.events import Envelope
from shared.events.capacity import FoundryRegistered, FoundryUpdated
from shared.inbox import InboxConsumer, Subscriptions
from shared.outbox import WAKE_KEY, Relay, stage
from shared.settings import Settings
from shared.topics import ensure_platform_topics

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


def registered(code: str) -> FoundryRegistered:
    return FoundryRegistered(
        foundry_code=code,
        name=f"Foundry {code}",
        village="Batur",
        product_families=["PUMP_PARTS"],
        registered_at=datetime.now(UTC),
    )


def updated(code: str, revision: int) -> FoundryUpdated:
    return FoundryUpdated(
        foundry_code=code,
        name=f"Foundry {code} r{revision}",
        village="Batur",
        product_families=["PUMP_PARTS"],
        revision=revision,
        updated_at=datetime.now(UTC),
    )


@dataclass
class Probe:
    settings: Settings
    engine: Any
    sessions: Any
    relay: Relay
    consumer: InboxConsumer
    producer: AIOKafkaProducer
    # Codes whose events the handler refuses while they are in here: a switchable poison.
    failing: set[str] = field(default_factory=set)
    # Codes whose events meet a bug: the handler reads a column that does not exist (a fault, not an outage).
    faulty: set[str] = field(default_factory=set)
    # Codes whose events take this long to apply, and codes whose events wait until `gate` opens.
    slow: dict[str, float] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def replica(self) -> InboxConsumer:
        """Another replica of the probe's consumer: same service, group, handlers and database."""
        return InboxConsumer(self.consumer.service, self.consumer.subscriptions, self.sessions, backbone.inbox, self.settings)

    async def publish(self, *events: Any) -> list[Envelope[Any]]:
        async with self.sessions.begin() as session:
            return await stage(session, backbone.outbox, *events)

    async def effects(self) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.select(effects).order_by(effects.c.seq))).all())

    async def inbox_count(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(backbone.inbox))).scalar_one()

    async def unsent(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(backbone.outbox))).scalar_one()


@asynccontextmanager
async def running_probe(
    settings: Settings, *, consume: bool = True, service: str = "orders", sqlite_busy_timeout_s: float = 30.0
) -> AsyncIterator[Probe]:
    """A consumer named like `service` (so it has that service's DLQ), on the capacity topic."""
    engine = create_engine(settings.database_url(service), sqlite_busy_timeout_s=sqlite_busy_timeout_s)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    relay = Relay("capacity", engine, backbone.outbox, settings)
    sessions = session_factory(engine, **{WAKE_KEY: relay.wake})
    subscriptions = Subscriptions(service)
    probe_ref: dict[str, Probe] = {}

    async def apply(session: Any, envelope: Envelope[Any]) -> None:
        data = envelope.data
        probe = probe_ref["probe"]
        if data.foundry_code in probe.failing:
            raise RuntimeError(f"cannot apply {data.foundry_code} now")
        if data.foundry_code in probe.faulty:
            await session.execute(sa.text("SELECT no_such_column FROM effects"))
        if data.foundry_code in probe.slow:
            await asyncio.sleep(probe.slow[data.foundry_code])
        if data.foundry_code in probe.gated:
            await probe.gate.wait()
        revision = getattr(data, "revision", 0)
        await session.execute(sa.insert(effects).values(event_id=envelope.id, foundry_code=data.foundry_code, revision=revision))

    subscriptions.add(FoundryRegistered, apply)
    subscriptions.add(FoundryUpdated, apply)
    consumer = InboxConsumer(service, subscriptions, sessions, backbone.inbox, settings)
    await ensure_platform_topics(settings)
    producer = kafka.producer(settings, client_id="probe")
    await producer.start()
    probe = Probe(settings, engine, sessions, relay, consumer, producer)
    probe_ref["probe"] = probe
    await relay.start(producer)
    if consume:
        await consumer.start(producer)
    try:
        yield probe
    finally:
        await consumer.stop()
        await relay.stop()
        await producer.stop()
        await engine.dispose()


def settings_with(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    return make_settings(**{"inbox_retry_backoff_s": 0.01, **overrides})
