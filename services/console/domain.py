"""The console's own model, pure: who is looking (a person with a role and a tenant) and what they may see,
the live feed of platform events, and the figures pages are made of (units by stage, the plan as member ×
week, what a replan moved, pass rates, utilisation)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from shared.weeks import add_weeks, iso_week

# --- people -----------------------------------------------------------------------------------------------------

ADMIN, PLANNER, QA_OFFICER, LAB, FOUNDRY, BUYER = "admin", "planner", "qa_officer", "lab", "foundry", "buyer"
STAFF = frozenset({ADMIN, PLANNER, QA_OFFICER})
# NPWP and owners' names are personal data: only these roles see them, on pages and in the live feed.
SEES_IDENTITIES = frozenset({ADMIN, PLANNER})
IDENTITY_FIELDS = ("owner", "npwp")

# What each role may do in the console: the same roles as the service routes the action calls allow (a unit
# test holds the two together), and the services check again with the person's token. Buyers use the API from
# their own systems, not the console: no page is theirs.
ACTIONS: dict[str, frozenset[str]] = {
    "orders.view": frozenset({ADMIN, PLANNER, QA_OFFICER}),
    "orders.decide": frozenset({ADMIN, PLANNER}),  # replan, reject
    "orders.what_if": frozenset({ADMIN, PLANNER}),  # ask the planner what would become of the open orders
    "shipments.view": frozenset({ADMIN, PLANNER, QA_OFFICER}),
    "shipments.manage": frozenset({ADMIN, PLANNER}),  # surat jalan, dispatch, BAST
    "members.view": frozenset({ADMIN, PLANNER, QA_OFFICER, FOUNDRY}),
    "capacity.report": frozenset({ADMIN, PLANNER, FOUNDRY}),
    "quality.view": frozenset({ADMIN, PLANNER, QA_OFFICER, LAB, FOUNDRY}),  # lots awaiting results
    "quality.standing": frozenset({ADMIN, PLANNER, QA_OFFICER, FOUNDRY}),  # certificates and quality status
    "quality.record": frozenset({ADMIN, QA_OFFICER, LAB}),
    "quality.override": frozenset({QA_OFFICER}),  # quality lets only QA officers pin or release a status
    "items.view": frozenset({ADMIN, PLANNER, QA_OFFICER, LAB, FOUNDRY}),  # the item catalogue, as quality lets everyone read it
    "items.write": frozenset({ADMIN, QA_OFFICER}),  # create an item, publish a version, retire one
    "buyers.view": frozenset({ADMIN, PLANNER, QA_OFFICER}),  # buyers and their delivery sites, as orders lets staff read them
    "buyers.write": frozenset({ADMIN}),  # add and change buyers and delivery sites
    "operations.view": frozenset({ADMIN}),
    "dashboard.view": frozenset({ADMIN, PLANNER, QA_OFFICER}),
}
CONSOLE_ROLES: frozenset[str] = frozenset().union(*ACTIONS.values())


@dataclass(frozen=True)
class Person:
    """Whoever is using the console: a role, and the buyer or foundry the role is bound to (if any)."""

    subject: str
    name: str
    role: str
    tenant: str | None = None
    until: float | None = None  # when the sign-in's token expires (epoch seconds)

    def may(self, action: str) -> bool:
        return self.role in ACTIONS.get(action, frozenset())

    @property
    def sees_identities(self) -> bool:
        return self.role in SEES_IDENTITIES

    def owns_foundry(self, code: str | None) -> bool:
        """A foundry sees its own records only; staff see every member's."""
        return self.role != FOUNDRY or (code is not None and code == self.tenant)

    def owns_order(self, buyer_code: str | None) -> bool:
        return self.role != BUYER or (buyer_code is not None and buyer_code == self.tenant)

    @property
    def buyer_filter(self) -> str | None:
        return self.tenant if self.role == BUYER else None

    @property
    def foundry_filter(self) -> str | None:
        return self.tenant if self.role == FOUNDRY else None


def redact_member(record: Mapping[str, Any], person: Person) -> dict[str, Any]:
    """A member's record as the person may see it: without NPWP and owner unless the role sees identities."""
    if person.sees_identities:
        return dict(record)
    return {k: v for k, v in record.items() if k not in IDENTITY_FIELDS}


# --- the live feed -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    topic: str
    data: dict[str, Any]

    @property
    def service(self) -> str:
        return self.source.rsplit("/", 1)[-1]

    def as_json(self) -> dict[str, Any]:
        """The envelope without the data: what may leave the console whoever asks."""
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "topic": self.topic,
        }


def view_of(item: FeedItem, person: Person) -> FeedItem | None:
    """The event as the person may see it, or None when it is none of their business.

    Staff see every event; a foundry sees its own capacity, lots, certificates and the allocations made to it;
    a laboratory the lots it tests; buyers, who do not use the console, nothing. NPWP and owners' names go only
    to admin and planner.
    """
    data = item.data
    if person.role in STAFF:
        pass
    elif person.role == FOUNDRY:
        if item.service in ("capacity", "quality"):
            if data.get("foundry_code") != person.tenant:
                return None
        elif item.service == "orders":
            own = [a for a in data.get("allocations") or data.get("items") or [] if a.get("foundry_code") == person.tenant]
            if not own:
                return None
            key = "allocations" if "allocations" in data else "items"
            data = {k: v for k, v in data.items() if k not in ("allocations", "items")} | {key: own}
        else:
            return None
    elif person.role == LAB:
        if not item.type.startswith("ceper.quality.lot_"):
            return None
    else:
        return None
    if not person.sees_identities:
        data = without_identities(data)
    return item if data == item.data else replace(item, data=data)


def without_identities(value: Any) -> Any:
    """The value with NPWP and owners' names removed at any depth (a register entry may sit inside another)."""
    if isinstance(value, Mapping):
        return {k: without_identities(v) for k, v in value.items() if k not in IDENTITY_FIELDS}
    if isinstance(value, list):
        return [without_identities(v) for v in value]
    return value


def channels(item: FeedItem) -> set[str]:
    """The live channels an event moves: open pages listen to theirs and refresh what it changed."""
    data = item.data
    out = {"feed", "dashboard"}
    if order_id := data.get("order_id"):
        out.add(f"order-{order_id}")
    if foundry := data.get("foundry_code"):
        out.add(f"foundry-{foundry}")
    for entry in data.get("allocations") or data.get("items") or []:
        if code := entry.get("foundry_code"):
            out.add(f"foundry-{code}")
    if item.type.startswith("ceper.quality."):
        out.add("quality")
    if item.type.startswith("ceper.orders.shipment_"):
        out.add("shipments")
    if item.service == "capacity":
        out.add("members")
    return out


class EventFeed:
    """The last `size` events, and the listeners waiting for the next ones (slow ones drop, never block)."""

    def __init__(self, size: int = 200) -> None:
        self._items: deque[FeedItem] = deque(maxlen=size)
        self._listeners: set[asyncio.Queue[FeedItem]] = set()

    def add(self, item: FeedItem) -> None:
        self._items.append(item)
        for queue in list(self._listeners):
            if queue.full():
                continue
            queue.put_nowait(item)

    def recent(self, limit: int = 50) -> list[FeedItem]:
        return list(self._items)[-limit:][::-1]

    def listen(self) -> asyncio.Queue[FeedItem]:
        queue: asyncio.Queue[FeedItem] = asyncio.Queue(maxsize=100)
        self._listeners.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[FeedItem]) -> None:
        self._listeners.discard(queue)


# --- actions: one request each, whatever the double clicks ------------------------------------------------------


class ActionLedger:
    """Remembers the outcome of each action by its idempotency key for a while, so a second submit of the same
    form (a double click, a reload) answers with the first outcome instead of acting again."""

    def __init__(self, ttl_s: float = 3600.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._done: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def outcome(self, key: str, now: float | None = None) -> Any | None:
        now = time.monotonic() if now is None else now
        found = self._done.get(key)
        if found is None or now - found[0] > self.ttl_s:
            return None
        return found[1]

    def record(self, key: str, outcome: Any, now: float | None = None) -> None:
        self._done[key] = (time.monotonic() if now is None else now, outcome)
        self._done.move_to_end(key)
        while len(self._done) > self.size:
            old, _ = self._done.popitem(last=False)
            self._locks.pop(old, None)
        self._locks.pop(key, None)


# --- weeks ---------------------------------------------------------------------------------------------------------


def week_spans(weeks: Iterable[tuple[str, int]]) -> list[tuple[str, str, int]]:
    """Consecutive weeks with the same figure as one span: [(first, last, figure)], in week order."""
    spans: list[tuple[str, str, int]] = []
    for week, figure in sorted(weeks):
        if spans and spans[-1][2] == figure and add_weeks(spans[-1][1], 1) == week:
            spans[-1] = (spans[-1][0], week, figure)
        else:
            spans.append((week, week, figure))
    return spans


# --- orders ----------------------------------------------------------------------------------------------------------

STAGES = ("planned", "reserved", "produced", "passed", "shipped", "delivered")
OPEN_ORDER_STATUSES = ("received", "planned", "accepted", "needs_review")


def units_by_stage(lines: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    totals = dict.fromkeys(STAGES, 0)
    for line in lines:
        for stage in STAGES:
            totals[stage] += int(line["quantities"].get(stage, 0))
    return totals


def open_value(order: Mapping[str, Any]) -> int:
    """Rupiah of what is still to be delivered on an order: each line's undelivered units at its price."""
    return sum(max(0, line["quantity"] - line["quantities"]["delivered"]) * line["unit_price"] for line in order["lines"])


@dataclass(frozen=True)
class PlanCell:
    quantity: int
    state: str  # planned, reserved, rejected, or mixed when several allocations share the cell


@dataclass(frozen=True)
class PlanMatrix:
    weeks: list[str]
    rows: list[tuple[str, list[PlanCell | None], int]]  # foundry, a cell per week, the foundry's total
    week_totals: list[int]
    total: int


def plan_matrix(allocations: Iterable[Mapping[str, Any]]) -> PlanMatrix:
    """The plan in force as a member × week table."""
    cells: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for a in allocations:
        cells[(a["foundry_code"], a["week"])].append(a)
    if not cells:
        return PlanMatrix([], [], [], 0)
    weeks = sorted({w for _, w in cells})
    foundries = sorted({f for f, _ in cells})
    rows = []
    for foundry in foundries:
        row: list[PlanCell | None] = []
        for week in weeks:
            found = cells.get((foundry, week))
            if not found:
                row.append(None)
                continue
            states = {a["state"] for a in found}
            row.append(PlanCell(sum(a["quantity"] for a in found), states.pop() if len(states) == 1 else "mixed"))
        rows.append((foundry, row, sum(c.quantity for c in row if c)))
    week_totals = [sum(cell.quantity for _, row, _ in rows if (cell := row[i]) is not None) for i in range(len(weeks))]
    return PlanMatrix(weeks, rows, week_totals, sum(week_totals))


@dataclass(frozen=True)
class PlanMove:
    foundry_code: str
    before: int
    after: int

    @property
    def change(self) -> int:
        return self.after - self.before


def plan_moves(before: Mapping[str, int], after: Mapping[str, int]) -> list[PlanMove]:
    """What a new plan version moved: units per member before and after, the biggest changes first."""
    moves = [PlanMove(f, before.get(f, 0), after.get(f, 0)) for f in set(before) | set(after)]
    return sorted((m for m in moves if m.change), key=lambda m: (-abs(m.change), m.foundry_code))


# --- quality ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeekRate:
    week: str
    passed: int
    failed: int

    @property
    def decided(self) -> int:
        return self.passed + self.failed

    @property
    def rate(self) -> float | None:
        return self.passed / self.decided if self.decided else None


def pass_rate_by_week(lots: Iterable[Mapping[str, Any]], today: date, weeks: int = 13) -> list[WeekRate]:
    """Decided lots per ISO week for the last `weeks` weeks (this one included), oldest first."""
    labels = [add_weeks(iso_week(today), -n) for n in range(weeks - 1, -1, -1)]
    counts: dict[str, list[int]] = {w: [0, 0] for w in labels}
    for lot in lots:
        decided = lot.get("decided_at")
        if not decided or lot.get("status") not in ("passed", "failed"):
            continue
        moment = decided if isinstance(decided, datetime) else datetime.fromisoformat(decided)
        week = iso_week(moment.date())
        if week in counts:
            counts[week][0 if lot["status"] == "passed" else 1] += 1
    return [WeekRate(w, *counts[w]) for w in labels]


def overall_rate(rates: Iterable[WeekRate]) -> float | None:
    passed = failed = 0
    for r in rates:
        passed += r.passed
        failed += r.failed
    return passed / (passed + failed) if passed + failed else None


# What a QA officer states about an item; every version repeats all of it, so a version changed what differs.
ITEM_TERMS = ("name_id", "name_en", "product_family", "unit", "min_lot", "required_certificates", "min_tkdn_percent", "sampling")


@dataclass(frozen=True)
class TermChange:
    term: str
    before: Any
    after: Any


@dataclass(frozen=True)
class ItemVersion:
    version: int
    published_at: str
    retired: bool
    changes: tuple[TermChange, ...]  # none for the first version and for a retirement


def item_history(versions: Iterable[Mapping[str, Any]]) -> list[ItemVersion]:
    """An item's versions, newest first, each with the terms it changed from the version before it."""
    history: list[ItemVersion] = []
    before: Mapping[str, Any] | None = None
    for item in sorted(versions, key=lambda v: v["version"]):
        changes = (
            ()
            if before is None
            else tuple(TermChange(term, before[term], item[term]) for term in ITEM_TERMS if before[term] != item[term])
        )
        history.append(ItemVersion(item["version"], item["published_at"], item["retired"], changes))
        before = item
    return history[::-1]


# --- capacity --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatRow:
    foundry_code: str
    name: str
    utilisation: list[float | None]  # reserved ÷ capacity per week; None when the member has no capacity that week
    reserved: list[int] = field(default_factory=list)
    capacity: list[int] = field(default_factory=list)


def heat_rows(availability: Mapping[str, Any], limit: int | None = None) -> list[HeatRow]:
    """Members × weeks utilisation from capacity's availability document; the busiest members first."""
    rows = []
    for f in availability.get("foundries", []):
        utilisation = [(r / c) if c else None for c, r in zip(f["capacity"], f["reserved"], strict=False)]
        if not any(c for c in f["capacity"]):
            continue
        rows.append(HeatRow(f["foundry_code"], f["name"], utilisation, list(f["reserved"]), list(f["capacity"])))
    rows.sort(key=lambda r: (-sum(r.reserved), r.foundry_code))
    return rows[:limit] if limit else rows


# --- reference data -------------------------------------------------------------------------------------------


class Reference:
    """Reference data that seldom changes (the item catalogue), kept a few minutes per console replica so a page
    does not ask for it every time; a failed read is not kept."""

    def __init__(self, ttl_s: float = 300.0) -> None:
        self._ttl_s = ttl_s
        self._kept: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str, read: Callable[[], Awaitable[Any]]) -> Any:
        kept = self._kept.get(key)
        if kept is not None and time.monotonic() - kept[0] < self._ttl_s:
            return kept[1]
        value = await read()
        self._kept[key] = (time.monotonic(), value)
        return value


class UntilNextEvent:
    """Figures composed from the services (the dashboard's), kept until the next platform event or `ttl_s`,
    whichever comes first. Every event moves the dashboard, and the console follows every event, so what is kept
    is what the services would answer now; a read an event overtook is not kept, and the time limit covers events
    missed while the broker was away. Per replica: each replica follows every event itself."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self._ttl_s = ttl_s
        self._generation = 0
        self._kept: dict[Any, tuple[float, Any]] = {}

    def changed(self) -> None:
        self._generation += 1
        self._kept.clear()

    async def get(self, key: Any, read: Callable[[], Awaitable[Any]], *, following: bool = True) -> Any:
        kept = self._kept.get(key)
        if following and kept is not None and time.monotonic() - kept[0] < self._ttl_s:
            return kept[1]
        generation, started = self._generation, time.monotonic()
        value = await read()
        if following and generation == self._generation:
            self._kept[key] = (started, value)
        return value


# --- what-if ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhatIfOrder:
    """An open order in a what-if answer: its lines as they would be, and its plan beside the plan in force."""

    order_id: str
    po_number: str
    buyer_code: str
    status: str
    replanned: bool
    reason: str | None
    lines: list[dict[str, Any]]
    would_be: PlanMatrix
    in_force: PlanMatrix | None

    @property
    def at_risk(self) -> bool:
        return any(line["at_risk"] for line in self.lines)


@dataclass(frozen=True)
class WhatIfAnswer:
    first_week: str
    last_week: str
    touched: list[WhatIfOrder]  # replanned or at risk, the orders a planner has to look at
    untouched: int
    new_orders: list[dict[str, Any]]
    utilisation: list[dict[str, Any]]

    @property
    def lines_at_risk(self) -> int:
        return sum(1 for order in self.touched for line in order.lines if line["at_risk"])


def plan_of_lines(lines: Iterable[Mapping[str, Any]]) -> PlanMatrix:
    return plan_matrix(a for line in lines for a in line["plan"]["allocations"])


def what_if_answer(answer: Mapping[str, Any], in_force: Mapping[str, Iterable[Mapping[str, Any]]]) -> WhatIfAnswer:
    """Orders' what-if answer as the page shows it: touched orders first (replanned, then at risk), each with the
    plan it would have beside the plan in force (`in_force`: allocations by order id); members by how much their
    utilisation would change."""
    touched = [
        WhatIfOrder(
            order_id=o["order_id"],
            po_number=o["po_number"],
            buyer_code=o["buyer_code"],
            status=o["status"],
            replanned=o["replanned"],
            reason=o.get("reason"),
            lines=list(o["lines"]),
            would_be=plan_of_lines(o["lines"]),
            in_force=plan_matrix(in_force[o["order_id"]]) if o["order_id"] in in_force else None,
        )
        for o in answer["orders"]
        if o["replanned"] or any(line["at_risk"] for line in o["lines"])
    ]
    touched.sort(key=lambda o: (not o.replanned, not o.at_risk, o.po_number))
    new_orders = [{**n, "matrix": plan_of_lines(n["lines"])} for n in answer["new_orders"]]

    def change(u: Mapping[str, Any]) -> float:
        return abs(float(u.get("after") or 0.0) - float(u.get("before") or 0.0))

    utilisation = sorted(answer["utilisation"], key=lambda u: (-change(u), u["foundry_code"], u["product_family"]))
    return WhatIfAnswer(
        first_week=answer["first_week"],
        last_week=answer["last_week"],
        touched=touched,
        untouched=len(answer["orders"]) - len(touched),
        new_orders=new_orders,
        utilisation=utilisation,
    )
