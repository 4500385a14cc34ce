"""Replanning an order: what its plan in force no longer covers, and the next plan version. Pure: no I/O.

The first plan covers everything. A replan keeps every allocation of the plan in force except the units lost
(rejected, revoked, or no longer eligible) and plans only what is outstanding: those units, the units of
failed lots and the units the buyer refused at handover; never in a foundry-week capacity refused for the
order. The decision says the new plan, the order's status, the event to publish and the buyer's webhooks.
Also here: which units a member that lost eligibility may no longer make, and whether a member may cure a
shortfall.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from shared.events.orders import AllocationPlanned, PlannedAllocation
from shared.weeks import week_end, weeks_between

from .domain import (
    Allocated,
    FoundryStanding,
    Lot,
    OrderLine,
    OrderStatus,
    PlanInForce,
    PurchaseOrder,
    WebhookMessage,
    expected_completion,
    outstanding,
    serves_until,
    why_not_eligible,
)
from .planner import Candidate, Demand, PlanRules, plan_line, shortfall_by_week

REASON_LENGTH = 200  # what a plan version keeps of why it was made (the column's width)
RISK_HORIZON_WEEKS = 52  # how far ahead the expected completion of a late line is looked for
QUALITY_UNKNOWN = 0.9  # the pass rate assumed for a member quality has not rated yet

FreeCapacity = Mapping[str, Mapping[str, int]]  # foundry → ISO week → units nobody holds


@dataclass(frozen=True)
class MadeAgain:
    """Units that must be made again (of failed lots, refused at handover): their allocations stay, as that
    capacity was used, and the units are planned once more."""

    by_delivery: Mapping[tuple[int, date], int] = field(default_factory=dict)  # (line, due date) → units
    by_maker: Mapping[tuple[int, str], int] = field(default_factory=dict)  # (line, foundry that made them) → units


@dataclass(frozen=True)
class Outstanding:
    """What a new plan version must plan: the allocations it keeps and, per line, the deliveries still uncovered."""

    order: PurchaseOrder
    previous: PlanInForce | None
    kept: tuple[Allocated, ...]
    needs: Mapping[int, tuple[Demand, ...]]  # line → deliveries with the units no kept allocation covers
    not_supplied: Mapping[tuple[int, str], int]  # (line, foundry) → its units that must be made again
    drops_units: bool  # some units of the plan in force are lost

    @classmethod
    def of(
        cls, order: PurchaseOrder, previous: PlanInForce | None, lost: Mapping[str, int], made_again: MadeAgain
    ) -> Outstanding:
        """`lost`: allocation id → units of it no longer made there (rejected, revoked, no longer eligible)."""
        lost = {allocation_id: units for allocation_id, units in lost.items() if units > 0}
        kept: list[Allocated] = []
        for held in previous.allocations if previous is not None else ():
            quantity = held.allocation.quantity - lost.get(held.allocation.allocation_id, 0)
            if held.state != "rejected" and quantity > 0:
                kept.append(Allocated(PlannedAllocation(**{**held.allocation.model_dump(), "quantity": quantity}), held.state))
        needs: dict[int, tuple[Demand, ...]] = {}
        for line in order.lines:
            on_line = [a.allocation for a in kept if a.allocation.line_no == line.line_no]
            demands = [
                Demand(
                    d.due_date,
                    outstanding(
                        d.quantity,
                        sum(a.quantity for a in on_line if a.due_date == d.due_date),
                        made_again.by_delivery.get((line.line_no, d.due_date), 0),
                    ),
                )
                for d in line.deliveries
            ]
            needs[line.line_no] = tuple(d for d in demands if d.quantity > 0)
        return cls(order, previous, tuple(kept), needs, made_again.by_maker, drops_units=bool(lost))

    @property
    def nothing_to_do(self) -> bool:
        """The plan in force still covers everything: no new version."""
        return self.previous is not None and not self.drops_units and not any(self.needs.values())

    @property
    def lines_to_plan(self) -> list[OrderLine]:
        return [line for line in self.order.lines if self.needs.get(line.line_no)]

    @property
    def version(self) -> int:
        """The version the new plan gets."""
        return (self.previous.version if self.previous is not None else 0) + 1


def horizon(line: OrderLine, today: date) -> date:
    """The last day free capacity is looked at for a line: its last due date, or a year ahead for late units."""
    return max(line.last_due_date, today + timedelta(weeks=RISK_HORIZON_WEEKS))


@dataclass(frozen=True)
class NothingToDo:
    reason: str


@dataclass(frozen=True)
class NewPlan:
    """The next version of an order's plan and what follows from it."""

    version: int
    created_at: datetime
    reason: str
    solver: str  # the solvers whose line plans were kept, joined by +; "kept" when nothing new was planned
    allocations: tuple[Allocated, ...]
    shortfall: list[dict[str, Any]]  # {line_no, week, quantity, eligible_members}
    risk: list[dict[str, Any]]  # {line_no, shortfall, due_dates, late, expected_completion}
    status: OrderStatus
    event: AllocationPlanned
    webhooks: tuple[WebhookMessage, ...]
    line_plans: tuple[tuple[str, float], ...]  # (solver, seconds) of each line planned, for the metrics


@dataclass(frozen=True)
class _LinePlanned:
    allocations: list[PlannedAllocation]
    shortfall: list[dict[str, Any]]
    risk: dict[str, Any] | None
    solver: str
    seconds: float


def replan(
    todo: Outstanding,
    *,
    standings: Sequence[FoundryStanding],
    free: Mapping[int, FreeCapacity],
    refused: Collection[tuple[str, str]],
    today: date,
    now: datetime,
    reason: str,
    rules: PlanRules,
) -> NewPlan | NothingToDo:
    """The next plan version for what is outstanding, or nothing to do.

    `standings`: every member as orders knows it (eligibility is decided per line and delivery); `free`: per line
    to plan, the free capacity of its product family from this week to its `horizon`; `refused`: foundry-weeks
    (foundry, week) capacity refused for the order, never planned again; `rules`: the planner's, each line planned
    with its item's minimum lot and its own safety lead.
    """
    if todo.nothing_to_do:
        return NothingToDo("the plan in force still covers everything")
    order, version = todo.order, todo.version
    planned: list[Allocated] = list(todo.kept)
    shortfall: list[dict[str, Any]] = []
    risk: list[dict[str, Any]] = []
    line_plans: list[tuple[str, float]] = []
    for line in todo.lines_to_plan:
        # The minimum lot is the item's (a foundry-week of it below that is not worth making); the safety lead the line's.
        line_rules = replace(rules, min_quantity=line.min_lot, safety_lead_days=line.safety_lead_days)
        made = _plan_line(todo, line, standings, free.get(line.line_no, {}), refused, today, version, line_rules)
        planned += [Allocated(a, "planned") for a in made.allocations]
        shortfall += made.shortfall
        if made.risk is not None:
            risk.append(made.risk)
        line_plans.append((made.solver, made.seconds))
    all_reserved = bool(planned) and all(a.state == "reserved" for a in planned)
    # An order that never had a plan for everything waits for review; one under way keeps going, its late
    # lines marked at risk.
    in_review = bool(shortfall) and (todo.previous is None or order.status == OrderStatus.NEEDS_REVIEW)
    status = OrderStatus.NEEDS_REVIEW if in_review else OrderStatus.ACCEPTED if all_reserved else OrderStatus.PLANNED
    return NewPlan(
        version=version,
        created_at=now,
        reason=reason[:REASON_LENGTH],
        solver="+".join(sorted({solver for solver, _ in line_plans})) or "kept",
        allocations=tuple(planned),
        shortfall=shortfall,
        risk=risk,
        status=status,
        event=AllocationPlanned(
            order_id=order.id,
            buyer_code=order.buyer_code,
            plan_version=version,
            allocations=[a.allocation for a in planned],
            planned_at=now,
        ),
        webhooks=_webhooks(todo, version, status, in_review, shortfall, risk, reason),
        line_plans=tuple(line_plans),
    )


def _plan_line(
    todo: Outstanding,
    line: OrderLine,
    standings: Sequence[FoundryStanding],
    free_loaded: FreeCapacity,
    refused: Collection[tuple[str, str]],
    today: date,
    version: int,
    rules: PlanRules,
) -> _LinePlanned:
    reach = {f.code: serves_until(f, line, today) for f in standings}
    eligible = [f for f in standings if reach[f.code] is not None]
    free = {
        foundry: {week: units for week, units in weeks.items() if (foundry, week) not in refused}
        for foundry, weeks in free_loaded.items()
    }
    # A member's share of the line counts what it supplies: units of its failed lots or refused at handover
    # do not count, or one bad lot would keep the member that must make it again from doing so.
    already: dict[str, int] = {}
    for held in todo.kept:
        if held.allocation.line_no == line.line_no:
            foundry = held.allocation.foundry_code
            already[foundry] = already.get(foundry, 0) + held.allocation.quantity
    for (line_no, foundry), units in todo.not_supplied.items():
        if line_no == line.line_no and foundry in already:
            already[foundry] = max(0, already[foundry] - units)
    candidates = [
        Candidate(
            f.code,
            free.get(f.code, {}),
            quality=f.pass_rate if f.pass_rate is not None else QUALITY_UNKNOWN,
            already=already.get(f.code, 0),
            serves_until=None if reach[f.code] == line.last_due_date else reach[f.code],
        )
        for f in eligible
    ]
    plan = plan_line(todo.needs[line.line_no], candidates, today, rules, line_total=line.quantity)
    allocations = [
        PlannedAllocation(
            # The version keeps ids of new allocations apart from kept ones in the same foundry-week.
            allocation_id=f"{todo.order.id}:{line.line_no}:{a.foundry_code}:{a.week}:{a.due_date.isoformat()}:v{version}",
            line_no=line.line_no,
            item_code=line.item_code,
            product_family=line.product_family,
            foundry_code=a.foundry_code,
            week=a.week,
            quantity=a.quantity,
            due_date=a.due_date,
        )
        for a in plan.allocations
    ]
    shortfall = [
        {"line_no": line.line_no, "week": week, "quantity": units, "eligible_members": len(eligible)}
        for week, units in shortfall_by_week(plan, rules).items()
    ]
    risk = None
    late = sum(plan.shortfall.values())
    if late:
        used: dict[tuple[str, str], int] = {}
        for made in plan.allocations:
            used[(made.foundry_code, made.week)] = used.get((made.foundry_code, made.week), 0) + made.quantity
        whole_line = [f.code for f in eligible if reach[f.code] == line.last_due_date]
        completion = _late_completion(late, plan.shortfall, whole_line, free, used, line, today, rules)
        risk = {
            "line_no": line.line_no,
            "shortfall": late,
            "due_dates": sorted(d.isoformat() for d, units in plan.shortfall.items() if units),
            "late": [{"due_date": d.isoformat(), "units": units} for d, units in sorted(plan.shortfall.items()) if units],
            "expected_completion": completion.isoformat() if completion else None,
        }
    return _LinePlanned(allocations, shortfall, risk, plan.solver, plan.seconds)


def _late_completion(
    late: int,
    short: Mapping[date, int],
    whole_line: list[str],
    free: FreeCapacity,
    used: Mapping[tuple[str, str], int],
    line: OrderLine,
    today: date,
    rules: PlanRules,
) -> date | None:
    """When a line's late units could reach the buyer. They can only be made after the weeks that could have
    served them in time (the planner found no room there under its rules): count what members able to make the
    whole line have left after this plan, week by week from then on. Late units are not held to the maximum share."""
    first_late = min(d for d, units in short.items() if units)
    cut_off = first_late - timedelta(days=rules.lead_days)
    weeks = [w for w in weeks_between(max(today + timedelta(days=7), cut_off), horizon(line, today)) if week_end(w) > cut_off]
    spare: dict[str, int] = {}
    for code in whole_line:
        for week, units in free.get(code, {}).items():
            units -= used.get((code, week), 0)
            if units >= rules.min_quantity:
                spare[week] = spare.get(week, 0) + units
    return expected_completion(late, spare, weeks, rules.lead_days, rules.min_quantity)


def _webhooks(
    todo: Outstanding,
    version: int,
    status: OrderStatus,
    in_review: bool,
    shortfall: list[dict[str, Any]],
    risk: list[dict[str, Any]],
    reason: str,
) -> tuple[WebhookMessage, ...]:
    """What the buyer hears of a new plan: accepted, in review, or lines at risk and back on track."""
    order = todo.order
    about = {"order_id": order.id, "po_number": order.po_number, "plan_version": version}
    messages: list[WebhookMessage] = []
    if status == OrderStatus.ACCEPTED and order.status != OrderStatus.ACCEPTED:
        # A replan that only dropped units can leave every allocation reserved: accepted without a confirmation.
        messages.append(WebhookMessage("order.accepted", about))
    if in_review and order.status != OrderStatus.NEEDS_REVIEW:
        messages.append(WebhookMessage("order.needs_review", {**about, "shortfall": shortfall, "risk": risk}))
    elif not in_review:
        was_at_risk = {r["line_no"] for r in todo.previous.risk} if todo.previous is not None else set()
        for entry in risk:
            if entry["line_no"] not in was_at_risk:
                at_risk = {
                    "line_no": entry["line_no"],
                    "shortfall": entry["shortfall"],
                    "due_dates": entry["due_dates"],
                    "expected_completion": entry["expected_completion"],
                }
                messages.append(WebhookMessage("line.at_risk", {**about, **at_risk, "reason": reason}))
        for line_no in sorted(was_at_risk - {r["line_no"] for r in risk}):
            messages.append(WebhookMessage("line.back_on_track", {**about, "line_no": line_no, "reason": reason}))
    return tuple(messages)


# --- what moves a plan besides capacity's answers: members losing or regaining eligibility ----------------


def units_lost_at(
    order: PurchaseOrder,
    standing: FoundryStanding | None,
    allocations: Sequence[PlannedAllocation],
    produced: Mapping[str, int],
    today: date,
) -> dict[str, int]:
    """Of a member's allocations in an order's plan in force, the units it may no longer make (allocation id →
    units): those for deliveries it is no longer eligible for, less what it already made. `standing` None: orders
    no longer knows the member at all."""
    lines = {line.line_no: line for line in order.lines}
    lost: dict[str, int] = {}
    for a in allocations:
        if standing is None or why_not_eligible(standing, lines[a.line_no], today, a.due_date):
            units = a.quantity - produced.get(a.allocation_id, 0)
            if units > 0:
                lost[a.allocation_id] = units
    return lost


def may_cure_shortfall(
    order: PurchaseOrder,
    shortfall: Sequence[Mapping[str, Any]],
    standing: FoundryStanding,
    today: date,
    product_family: str | None = None,
) -> bool:
    """Whether a member (of the product family, when one is named) may make some delivery of a line the plan in
    force leaves short (`shortfall`: its entries): then the order tries again."""
    late_lines = {entry["line_no"] for entry in shortfall}
    return any(
        line.line_no in late_lines
        and (product_family is None or line.product_family == product_family)
        and serves_until(standing, line, today) is not None
        for line in order.lines
    )


def capacity_may_cure(
    order: PurchaseOrder,
    shortfall: Sequence[Mapping[str, Any]],
    standing: FoundryStanding,
    product_family: str,
    free: Mapping[str, int],
    weeks: Collection[str],
    today: date,
) -> bool:
    """Whether a member's changed capacity may cure a shortfall of the plan in force (`shortfall`: its entries): a
    short line of the family that
    the member may make, and a changed week at or before a short week where it has at least the item's minimum lot
    free (`free`: week → units nobody holds at the member). A drop leaves no more free than there was, so it never
    passes where the order was short before."""
    lines = {line.line_no: line for line in order.lines}
    for entry in shortfall:
        line = lines.get(int(entry["line_no"]))
        if line is None or line.product_family != product_family or serves_until(standing, line, today) is None:
            continue
        if any(free.get(week, 0) >= line.min_lot for week in weeks if week <= str(entry["week"])):
            return True
    return False


# --- one replan per order for the reactions that share a cause ---------------------------------------------


def joined_reasons(reasons: Sequence[str], width: int = REASON_LENGTH) -> str:
    """Several reasons in one, as many whole ones as fit and then how many more: the console translates a reason
    piece by piece, and a reason cut in the middle would no longer read as one."""
    kept: list[str] = []
    for i, reason in enumerate(reasons):
        rest = len(reasons) - i - 1
        tail = f"; and {rest} more" if rest else ""
        if kept and len("; ".join([*kept, reason])) + len(tail) > width:
            return "; ".join([*kept, f"and {len(reasons) - i} more"])
        kept.append(reason)
    return "; ".join(kept)


@dataclass
class Asked:
    """What the reactions of one batch ask of an order's plan: units lost, foundry-weeks not to plan in, failed lots."""

    reasons: list[str] = field(default_factory=list)
    trigger: str = ""
    revoked: dict[str, int] = field(default_factory=dict)  # allocation id → units capacity took (they add up)
    ineligible: dict[str, int] = field(default_factory=dict)  # allocation id → units a member may no longer make
    blocked: set[tuple[str, str]] = field(default_factory=set)
    failed: list[Lot] = field(default_factory=list)  # lots the events report failed

    @property
    def lost(self) -> dict[str, int]:
        """Units lost per allocation. A member no longer eligible loses every unit it has not made, which covers
        what capacity took of the same allocation: the larger counts, not the sum."""
        return {a: max(self.revoked.get(a, 0), self.ineligible.get(a, 0)) for a in {*self.revoked, *self.ineligible}}

    @property
    def reason(self) -> str:
        return joined_reasons(self.reasons)


@dataclass
class Replans:
    """The replans the reactions of one batch ask for, made once per order at its end (in id order)."""

    asked: dict[str, Asked] = field(default_factory=dict)
    # Resolved against the short orders once at the end: (foundry, family) → ISO weeks of capacity changes, and
    # members that may make more than before (a certificate granted, no longer suspended) → why.
    capacity_changes: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    members_back: dict[str, str] = field(default_factory=dict)

    def ask(
        self,
        order_id: str,
        reason: str,
        trigger: str,
        *,
        revoked: Mapping[str, int] | None = None,
        ineligible: Mapping[str, int] | None = None,
        blocked: Collection[tuple[str, str]] = (),
        failed: Sequence[Lot] = (),
    ) -> None:
        asked = self.asked.setdefault(order_id, Asked(trigger=trigger))
        if reason not in asked.reasons:
            asked.reasons.append(reason)
        for allocation_id, units in (revoked or {}).items():
            asked.revoked[allocation_id] = asked.revoked.get(allocation_id, 0) + units
        for allocation_id, units in (ineligible or {}).items():
            asked.ineligible[allocation_id] = max(asked.ineligible.get(allocation_id, 0), units)
        asked.blocked.update(blocked)
        asked.failed.extend(lot for lot in failed if lot.lot_code not in {f.lot_code for f in asked.failed})

    def capacity_changed(self, foundry_code: str, product_family: str, weeks: Collection[str]) -> None:
        self.capacity_changes.setdefault((foundry_code, product_family), set()).update(weeks)

    def member_back(self, foundry_code: str, reason: str) -> None:
        self.members_back.setdefault(foundry_code, reason)

    def __bool__(self) -> bool:
        return bool(self.asked or self.capacity_changes or self.members_back)
