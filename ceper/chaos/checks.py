"""What a chaos run checks afterwards, and how it reads it: the topics, the services' databases, their APIs.

`Probe` reads (the topics from the beginning, the inbox, outbox, reservation and webhook tables); the
verdicts are pure functions of what it read, so each rule is unit-tested on plain data.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import kafka
from shared.db import BackboneTables, create_engine
from shared.dlq import DeadLetter, list_dead_letters
from shared.settings import Settings
from shared.topics import partitions_of, read_to_end

OPEN_STATES = ("hold", "confirmed")
HOLDING_STATES = ("hold", "confirmed", "consumed")  # states whose units occupy their week


# --- reading ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    event_id: str | None
    event_type: str | None

    @property
    def origin(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


@dataclass
class Quiet:
    lag: dict[str, int]
    unsent: dict[str, int]
    pending_webhooks: int
    end_offsets: int
    unreadable: str | None = None  # why the state could not be read (the broker or a database still away)

    @property
    def settled(self) -> bool:
        if self.unreadable is not None:
            return False
        return not any(self.lag.values()) and not any(self.unsent.values()) and self.pending_webhooks == 0

    def describe(self) -> str:
        if self.unreadable is not None:
            return f"unreadable: {self.unreadable}"
        parts = [f"{s} lag {n}" for s, n in self.lag.items() if n]
        parts += [f"{s} outbox {n} unsent" for s, n in self.unsent.items() if n]
        if self.pending_webhooks:
            parts.append(f"{self.pending_webhooks} webhooks pending")
        return ", ".join(parts) or "quiet"


class Probe:
    """Long-lived readers of one platform: engines on the three databases, an admin client, a group-less consumer."""

    def __init__(
        self,
        settings: Settings,
        topics_of: Mapping[str, Sequence[str]],
        backbones: Mapping[str, BackboneTables],
        webhook_deliveries: sa.Table,
    ) -> None:
        self.settings = settings
        self.topics_of = {service: [settings.topic(t) for t in topics] for service, topics in topics_of.items()}
        self.backbones = backbones
        self.webhook_deliveries = webhook_deliveries  # orders' queue of buyer webhooks
        self.engines: dict[str, AsyncEngine] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: dict[str, list[TopicPartition]] = {}

    async def __aenter__(self) -> Probe:
        for service in self.backbones:
            self.engines[service] = create_engine(self.settings.database_url(service))
        bootstrap = self.settings.kafka_bootstrap_servers
        self._admin = kafka.admin(bootstrap, "ceper-chaos")
        self._consumer = kafka.consumer(self.settings, group_id=None, client_id="ceper-chaos")
        await self._admin.start()
        await self._consumer.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()
        for engine in self.engines.values():
            await engine.dispose()

    async def _partitions_of(self, service: str) -> list[TopicPartition]:
        if service not in self._partitions:
            found = []
            for topic in self.topics_of[service]:
                found += [
                    TopicPartition(topic, p) for p in sorted(await partitions_of(self.settings.kafka_bootstrap_servers, topic))
                ]
            self._partitions[service] = found
        return self._partitions[service]

    async def lag(self, service: str) -> tuple[int, int]:
        """Records on the service's topics its consumer group has not committed yet, and their end offsets' sum."""
        assert self._admin is not None and self._consumer is not None
        partitions = await self._partitions_of(service)
        if not partitions:
            return 0, 0
        committed = await self._admin.list_consumer_group_offsets(self.settings.consumer_group(service))
        ends = await self._consumer.end_offsets(partitions)
        lag = sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in partitions)
        return lag, sum(ends.values())

    async def _scalar(self, service: str, statement: Any) -> int:
        async with self.engines[service].connect() as connection:
            return int((await connection.execute(statement)).scalar() or 0)

    async def quiet(self) -> Quiet:
        lag: dict[str, int] = {}
        unsent: dict[str, int] = {}
        ends = 0
        for service, backbone in self.backbones.items():
            lag[service], end = await self.lag(service)
            ends += end
            outbox = backbone.outbox
            unsent[service] = await self._scalar(service, sa.select(sa.func.count()).select_from(outbox))
        deliveries = self.webhook_deliveries
        pending = await self._scalar("orders", sa.select(sa.func.count()).where(deliveries.c.status == "pending"))
        return Quiet(lag, unsent, pending, ends)

    async def rows(self, service: str, statement: Any) -> list[Any]:
        async with self.engines[service].connect() as connection:
            return list((await connection.execute(statement)).all())

    async def inbox(self, service: str) -> tuple[set[str], int]:
        """The event ids the service recorded as applied, and how many ids it recorded more than once."""
        inbox = self.backbones[service].inbox
        rows = await self.rows(
            service, sa.select(inbox.c.event_id, sa.func.count()).where(inbox.c.consumer == service).group_by(inbox.c.event_id)
        )
        return {row[0] for row in rows}, sum(1 for row in rows if row[1] > 1)

    async def topic_records(self, topics: Iterable[str]) -> list[TopicRecord]:
        records: list[TopicRecord] = []
        async for batch in read_to_end(self.settings, *topics):
            for record in batch:
                headers = dict(record.headers)
                records.append(
                    TopicRecord(
                        record.topic,
                        record.partition,
                        record.offset,
                        headers["ce_id"].decode(errors="replace") if "ce_id" in headers else None,
                        headers["ce_type"].decode(errors="replace") if "ce_type" in headers else None,
                    )
                )
        return records

    async def dead_letters(self, service: str) -> list[DeadLetter]:
        return await list_dead_letters(self.settings, service, include_redriven=True)


async def wait_quiet(probe: Probe, timeout: float, supervise: Callable[[], None]) -> tuple[Quiet, float | None]:
    """Waits until no outbox holds an unsent event, no consumer group lags and no webhook is pending, twice in a
    row with no new event in between; returns the last state and how long it took (None: not within `timeout`)."""
    started = time.monotonic()
    previous: Quiet | None = None
    while True:
        supervise()
        try:
            state = await probe.quiet()
        except Exception as exc:  # the broker or a database is still coming back: ask again
            state = Quiet({}, {}, 0, -1, unreadable=f"{type(exc).__name__}: {exc}"[:200])
        if state.settled and previous is not None and previous.settled and previous.end_offsets == state.end_offsets:
            return state, time.monotonic() - started
        if time.monotonic() - started > timeout:
            return state, None
        previous = state
        await asyncio.sleep(2)


# --- verdicts -----------------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """Counts of what went wrong, by check, and a line for each case (the report prints the first few)."""

    counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, list[str]] = field(default_factory=dict)

    def add(self, check: str, detail: str) -> None:
        self.counts[check] = self.counts.get(check, 0) + 1
        self.details.setdefault(check, []).append(detail)

    def zero(self, *checks: str) -> None:
        for check in checks:
            self.counts.setdefault(check, 0)


def lost_events(
    records: Sequence[TopicRecord],
    poison: set[tuple[str, int, int]],
    handled: Mapping[str, Callable[[TopicRecord], bool]],
    applied: Mapping[str, set[str]],
) -> dict[str, list[TopicRecord]]:
    """Per consuming service: events on the topics that it handles and that have no inbox row, i.e. were never
    applied (a poison message is not an event: it must be dead-lettered instead)."""
    lost: dict[str, list[TopicRecord]] = {}
    for service, handles in handled.items():
        seen: set[str] = set()
        for record in records:
            if record.origin in poison or record.event_id is None or record.event_id in seen or not handles(record):
                continue
            seen.add(record.event_id)
            if record.event_id not in applied.get(service, set()):
                lost.setdefault(service, []).append(record)
    return lost


def published_twice(records: Sequence[TopicRecord]) -> int:
    """Events on a topic under more than one offset (a relay resent them); the inbox makes that harmless."""
    return sum(1 for count in Counter((r.topic, r.event_id) for r in records if r.event_id).values() if count > 1)


def reserved_twice(reservations: Sequence[Mapping[str, Any]]) -> list[str]:
    """Allocations capacity holds more than one open reservation for: a plan applied twice."""
    counts = Counter(r["allocation_id"] for r in reservations if r["allocation_id"] and r["state"] in OPEN_STATES)
    return sorted(allocation for allocation, count in counts.items() if count > 1)


def lots_counted_twice(consumptions: Sequence[Mapping[str, Any]], lot_quantities: Mapping[str, int]) -> list[str]:
    """Lots whose units capacity counted against reservations more than once."""
    counted: Counter[str] = Counter()
    for row in consumptions:
        counted[row["lot_code"]] += row["quantity"]
    return sorted(
        f"{lot}: {units} units counted of {lot_quantities[lot]}"
        for lot, units in counted.items()
        if lot in lot_quantities and units > lot_quantities[lot]
    )


def overbooked(
    reservations: Sequence[Mapping[str, Any]], ledger: Sequence[Mapping[str, Any]], capacity: Mapping[tuple[str, str], int]
) -> tuple[list[str], list[str]]:
    """Foundry-weeks whose reservations exceed capacity (made units aside: they cannot be taken back), and
    foundry-weeks whose ledger row disagrees with their reservations."""
    holding: Counter[tuple[str, str]] = Counter()
    made: Counter[tuple[str, str]] = Counter()
    for r in reservations:
        if r["state"] in HOLDING_STATES:
            cell = (r["foundry_code"], r["week"])
            holding[cell] += r["quantity"]
            made[cell] += r["consumed_quantity"]
    over = []
    for cell, units in sorted(holding.items()):
        limit = max(capacity.get(cell, 0), made[cell])
        if units > limit:
            over.append(f"{cell[0]} {cell[1]}: {units} reserved, capacity {capacity.get(cell, 0)}")
    booked = {(row["foundry_code"], row["week"]): row["reserved"] for row in ledger}
    mismatched = [
        f"{cell[0]} {cell[1]}: ledger {booked.get(cell, 0)}, reservations {holding.get(cell, 0)}"
        for cell in sorted(set(booked) | set(holding))
        if booked.get(cell, 0) != holding.get(cell, 0)
    ]
    return over, mismatched


def order_problems(order: Mapping[str, Any], reservations: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """What is wrong with one order once everything settled: (stuck, quantities off, diverged from capacity).

    Stuck: an open order that is not where its events lead: never planned, `planned` with every allocation
    reserved, allocations capacity never answered, or delivered in full but not fulfilled. Quantities: per line,
    the plan covers exactly what is ordered plus what must be made again, less the units at risk; the stages
    never exceed the one before. Diverged: orders' reserved allocations against capacity's reservations.
    """
    name = f"{order['po_number']} ({order['id']}, {order['status']})"
    stuck: list[str] = []
    off: list[str] = []
    diverged: list[str] = []
    status = order["status"]
    plan = order.get("plan")
    allocations = plan["allocations"] if plan else []
    open_order = status in ("received", "planned", "accepted", "needs_review")
    if open_order:
        unanswered = [a for a in allocations if a["state"] != "reserved"]
        if plan is None:
            stuck.append(f"{name}: never planned")
        elif status == "planned" and not unanswered:
            stuck.append(f"{name}: left planned with all {len(allocations)} allocations reserved")
        elif unanswered:
            stuck.append(
                f"{name}: {len(unanswered)} of {len(allocations)} allocations never confirmed (e.g. {unanswered[0]['allocation_id']})"
            )
        elif status == "received":
            stuck.append(f"{name}: still received")
    delivered_in_full = all(line["quantities"]["delivered"] >= line["quantity"] for line in order["lines"])
    if delivered_in_full and status != "fulfilled":
        stuck.append(f"{name}: every unit delivered, not fulfilled")
    for line in order["lines"]:
        q = line["quantities"]
        at = f"{name} line {line['line_no']}"
        if open_order and plan is not None:
            late = line["risk"]["late_units"] if line["risk"]["at_risk"] else 0
            expected = line["quantity"] + q["failed"] + q["rejected"] - late
            if q["planned"] != expected:
                off.append(
                    f"{at}: planned {q['planned']}, expected {expected} "
                    f"(ordered {line['quantity']} + failed {q['failed']} + refused {q['rejected']} - at risk {late})"
                )
        for smaller, larger in (("reserved", "planned"), ("shipped", "passed"), ("delivered", "shipped")):
            if q[smaller] > q[larger]:
                off.append(f"{at}: {smaller} {q[smaller]} > {larger} {q[larger]}")
        if q["passed"] + q["failed"] > q["produced"]:
            off.append(f"{at}: passed {q['passed']} + failed {q['failed']} > produced {q['produced']}")
        if q["delivered"] + q["rejected"] > q["shipped"]:
            off.append(f"{at}: delivered {q['delivered']} + refused {q['rejected']} > shipped {q['shipped']}")
        if q["delivered"] > line["quantity"]:
            off.append(f"{at}: delivered {q['delivered']} > ordered {line['quantity']}")
    # What capacity holds per allocation: made units (consumed) stay with it, so a reserved allocation is held
    # exactly once, made and unmade units together.
    held: dict[str, list[Mapping[str, Any]]] = {}
    for r in reservations:
        if r["allocation_id"] and r["state"] in HOLDING_STATES:
            held.setdefault(r["allocation_id"], []).append(r)
    if open_order:
        in_force = {a["allocation_id"] for a in allocations}
        for allocation in allocations:
            holding = held.get(allocation["allocation_id"], [])
            units = sum(r["quantity"] for r in holding)
            if allocation["state"] == "reserved" and units != allocation["quantity"]:
                what = " + ".join(f"{r['quantity']} {r['state']}" for r in holding) or "nothing"
                diverged.append(
                    f"{name}: {allocation['allocation_id']} reserved for {allocation['quantity']} in orders, capacity holds {what}"
                )
        for allocation_id, holding in sorted(held.items()):
            unmade = sum(r["quantity"] for r in holding if r["state"] in OPEN_STATES)
            if unmade and allocation_id not in in_force:
                diverged.append(f"{name}: capacity still holds {unmade} for {allocation_id}, not in the plan in force")
    elif status in ("cancelled", "rejected"):
        still = [r for r in reservations if r["state"] in OPEN_STATES]
        if still:
            diverged.append(
                f"{name}: capacity still holds {sum(r['quantity'] for r in still)} units in {len(still)} reservations"
            )
    return stuck, off, diverged


@dataclass(frozen=True)
class Delivery:
    """A webhook message as orders' delivery log has it."""

    id: str
    event_type: str
    status: str
    attempts: int


def webhook_problems(receipts: Sequence[Any], deliveries: Sequence[Delivery]) -> dict[str, list[str]]:
    """doubled: a message the receiver accepted more than once. lost: one orders logs as delivered that the
    receiver never accepted, or one still pending or given up. unsigned: a message whose signature did not verify."""
    accepted = Counter(r.webhook_id for r in receipts if 200 <= r.status < 300)
    problems: dict[str, list[str]] = {"webhooks doubled": [], "webhooks lost": [], "webhooks unsigned": []}
    for delivery in deliveries:
        times = accepted.get(delivery.id, 0)
        if times > 1:
            problems["webhooks doubled"].append(f"{delivery.id} ({delivery.event_type}) received {times} times")
        if delivery.status != "delivered":
            problems["webhooks lost"].append(
                f"{delivery.id} ({delivery.event_type}) {delivery.status} after {delivery.attempts} attempts"
            )
        elif times == 0:
            problems["webhooks lost"].append(f"{delivery.id} ({delivery.event_type}) logged delivered, never received")
    known = {d.id for d in deliveries}
    for webhook_id, times in sorted(accepted.items()):
        if webhook_id not in known:
            problems["webhooks doubled"].append(f"{webhook_id} received {times} times, not in the delivery log")
    problems["webhooks unsigned"] = sorted({f"{r.webhook_id} ({r.event_type})" for r in receipts if not r.signed})
    return problems


def dead_letter_problems(
    letters: Mapping[str, Sequence[DeadLetter]], expected: Mapping[str, Mapping[tuple[str, int, int], str]]
) -> tuple[list[str], list[str], int]:
    """(unexpected: dead letters of anything but the poison we injected, missing: poison a consumer of it did not
    dead-letter, repeated: poison dead-lettered more than once by the same service)."""
    unexpected: list[str] = []
    missing: list[str] = []
    repeated = 0
    for service, wanted in expected.items():
        found = Counter(
            (letter.origin_topic, letter.origin_partition, letter.origin_offset) for letter in letters.get(service, ())
        )
        for letter in letters.get(service, ()):
            origin = (letter.origin_topic, letter.origin_partition, letter.origin_offset)
            if origin not in wanted:
                unexpected.append(
                    f"{service}: {letter.event_type or 'untyped'} {letter.event_id or ''} from "
                    f"{'/'.join(map(str, origin))}: {letter.error_type}: {letter.error[:200]}"
                )
        for origin, what in wanted.items():
            if origin not in found:
                missing.append(f"{service}: poison '{what}' at {'/'.join(map(str, origin))}")
            elif found[origin] > 1:
                repeated += found[origin] - 1
    return unexpected, missing, repeated
