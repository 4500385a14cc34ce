"""Inbox consumer: applies other services' events exactly once, each partition in order, none waiting for another.

One fetch loop reads every partition the service's consumer group gave this replica and hands each
partition's records to a worker of its own. A worker applies a batch of its partition in ONE database
transaction together with the inbox rows `(consumer, event id)`, then that partition's offset is committed:
at-least-once delivery, exactly-once effects. A slow or failing event holds up only its own partition; a
partition whose worker falls behind is paused at the broker until it catches up. Every transaction that applies
events (a batch, or one event when retried alone) is marked `IN_BATCH` and ends with the subscriptions' settlers,
before its commit: reactions may leave them work done once for all the transaction's events (one replan per order).

When a batch fails, the database is asked whether it answers. If it does not, the partition waits for it
and nothing is dead-lettered: an outage is no event's fault. If it does, the batch is applied again one
event per transaction, and an event that keeps failing, whatever the error, goes to the service's
dead-letter topic with its error and origin after `CEPER_INBOX_MAX_ATTEMPTS` tries; the partition moves on.

Rebalances: the workers of partitions taken away finish the transaction in flight (or abandon it after
`CEPER_INBOX_REVOKE_GRACE_S`), what they applied is committed while the partitions are still owned, and
nothing touches those partitions afterwards. The loop runs as a supervised background task: if it dies
anyway it is restarted with backoff, counted and reported by `/readyz`. Lag is measured from the broker by
a task of its own (`shared/lag.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import kafka, metrics, tracing
from .audit import Actor, acting, current_actor
from .db import database_answers
from .events import (
    REGISTRY,
    Envelope,
    EventData,
    EventType,
    MalformedEvent,
    dlq_topic_of,
    event_type_of,
    from_kafka,
    retry_topic_of,
)
from .lag import LagMeter
from .logging import applying_event, get_logger
from .membership import leave_group
from .outbox import current_trace_id
from .settings import Settings
from .tasks import BackgroundTask, Backoff, every

log = get_logger(__name__)

Handler = Callable[[AsyncSession, Envelope[Any]], Awaitable[None]]
Settler = Callable[[AsyncSession], Awaitable[None]]

# Set in `session.info` while the inbox applies a batch: reactions may leave work to the settlers, which run once
# at the batch's end in its transaction (e.g. one replan per order for every event of the batch about it).
IN_BATCH = "ceper_inbox_batch"


def in_batch(session: AsyncSession) -> bool:
    """Whether the session applies an inbox batch whose settlers run at its end (never for direct calls)."""
    return bool(session.info.get(IN_BATCH))


class PermanentError(Exception):
    """Raised by a handler for an event that can never be applied: it goes to the DLQ without retries."""


# Errors that say the event itself is wrong: dead-lettered at once, without retries.
EVENT_ERRORS = (PermanentError, ValidationError, MalformedEvent)

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

# A partition is paused once this many batches wait for its worker, and resumed when fewer than the other figure
# do: the worker always has its next batch at hand, and pausing (which drops what was prefetched) stays rare.
PAUSE_AT_BATCHES = 4
RESUME_BELOW_BATCHES = 2

# How long the offset committer waits for other partitions' batches before it commits (one request for all).
COMMIT_GATHER_S = 0.05

# Distinct unknown event types counted by name; beyond that they share one label, so a flood cannot grow /metrics.
UNKNOWN_TYPES_COUNTED = 50


@dataclass(frozen=True)
class Subscription:
    event_type: EventType
    handler: Handler
    # A projection rebuilds state owned elsewhere; its tables are cleared and refilled by `ceper replay`.
    projection_of: tuple[sa.Table, ...] = ()
    # Reactions run after the handler, in the same transaction; a replay rebuilds projections only.
    reactions: tuple[Handler, ...] = ()

    async def apply(self, session: AsyncSession, envelope: Envelope[Any]) -> None:
        """The handler, then the reactions, audited as the event's: its source acted, its id caused the changes.
        (The inbox does the same inline, in `_apply_together`.)"""
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
        self.settlers: list[Settler] = []

    def settle(self, settler: Settler) -> None:
        """Adds work run once after every event of a batch (or a lone event) is handled, in the same transaction."""
        self.settlers.append(settler)

    async def settled(self, session: AsyncSession) -> None:
        for settler in self.settlers:
            await settler(session)

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


class _Applying:
    """What is bound while one event is applied: the audit's actor, the trace of the events and log lines it
    causes, and its span when tracing is on. Restores what was bound before, as the tokens say."""

    __slots__ = ("_delivery", "_service", "_span", "_tokens")

    def __init__(self, service: str, delivery: Delivery) -> None:
        self._service = service
        self._delivery = delivery

    def __enter__(self) -> None:
        delivery = self._delivery
        envelope = delivery.envelope
        trace_id = envelope.trace_id or envelope.id
        self._span = tracing.consuming(self._service, delivery.record, envelope.type.name, envelope.id)
        self._span.__enter__()
        # Changes made for the event are audited as the event's: its source acted, its id caused them.
        actor = current_actor.set(Actor.of_event(envelope.id, envelope.type.source))
        trace = current_trace_id.set(trace_id)
        logged = applying_event.set((envelope.id, trace_id))
        self._tokens = (actor, trace, logged)

    def __exit__(self, *exc_info: Any) -> None:
        actor, trace, logged = self._tokens
        applying_event.reset(logged)
        current_trace_id.reset(trace)
        current_actor.reset(actor)
        self._span.__exit__(*exc_info)


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    unknown: int = 0
    dead_lettered: int = 0
    batches: int = 0
    fallbacks: int = 0
    restarts: int = 0
    dead_letters: list[str] = field(default_factory=list)


class _Abandoned(Exception):
    """The partition was taken away, or the consumer stops: its remaining events are left to the next owner."""


class _Partition:
    """The worker of one assigned partition: applies its records in order, one batch at a time."""

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.records: deque[ConsumerRecord[bytes, bytes]] = deque()
        self.wake = asyncio.Event()
        self.revoked = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def feed(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.records.extend(records)
        self.wake.set()

    def revoke(self) -> None:
        self.revoked.set()
        self.wake.set()

    async def wait(self, seconds: float) -> None:
        """Sleeps, unless the partition is taken away meanwhile: then its work is abandoned."""
        if not self.revoked.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.revoked.wait(), seconds)
                raise _Abandoned
            return
        raise _Abandoned


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints for it
    def __init__(self, inbox: InboxConsumer) -> None:
        self.inbox = inbox

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.inbox._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.inbox._on_assigned(set(assigned))


class InboxConsumer:
    """Runs one service's subscriptions against its database, as consumer group `ceper-<service>`.

    Reads the topics of its subscriptions and its own retry topic (`ceper.<service>.retry`), where redriven
    dead letters of this service, and of no other, are sent back.
    """

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
        self.engine: AsyncEngine = sessions.kw["bind"]
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._group_id = settings.consumer_group(service)
        self._topics = [settings.topic(t) for t in subscriptions.topics] + [settings.topic(retry_topic_of(service))]
        self._dlq_topic = settings.topic(dlq_topic_of(service))
        self._insert_new_by_dialect: dict[str, Any] = {}
        self._loop = BackgroundTask(f"{service}-inbox-consumer", self._run, healthy_after_s=30.0, on_crash=self._crashed)
        self._lag = LagMeter(service, self._group_id, self._topics, settings)
        self._lag_task = BackgroundTask(
            f"{service}-consumer-lag", every(lambda: settings.inbox_lag_interval_s, self._measure_lag, name="consumer lag")
        )
        self._live = False
        self._joined = False
        self._live_once = asyncio.Event()
        self._running_gauge = metrics.CONSUMER_RUNNING.labels(service)
        self._running_gauge.set(0)
        # Partitions this replica owns in the group's current generation, their workers and offsets.
        self._owned: set[TopicPartition] = set()
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._applied: dict[TopicPartition, int] = {}  # the offset after the last record applied
        self._committed: dict[TopicPartition, int] = {}
        self._commit_wanted = asyncio.Event()
        # SQLite has one writer at a time: partitions take turns in this process instead of spinning on its lock.
        self._one_writer = asyncio.Lock() if self.engine.dialect.name == "sqlite" else None
        # Outages are logged when they start and when they end, not at every retry.
        self._database_down_since: float | None = None
        self._broker_down_since: float | None = None
        self._unknown_types: set[str] = set()

    @property
    def running(self) -> bool:
        """True while the consumer loop runs and is joined to its group; False while it is down or restarting."""
        return self._live and self._loop.running

    @property
    def status(self) -> str:
        """What `/readyz` says of the consumer."""
        if self.running:
            return "ok"
        if self._loop.last_error is not None and self._loop.running:
            return f"restarting after {self._loop.crashes} failure(s): {self._loop.last_error}"[:300]
        return "not running"

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer owns now; empty until it has joined its group."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def start(self, producer: AIOKafkaProducer, *, join_timeout_s: float = 30.0) -> None:
        """Starts the consumer loop and returns once it has joined its group (or after `join_timeout_s`: it keeps
        trying in the background, and `/readyz` says it is not running meanwhile)."""
        if not len(self.subscriptions):
            return
        self._producer = producer
        self._live_once.clear()
        self._loop.start()
        self._lag_task.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._live_once.wait(), join_timeout_s)

    async def stop(self) -> None:
        await self._lag_task.stop()
        await self._loop.stop()
        await self._lag.close()

    async def measure_lag(self) -> dict[TopicPartition, int]:
        """The group's lag per partition, measured now from the broker (the periodic task does this too)."""
        return await self._lag.measure()

    async def _measure_lag(self) -> None:
        # From the first join on: a group the broker does not know yet has no coordinator to ask.
        if self._joined:
            await self._lag.measure()

    def _crashed(self, error: BaseException) -> None:
        self.stats.restarts += 1
        metrics.CONSUMER_RESTARTS.labels(self.service).inc()

    def _set_live(self, live: bool) -> None:
        self._live = live
        self._joined = self._joined or live
        if live:
            self._live_once.set()
        self._running_gauge.set(1 if live else 0)

    # --- the fetch loop -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        structlog.contextvars.bind_contextvars(service=self.service)
        options: dict[str, object] = {}
        if self.settings.instance_id:
            options["group_instance_id"] = self.settings.instance_id
        consumer = kafka.consumer(self.settings, group_id=self._group_id, client_id=f"ceper-{self.service}", **options)
        consumer.subscribe(topics=self._topics, listener=_Rebalance(self))
        committer: asyncio.Task[None] | None = None
        try:
            await consumer.start()
            self._consumer = consumer
            committer = asyncio.create_task(self._commit_loop(consumer), name=f"{self.service}-inbox-commits")
            self._set_live(True)
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=self.settings.inbox_batch_size)
                self._raise_if_a_worker_failed(committer)
                for tp, records in fetched.items():
                    self._dispatch(consumer, tp, records)
        finally:
            self._set_live(False)
            # Stopping or failing: the work in flight is finished or abandoned, what was applied is committed.
            with contextlib.suppress(Exception):
                await self._release(consumer, set(self._partitions))
            if committer is not None:
                committer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await committer
            self._consumer = None
            self._owned.clear()
            with contextlib.suppress(Exception):
                await consumer.stop()  # leaves the group, so its partitions move to the other replicas at once
            if self.settings.instance_id:  # a static member is not left by stop(): it leaves by name
                await leave_group(self.settings.kafka_bootstrap_servers, self._group_id, self.settings.instance_id)

    def _dispatch(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        if tp not in self._owned:
            # Fetching waits while a rebalance is under way, so whatever arrives is of the current assignment,
            # possibly before its assigned-callback ran.
            if tp not in consumer.assignment():
                return
            self._owned.add(tp)
        partition = self._partitions.get(tp)
        if partition is None:
            partition = self._partitions[tp] = _Partition(tp)
            partition.task = asyncio.create_task(
                self._work(consumer, partition), name=f"{self.service}-inbox-{tp.topic}-{tp.partition}"
            )
        partition.feed(records)
        if len(partition.records) >= PAUSE_AT_BATCHES * self.settings.inbox_batch_size:
            consumer.pause(tp)  # its worker is behind: the broker keeps the rest until it catches up

    def _raise_if_a_worker_failed(self, committer: asyncio.Task[None]) -> None:
        if committer.done():
            committer.result()
            raise RuntimeError("the offset committer stopped")
        for partition in self._partitions.values():
            task = partition.task
            if task is not None and task.done() and not task.cancelled():
                error = task.exception()
                raise RuntimeError(f"the worker of {partition.tp.topic}/{partition.tp.partition} failed: {error!r}") from error

    async def _work(self, consumer: AIOKafkaConsumer, partition: _Partition) -> None:
        tp = partition.tp
        batch_size = self.settings.inbox_batch_size
        try:
            while not partition.revoked.is_set():
                if not partition.records:
                    partition.wake.clear()
                    await partition.wake.wait()
                    continue
                batch = [partition.records.popleft() for _ in range(min(batch_size, len(partition.records)))]
                await self.apply({tp: batch})
                self._applied[tp] = batch[-1].offset + 1
                self._commit_wanted.set()
                if len(partition.records) < RESUME_BELOW_BATCHES * batch_size and tp in self._owned and tp in consumer.paused():
                    with contextlib.suppress(IllegalStateError):
                        consumer.resume(tp)
        except _Abandoned:
            return

    # --- rebalances and offsets ---------------------------------------------------------------------------

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owned = set(assigned)
        log.info("partitions assigned", service=self.service, partitions=_names(assigned))

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._owned -= revoked
        if self._consumer is not None and revoked:
            log.info("partitions revoked", service=self.service, partitions=_names(revoked))
            await self._release(self._consumer, revoked)

    async def _release(self, consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> None:
        """Lets the workers of `tps` finish their transaction in flight (abandoned after the grace period), then
        commits what they applied. Called while the partitions are still owned: during the revoke callback, or
        before the consumer leaves its group."""
        partitions = [self._partitions.pop(tp) for tp in tps if tp in self._partitions]
        for partition in partitions:
            partition.revoke()
        tasks = [p.task for p in partitions if p.task is not None and not p.task.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.inbox_revoke_grace_s)
            for task in late:
                task.cancel()  # rolls its transaction back: the partition's next owner applies those events
            if late:
                await asyncio.wait(late, timeout=self.settings.inbox_revoke_grace_s)
        offsets = {tp: self._applied.pop(tp) for tp in tps if tp in self._applied}
        offsets = {tp: offset for tp, offset in offsets.items() if offset > self._committed.pop(tp, -1)}
        for tp in tps:
            self._committed.pop(tp, None)
        if not offsets:
            return
        try:
            await asyncio.wait_for(consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()}), 10)
        except (KafkaError, TimeoutError) as exc:
            # Not lost: the next owner gets those events again and its inbox skips them.
            log.info("offsets of released partitions not committed", service=self.service, error=repr(exc))

    async def _commit_loop(self, consumer: AIOKafkaConsumer) -> None:
        """Commits the offsets workers applied, coalescing the commits of all partitions into one request."""
        backoff = Backoff(first=0.2, most=5.0)
        failing_since: float | None = None
        while True:
            await self._commit_wanted.wait()
            # Gathers what the other partitions apply meanwhile into the same request: fewer commits, less CPU.
            await asyncio.sleep(COMMIT_GATHER_S)
            self._commit_wanted.clear()
            offsets = {
                tp: offset for tp, offset in self._applied.items() if tp in self._owned and offset > self._committed.get(tp, -1)
            }
            if not offsets:
                continue
            try:
                await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
            except (CommitFailedError, IllegalStateError):
                continue  # a rebalance is under way: the revoke callback commits what is still ours
            except KafkaError as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("offsets cannot be committed: broker unavailable", service=self.service, error=repr(exc))
                self._commit_wanted.set()
                await backoff.wait()
                continue
            for tp, offset in offsets.items():
                self._committed[tp] = max(self._committed.get(tp, -1), offset)
            if failing_since is not None:
                log.info("offsets committed again", service=self.service, after_s=round(time.monotonic() - failing_since, 1))
                failing_since = None
                backoff.reset()

    # --- applying a batch ---------------------------------------------------------------------------------

    async def apply(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Applies fetched records; returns once every event is applied, skipped or dead-lettered."""
        for tp, records in batches.items():
            started = time.perf_counter()
            deliveries: list[Delivery] = []
            for record in records:
                delivery = await self._decode(tp, record)
                if delivery is not None:
                    deliveries.append(delivery)
            if deliveries:
                await self._apply_batch(tp, deliveries)
            self.stats.batches += 1
            metrics.EVENT_HANDLING.labels(self.service).observe(time.perf_counter() - started)

    async def _decode(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> Delivery | None:
        type_name = event_type_of(record.headers)
        if type_name is not None:
            subscription = self.subscriptions.get(type_name)
            if subscription is None:
                self.stats.skipped += 1  # another consumer's business, or a type no version of ours knows
                if REGISTRY.get(type_name) is None:
                    self._count_unknown(type_name, record)
                return None
        try:
            envelope = from_kafka(record.key, record.value, record.headers)
        except MalformedEvent as exc:
            await self._dead_letter(tp, record, exc, attempts=1, type_name=type_name or "unknown")
            return None
        subscription = self.subscriptions.get(envelope.type.name)
        assert subscription is not None
        return Delivery(record, envelope, subscription)

    def _count_unknown(self, type_name: str, record: ConsumerRecord[bytes, bytes]) -> None:
        self.stats.unknown += 1
        known = type_name in self._unknown_types
        if not known and len(self._unknown_types) < UNKNOWN_TYPES_COUNTED:
            self._unknown_types.add(type_name)
            log.warning(
                "events of an unknown type are skipped",
                event_type=type_name[:200],
                origin=f"{record.topic}/{record.partition}/{record.offset}",
            )
            known = True
        metrics.EVENTS_UNKNOWN.labels(self.service, type_name[:200] if known else "other").inc()

    async def _apply_batch(self, tp: TopicPartition, deliveries: list[Delivery]) -> None:
        while True:
            try:
                await self._apply_together(deliveries)
                return
            except Exception as exc:  # which event, or the database itself? The probe tells.
                if await self._database_answers():
                    self.stats.fallbacks += 1
                    log.info("batch had a failing event; applying one by one", error=str(exc), size=len(deliveries))
                    break
                await self._wait_for_database(tp, exc)
        for delivery in deliveries:
            await self._apply_alone(tp, delivery)

    async def _apply_together(self, deliveries: list[Delivery]) -> None:
        """Applies the events in one transaction, with their inbox rows; those applied before are skipped."""
        async with self._transaction() as session:
            fresh = await self._record_in_inbox(session, deliveries)
            applied: list[Delivery] = []
            for delivery in deliveries:
                envelope = delivery.envelope
                if envelope.id not in fresh:
                    self._count_duplicate(delivery)
                    continue
                fresh.discard(envelope.id)  # a second copy within the batch is a duplicate too
                # A plain context manager binds the event's context, not a coroutine around the handler: this runs
                # once per event, and each coroutine layer adds to every one of the handler's suspensions.
                subscription = delivery.subscription
                with _Applying(self.service, delivery):
                    await subscription.handler(session, envelope)
                    for reaction in subscription.reactions:
                        await reaction(session, envelope)
                applied.append(delivery)
            await self.subscriptions.settled(session)
        self._count_applied(applied)

    async def _apply_alone(self, tp: TopicPartition, delivery: Delivery) -> None:
        envelope = delivery.envelope
        attempts = 0
        while True:
            try:
                await self._apply_together([delivery])
                return
            except EVENT_ERRORS as exc:
                metrics.EVENTS_FAILED.labels(self.service, envelope.type.name).inc()
                await self._dead_letter(tp, delivery.record, exc, attempts + 1, envelope.type.name, envelope.id)
                return
            except Exception as exc:  # whatever the class: the probe says whether the event or the database is at fault
                if not await self._database_answers():
                    await self._wait_for_database(tp, exc)
                    continue  # an outage costs the event no attempt
                attempts += 1
                metrics.EVENTS_FAILED.labels(self.service, envelope.type.name).inc()
                if attempts >= self.settings.inbox_max_attempts:
                    await self._dead_letter(tp, delivery.record, exc, attempts, envelope.type.name, envelope.id)
                    return
                log.warning(
                    "event failed, retrying",
                    event_id=envelope.id,
                    event_type=envelope.type.name,
                    attempt=attempts,
                    error=repr(exc),
                )
                await self._wait(tp, self.settings.inbox_retry_backoff_s * (2 ** (attempts - 1)))

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """A transaction applying events of one partition: reactions in it may leave work to the settlers, which the
        caller runs after the last event, before the commit (a failed transaction's work goes with its session)."""
        async with contextlib.AsyncExitStack() as stack:
            if self._one_writer is not None:
                await stack.enter_async_context(self._one_writer)
            session = await stack.enter_async_context(self.sessions())
            await stack.enter_async_context(session.begin())
            session.info[IN_BATCH] = True
            yield session

    async def _wait(self, tp: TopicPartition, seconds: float) -> None:
        partition = self._partitions.get(tp)
        if partition is None:
            raise _Abandoned
        await partition.wait(seconds)

    async def _database_answers(self) -> bool:
        return await database_answers(self.engine, self.settings.inbox_database_probe_timeout_s)

    async def _wait_for_database(self, tp: TopicPartition, error: BaseException) -> None:
        """Holds the partition until the database answers again; consumption of it pauses meanwhile."""
        if self._database_down_since is None:
            self._database_down_since = time.monotonic()
            log.warning("database does not answer: consumption waits for it, nothing is dead-lettered", error=str(error)[:300])
        backoff = Backoff(first=0.2, most=5.0)
        while True:
            await self._wait(tp, backoff.next_delay())
            if await self._database_answers():
                break
        if self._database_down_since is not None:
            log.info("database answers again", down_for_s=round(time.monotonic() - self._database_down_since, 1))
            self._database_down_since = None

    async def _record_in_inbox(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> set[str]:
        """Adds the inbox rows of events not applied before and returns their ids: the events to apply now.

        One statement that skips known ids through the primary key: no read-then-write race between
        consumers, and no plan whose cost grows with the size of the inbox.
        """
        received_at = datetime.now(UTC)
        types: dict[str, str] = {}
        for delivery in deliveries:
            envelope = delivery.envelope
            types.setdefault(envelope.id, envelope.type.name)
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            # The batch's ids and types as two arrays: two parameters instead of four per row to encode and bind.
            result = await session.execute(
                self._insert_new_postgresql,
                {"consumer": self.service, "ids": list(types), "types": list(types.values()), "at": received_at},
            )
            return set(result.scalar_one() or ())
        rows = [
            {"consumer": self.service, "event_id": event_id, "event_type": event_type, "received_at": received_at}
            for event_id, event_type in types.items()
        ]
        result = await session.execute(self._insert_new(dialect), rows)
        return set(result.scalars())

    @functools.cached_property
    def _insert_new_postgresql(self) -> sa.TextClause:
        inbox = self.inbox
        # The new ids come back as one array in one row: the driver decodes it at once, where a row per event would
        # each go through the result's machinery.
        return sa.text(
            f"WITH fresh AS (INSERT INTO {inbox.name} (consumer, event_id, event_type, received_at) "
            "SELECT :consumer, batch.event_id, batch.event_type, :at "
            "FROM unnest(CAST(:ids AS varchar[]), CAST(:types AS varchar[])) AS batch(event_id, event_type) "
            "ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id) "
            "SELECT array_agg(event_id) FROM fresh"
        ).bindparams(sa.bindparam("at", type_=inbox.c.received_at.type))

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
        tp: TopicPartition,
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
        # Wait for the ack, however long the broker is away: the offset moves on only once the dead letter is stored.
        backoff = Backoff(first=0.2, most=5.0)
        while True:
            try:
                await self._producer.send_and_wait(self._dlq_topic, value=record.value, key=record.key, headers=headers)
                break
            except KafkaError as exc:
                if self._broker_down_since is None:
                    self._broker_down_since = time.monotonic()
                    log.warning("dead letter cannot be stored: broker unavailable, will retry", error=repr(exc))
                await self._wait(tp, backoff.next_delay())
        if self._broker_down_since is not None:
            log.info("dead letters stored again", after_s=round(time.monotonic() - self._broker_down_since, 1))
            self._broker_down_since = None
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


def _names(tps: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in tps)
