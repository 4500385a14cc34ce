"""Inbox consumer: applies other services' events exactly once, in order, without stalling on poison.

Each poll batch is applied in ONE database transaction together with its inbox rows `(consumer, event
id)`, then the offsets are committed: at-least-once delivery, exactly-once effects. If any event of the
batch fails, the batch is rolled back and replayed one event per transaction, with bounded retries; an
event that still fails goes to the service's dead-letter topic with its error and origin, and the
partition moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import kafka, metrics, tracing
from .audit import Actor, acting
from .events import Envelope, EventData, EventType, MalformedEvent, dlq_topic_of, event_type_of, from_kafka
from .logging import get_logger
from .outbox import current_trace_id
from .settings import Settings

log = get_logger(__name__)

Handler = Callable[[AsyncSession, Envelope[Any]], Awaitable[None]]


class PermanentError(Exception):
    """Raised by a handler for an event that can never be applied: it goes to the DLQ without retries."""


# Errors that say the database or network is away: they never send an event to the DLQ.
INFRASTRUCTURE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, ConnectionError, OSError, KafkaError)

# The dialects' INSERT … ON CONFLICT DO NOTHING, which the inbox needs to record only unseen events.
_UPSERT_INSERTS: dict[str, Callable[[sa.Table], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}

# Header names of a dead letter; the origin lets an operator find and redrive it.
DLQ_ERROR = "ceper_dlq_error"
DLQ_ERROR_TYPE = "ceper_dlq_error_type"
DLQ_ORIGIN_TOPIC = "ceper_dlq_origin_topic"
DLQ_ORIGIN_PARTITION = "ceper_dlq_origin_partition"
DLQ_ORIGIN_OFFSET = "ceper_dlq_origin_offset"
DLQ_CONSUMER = "ceper_dlq_consumer"
DLQ_ATTEMPTS = "ceper_dlq_attempts"
DLQ_TIME = "ceper_dlq_time"
DLQ_HEADER_PREFIX = "ceper_dlq_"


@dataclass(frozen=True)
class Subscription:
    event_type: EventType
    handler: Handler
    # A projection rebuilds state owned elsewhere; its tables are cleared and refilled by `ceper replay`.
    projection_of: tuple[sa.Table, ...] = ()
    # Reactions run after the handler, in the same transaction; a replay rebuilds projections only.
    reactions: tuple[Handler, ...] = ()

    async def apply(self, session: AsyncSession, envelope: Envelope[Any]) -> None:
        # Changes made for the event are audited as the event's: its source acted, its id caused them.
        with acting(Actor.of_event(envelope.id, envelope.type.source)):
            await self.handler(session, envelope)
            for reaction in self.reactions:
                await reaction(session, envelope)

    @property
    def is_projection(self) -> bool:
        return bool(self.projection_of)


class Subscriptions:
    """Event type → handler, for one consuming service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._by_type: dict[str, Subscription] = {}

    def add(self, model: type[EventData], handler: Handler, *, projection_of: Sequence[sa.Table] = ()) -> None:
        event_type = model.event_type()
        if event_type.name in self._by_type:
            raise ValueError(f"{self.service} already handles {event_type.name}")
        self._by_type[event_type.name] = Subscription(event_type, handler, tuple(projection_of))

    def react(self, model: type[EventData], reaction: Handler) -> None:
        """Adds a reaction to an event type, after its projection if it has one (e.g. replan after projecting)."""
        event_type = model.event_type()
        existing = self._by_type.get(event_type.name)
        if existing is None:
            self._by_type[event_type.name] = Subscription(event_type, reaction)
        else:
            self._by_type[event_type.name] = replace(existing, reactions=(*existing.reactions, reaction))

    def get(self, type_name: str) -> Subscription | None:
        return self._by_type.get(type_name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    @property
    def topics(self) -> list[str]:
        return sorted({s.event_type.topic for s in self._by_type.values()})

    def projections(self) -> list[Subscription]:
        return [s for s in self._by_type.values() if s.is_projection]


@dataclass
class Delivery:
    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope[Any]
    subscription: Subscription


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    batches: int = 0
    fallbacks: int = 0
    dead_letters: list[str] = field(default_factory=list)


class InboxConsumer:
    """Runs one service's subscriptions against its database, as consumer group `ceper-<service>`."""

    def __init__(
        self,
        service: str,
        subscriptions: Subscriptions,
        sessions: async_sessionmaker[AsyncSession],
        inbox: sa.Table,
        settings: Settings,
    ) -> None:
        self.service = service
        self.subscriptions = subscriptions
        self.sessions = sessions
        self.inbox = inbox
        self.settings = settings
        self.stats = ConsumerStats()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._prefix = settings.kafka_topic_prefix
        self._dlq_topic = settings.topic(dlq_topic_of(service))
        self._insert_new_by_dialect: dict[str, Any] = {}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer owns now; empty until it has joined its group."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def start(self, producer: AIOKafkaProducer) -> None:
        if not len(self.subscriptions):
            return
        self._producer = producer
        topics = [self.settings.topic(t) for t in self.subscriptions.topics]
        self._consumer = kafka.consumer(
            self.settings, *topics, group_id=self.settings.consumer_group(self.service), client_id=f"ceper-{self.service}"
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"{self.service}-inbox-consumer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        structlog.contextvars.bind_contextvars(service=self.service)
        backoff = 0.1
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=self.settings.inbox_batch_size)
            if not batches:
                continue
            try:
                await self.apply(batches)
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or the broker is away: apply the same batch again later
                log.warning("inbox batch failed, will retry", error=str(exc), retry_in_s=backoff)
                for tp, records in batches.items():
                    consumer.seek(tp, records[0].offset)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self._record_lag(consumer, batches)

    def _record_lag(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batches.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(
                    max(0, highwater - records[-1].offset - 1)
                )

    # --- applying a batch -------------------------------------------------------------------------------

    async def apply(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Applies one poll batch; returns once every event is applied, skipped or dead-lettered."""
        started = time.perf_counter()
        deliveries: list[Delivery] = []
        for records in batches.values():
            for record in records:
                delivery = await self._decode(record)
                if delivery is not None:
                    deliveries.append(delivery)
        if deliveries:
            try:
                await self._apply_together(deliveries)
            except Exception as exc:
                self.stats.fallbacks += 1
                log.info("batch had a failing event; applying one by one", error=str(exc), size=len(deliveries))
                for delivery in deliveries:
                    await self._apply_alone(delivery)
        self.stats.batches += 1
        metrics.EVENT_HANDLING.labels(self.service).observe(time.perf_counter() - started)

    async def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Delivery | None:
        type_name = event_type_of(record.headers)
        if type_name is not None:
            subscription = self.subscriptions.get(type_name)
            if subscription is None:
                self.stats.skipped += 1  # another consumer's business, or a newer type we do not know yet
                return None
        try:
            envelope = from_kafka(record.key, record.value, record.headers)
        except MalformedEvent as exc:
            await self._dead_letter(record, exc, attempts=1, type_name=type_name or "unknown")
            return None
        subscription = self.subscriptions.get(envelope.type.name)
        assert subscription is not None
        return Delivery(record, envelope, subscription)

    async def _apply_together(self, deliveries: list[Delivery]) -> None:
        async with self.sessions() as session, session.begin():
            fresh = await self._record_in_inbox(session, deliveries)
            applied: list[Delivery] = []
            for delivery in deliveries:
                if delivery.envelope.id not in fresh:
                    self._count_duplicate(delivery)
                    continue
                fresh.discard(delivery.envelope.id)  # a second copy within the batch is a duplicate too
                await self._handle(session, delivery)
                applied.append(delivery)
        self._count_applied(applied)

    async def _apply_alone(self, delivery: Delivery) -> None:
        attempts = 0
        while True:
            attempts += 1
            try:
                async with self.sessions() as session, session.begin():
                    if not await self._record_in_inbox(session, [delivery]):
                        self._count_duplicate(delivery)
                        return
                    await self._handle(session, delivery)
                self._count_applied([delivery])
                return
            except (PermanentError, ValidationError, MalformedEvent) as exc:
                metrics.EVENTS_FAILED.labels(self.service, delivery.envelope.type.name).inc()
                await self._dead_letter(delivery.record, exc, attempts, delivery.envelope.type.name, delivery.envelope.id)
                return
            except Exception as exc:
                metrics.EVENTS_FAILED.labels(self.service, delivery.envelope.type.name).inc()
                if attempts >= self.settings.inbox_max_attempts:
                    if isinstance(exc, INFRASTRUCTURE_ERRORS):
                        raise  # the database is away, not the event at fault: retry the batch later

                    await self._dead_letter(delivery.record, exc, attempts, delivery.envelope.type.name, delivery.envelope.id)
                    return
                delay = self.settings.inbox_retry_backoff_s * (2 ** (attempts - 1))
                log.warning(
                    "event failed, retrying",
                    event_id=delivery.envelope.id,
                    event_type=delivery.envelope.type.name,
                    attempt=attempts,
                    error=repr(exc),
                )
                await asyncio.sleep(delay)

    async def _handle(self, session: AsyncSession, delivery: Delivery) -> None:
        envelope = delivery.envelope
        trace_id = envelope.trace_id or envelope.id
        token = current_trace_id.set(trace_id)
        # Tokens restore the previous bindings as `bound_contextvars` does, without copying the whole context.
        log_tokens = structlog.contextvars.bind_contextvars(event_id=envelope.id, trace_id=trace_id)
        try:
            with tracing.consuming(self.service, delivery.record, envelope.type.name, envelope.id):
                await delivery.subscription.apply(session, envelope)
        finally:
            structlog.contextvars.reset_contextvars(**log_tokens)
            current_trace_id.reset(token)

    async def _record_in_inbox(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> set[str]:
        """Adds the inbox rows of events not applied before and returns their ids: the events to apply now.

        One statement that skips known ids through the primary key: no read-then-write race between
        consumers, and no plan whose cost grows with the size of the inbox.
        """
        received_at = datetime.now(UTC)
        rows: dict[str, dict[str, Any]] = {}
        for delivery in deliveries:
            envelope = delivery.envelope
            if envelope.id not in rows:
                rows[envelope.id] = {
                    "consumer": self.service,
                    "event_id": envelope.id,
                    "event_type": envelope.type.name,
                    "received_at": received_at,
                }
        statement = self._insert_new(session.get_bind().dialect.name)
        result = await session.execute(statement, list(rows.values()))
        return set(result.scalars())

    def _insert_new(self, dialect: str) -> Any:
        statement = self._insert_new_by_dialect.get(dialect)
        if statement is None:
            insert = _UPSERT_INSERTS.get(dialect)
            if insert is None:
                raise RuntimeError(f"the inbox needs SQLite or PostgreSQL, not {dialect}")
            statement = (
                insert(self.inbox)
                .on_conflict_do_nothing(index_elements=[self.inbox.c.consumer, self.inbox.c.event_id])
                .returning(self.inbox.c.event_id)
            )
            self._insert_new_by_dialect[dialect] = statement
        return statement

    def _count_duplicate(self, delivery: Delivery) -> None:
        metrics.EVENTS_DUPLICATE.labels(self.service, delivery.envelope.type.name).inc()
        self.stats.duplicates += 1

    def _count_applied(self, applied: list[Delivery]) -> None:
        for type_name, count in Counter(d.envelope.type.name for d in applied).items():
            metrics.EVENTS_CONSUMED.labels(self.service, type_name).inc(count)
        self.stats.applied += len(applied)

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        error: BaseException,
        attempts: int,
        type_name: str,
        event_id: str | None = None,
    ) -> None:
        assert self._producer is not None
        headers = [(k, v) for k, v in record.headers if not k.startswith(DLQ_HEADER_PREFIX)]
        headers += [
            (DLQ_ERROR, f"{error}"[:4000].encode("utf-8", "replace")),
            (DLQ_ERROR_TYPE, type(error).__name__.encode()),
            (DLQ_ORIGIN_TOPIC, record.topic.encode()),
            (DLQ_ORIGIN_PARTITION, str(record.partition).encode()),
            (DLQ_ORIGIN_OFFSET, str(record.offset).encode()),
            (DLQ_CONSUMER, self.service.encode()),
            (DLQ_ATTEMPTS, str(attempts).encode()),
            (DLQ_TIME, datetime.now(UTC).isoformat().encode()),
        ]
        # Wait for the ack: the offset is committed only after the dead letter is safely stored.
        await self._producer.send_and_wait(self._dlq_topic, value=record.value, key=record.key, headers=headers)
        metrics.EVENTS_DEAD_LETTERED.labels(self.service, type_name).inc()
        self.stats.dead_lettered += 1
        self.stats.dead_letters.append(event_id or f"{record.topic}:{record.partition}:{record.offset}")
        log.error(
            "event dead-lettered",
            event_id=event_id,
            event_type=type_name,
            origin=f"{record.topic}/{record.partition}/{record.offset}",
            attempts=attempts,
            error=str(error),
            dlq_topic=self._dlq_topic,
        )
