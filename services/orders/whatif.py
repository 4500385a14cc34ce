"""What-if: what would become of the open orders if capacity changed, certificates lapsed, members were suspended
or new orders arrived. Pure: no I/O.

It works on a copy of the cooperative as orders knows it (members' standing, capacity and what is held per
foundry-week) and replans each order the hypotheses touch with the same `replanning.replan` a real reaction
uses, in id order, each replan taking the capacity the previous ones took; new orders are planned last, as if
they arrived after. Nothing it returns is stored or published.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from shared.weeks import iso_week, weeks_between

from .domain import LOOK_AHEAD_WEEKS, FoundryStanding, PlanInForce, PurchaseOrder
from .planner import PlanRules
from .replanning import MadeAgain, NewPlan, Outstanding, capacity_may_cure, horizon, replan, units_lost_at

Cells = dict[str, dict[str, int]]  # foundry → ISO week → units


@dataclass(frozen=True)
class CapacityChange:
    """A member's weekly capacity of a product family becomes `weekly_units` in the weeks of the dates."""

    foundry_code: str
    product_family: str
    from_date: date
    to_date: date
    weekly_units: int


@dataclass(frozen=True)
class CertificateLapse:
    """A member's certificates of a kind stop being valid on a day (revoked, or a missed surveillance)."""

    foundry_code: str
    kind: str
    on: date


@dataclass(frozen=True)
class Suspension:
    """A member makes nothing from a day on (quality suspended it, or it left the cooperative)."""

    foundry_code: str
    from_date: date


@dataclass(frozen=True)
class Hypotheses:
    capacity_changes: tuple[CapacityChange, ...] = ()
    certificate_lapses: tuple[CertificateLapse, ...] = ()
    suspensions: tuple[Suspension, ...] = ()


@dataclass
class Cooperative:
    """The members and their capacity as orders knows them, per product family: capacity and units held (by
    reservations and by allocations of plans in force capacity has not confirmed yet), per foundry-week."""

    standings: dict[str, FoundryStanding]
    capacity: dict[str, Cells]  # family → foundry → week → units
    held: dict[str, Cells]  # family → foundry → week → units

    def copy(self) -> Cooperative:
        def deep(cells: dict[str, Cells]) -> dict[str, Cells]:
            return {family: {f: dict(weeks) for f, weeks in by_foundry.items()} for family, by_foundry in cells.items()}

        return Cooperative(dict(self.standings), deep(self.capacity), deep(self.held))

    def free(self, family: str, first_week: str, last_week: str) -> Cells:
        """foundry → week → units nobody holds, as `projections.free_capacity` reads them."""
        out: Cells = {}
        held = self.held.get(family, {})
        for foundry, weeks in self.capacity.get(family, {}).items():
            mine = held.get(foundry, {})
            out[foundry] = {w: max(0, units - mine.get(w, 0)) for w, units in weeks.items() if first_week <= w <= last_week}
        return out

    def hold(self, family: str, foundry: str, week: str, units: int) -> None:
        by_week = self.held.setdefault(family, {}).setdefault(foundry, {})
        by_week[week] = by_week.get(week, 0) + units

    def utilisation(self, family: str, foundry: str, first_week: str, last_week: str) -> float | None:
        """Held over capacity in the weeks; None when the member has no capacity there."""
        capacity = {w: u for w, u in self.capacity.get(family, {}).get(foundry, {}).items() if first_week <= w <= last_week}
        total = sum(capacity.values())
        if total <= 0:
            return None
        held = self.held.get(family, {}).get(foundry, {})
        return round(sum(min(held.get(w, 0), units) for w, units in capacity.items()) / total, 4)


@dataclass(frozen=True)
class OpenOrder:
    """An open order and what its replan needs: the plan in force, foundry-weeks capacity refused for it, units to
    make again, and units already made per allocation."""

    order: PurchaseOrder
    plan: PlanInForce | None
    refused: frozenset[tuple[str, str]] = frozenset()
    made_again: MadeAgain = field(default_factory=MadeAgain)
    produced: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MemberShift:
    foundry_code: str
    units_before: int
    units_after: int


@dataclass(frozen=True)
class LateUnits:
    """Units of a line that would miss a due date."""

    due_date: str
    units: int


@dataclass(frozen=True)
class LineOutcome:
    line_no: int
    at_risk: bool
    late_units: int
    late_due_dates: tuple[str, ...]
    late: tuple[LateUnits, ...]  # late_units per due date, one for each of late_due_dates
    expected_completion: str | None
    moved_units: int  # units that leave the foundry-week the plan in force had them in
    members: tuple[MemberShift, ...]  # members whose units of the line change
    allocations: tuple[dict[str, Any], ...]  # the line's plan: {foundry_code, week, quantity, due_date, state}
    shortfall: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class OrderOutcome:
    order_id: str
    po_number: str
    buyer_code: str
    status: str  # the status the order would have
    replanned: bool
    reason: str | None
    lines: tuple[LineOutcome, ...]

    @property
    def acceptable_in_full(self) -> bool:
        return not any(line.at_risk for line in self.lines)

    @property
    def complete_by(self) -> date | None:
        """When every unit could reach the buyer: the last due date, or the latest expected completion of late
        units; None when some cannot be made within the horizon."""
        dates: list[date] = []
        for line in self.lines:
            if line.at_risk:
                if line.expected_completion is None:
                    return None
                dates.append(date.fromisoformat(line.expected_completion))
            dates += [date.fromisoformat(a["due_date"]) for a in line.allocations]
        return max(dates, default=None)


@dataclass(frozen=True)
class Utilisation:
    foundry_code: str
    product_family: str
    before: float | None
    after: float | None


@dataclass(frozen=True)
class WhatIf:
    orders: tuple[OrderOutcome, ...]
    new_orders: tuple[OrderOutcome, ...]
    utilisation: tuple[Utilisation, ...]  # members whose planned work changes, over the weeks looked at
    first_week: str
    last_week: str


def problems(
    hypotheses: Hypotheses,
    standings: Mapping[str, FoundryStanding],
    families: Collection[str],
    today: date,
) -> list[tuple[str, str]]:
    """(field, message) of every hypothesis that cannot be asked; none means all can. New orders are checked as
    purchase orders are (`domain.check_purchase_order`), due dates bounded alike."""
    out: list[tuple[str, str]] = []
    latest = today + timedelta(weeks=LOOK_AHEAD_WEEKS)

    def member(where: str, code: str) -> None:
        if code not in standings:
            out.append((f"{where}.foundry_code", f"orders knows no member {code!r}"))

    def soon_enough(where: str, day: date) -> None:
        if day > latest:
            out.append((where, f"must not be after {latest.isoformat()} ({LOOK_AHEAD_WEEKS} weeks ahead)"))

    for i, change in enumerate(hypotheses.capacity_changes):
        member(f"capacity_changes.{i}", change.foundry_code)
        if change.product_family not in families:
            out.append((f"capacity_changes.{i}.product_family", f"unknown product family; known: {', '.join(sorted(families))}"))
        if change.to_date < change.from_date:
            out.append((f"capacity_changes.{i}.to_date", "must not be before from_date"))
        soon_enough(f"capacity_changes.{i}.to_date", change.to_date)
    for i, lapse in enumerate(hypotheses.certificate_lapses):
        member(f"certificate_lapses.{i}", lapse.foundry_code)
        soon_enough(f"certificate_lapses.{i}.on", lapse.on)
    for i, suspension in enumerate(hypotheses.suspensions):
        member(f"suspensions.{i}", suspension.foundry_code)
        soon_enough(f"suspensions.{i}.from_date", suspension.from_date)
    return out


def suppose(
    cooperative: Cooperative, orders: Sequence[OpenOrder], hypotheses: Hypotheses, today: date
) -> tuple[Cooperative, dict[str, dict[str, int]], dict[str, list[str]]]:
    """The cooperative as it would be, the units each order would lose (order → allocation id → units) and why.

    Capacity below what a foundry-week holds takes units from the orders' allocations there as capacity revokes
    reservations: latest due date first, then the newest. A lapsed certificate or a suspension takes what the
    member may no longer make (`units_lost_at`), less what it made already.
    """
    world = cooperative.copy()
    lost: dict[str, dict[str, int]] = {}
    why: dict[str, list[str]] = {}

    def lose(order_id: str, allocation_id: str, units: int, reason: str) -> None:
        mine = lost.setdefault(order_id, {})
        mine[allocation_id] = max(mine.get(allocation_id, 0), units)
        if reason not in why.setdefault(order_id, []):
            why[order_id].append(reason)

    def held_cell(family: str, foundry: str, week: str) -> list[tuple[OpenOrder, Any]]:
        return [
            (o, held)
            for o in orders
            if o.plan is not None
            for held in o.plan.allocations
            if held.state != "rejected"
            and held.allocation.foundry_code == foundry
            and held.allocation.product_family == family
            and held.allocation.week == week
        ]

    def set_capacity(family: str, foundry: str, week: str, units: int, reason: str) -> None:
        weeks = world.capacity.setdefault(family, {}).setdefault(foundry, {})
        weeks[week] = units
        excess = world.held.get(family, {}).get(foundry, {}).get(week, 0) - units
        if excess <= 0:
            return
        # Latest due date first, then the newest: as capacity revokes reservations.
        in_cell = sorted(
            held_cell(family, foundry, week),
            key=lambda oh: (oh[1].allocation.due_date, oh[1].allocation.allocation_id),
            reverse=True,
        )
        for open_order, held in in_cell:
            if excess <= 0:
                break
            taken = min(excess, held.allocation.quantity)
            lose(open_order.order.id, held.allocation.allocation_id, taken, reason)
            world.hold(family, foundry, week, -taken)
            excess -= taken

    for change in hypotheses.capacity_changes:
        reason = f"capacity of {change.foundry_code} {change.weekly_units} a week from {change.from_date} to {change.to_date}"
        for week in weeks_between(max(change.from_date, today), change.to_date) if change.to_date >= today else []:
            set_capacity(change.product_family, change.foundry_code, week, change.weekly_units, reason)
    for suspension in hypotheses.suspensions:
        code, start = suspension.foundry_code, suspension.from_date
        reason = f"{code} suspended from {start}"
        if start <= today:
            world.standings[code] = replace(world.standings[code], quality_status="suspended")
        first = iso_week(max(start, today))
        for family, by_foundry in world.capacity.items():
            for week in [w for w in by_foundry.get(code, {}) if w >= first]:
                set_capacity(family, code, week, 0, reason)
    for lapse in hypotheses.certificate_lapses:
        standing = world.standings[lapse.foundry_code]
        last_valid = lapse.on - timedelta(days=1)
        certificates = tuple(
            replace(c, valid_until=min(c.valid_until, last_valid)) if c.kind == lapse.kind else c for c in standing.certificates
        )
        world.standings[lapse.foundry_code] = replace(standing, certificates=certificates)
    # Eligibility after every hypothesis: what each named member may no longer make.
    named = {lapse.foundry_code for lapse in hypotheses.certificate_lapses} | {
        s.foundry_code for s in hypotheses.suspensions if s.from_date <= today
    }
    for code in sorted(named):
        reason = f"{code} no longer eligible"
        for open_order in orders:
            if open_order.plan is None:
                continue
            at_member = [
                held.allocation
                for held in open_order.plan.allocations
                if held.allocation.foundry_code == code and held.state != "rejected"
            ]
            for allocation_id, units in units_lost_at(
                open_order.order, world.standings[code], at_member, open_order.produced, today
            ).items():
                lose(open_order.order.id, allocation_id, units, reason)
    return world, lost, why


def may_help(order: OpenOrder, hypotheses: Hypotheses, world: Cooperative, today: date) -> bool:
    """Whether added capacity may cure a shortfall of the order, as a real capacity change is judged
    (`replanning.capacity_may_cure`)."""
    if order.plan is None or not order.plan.shortfall:
        return False
    for change in hypotheses.capacity_changes:
        standing = world.standings.get(change.foundry_code)
        if standing is None or change.to_date < today:
            continue
        weeks = weeks_between(max(change.from_date, today), change.to_date)
        free = world.free(change.product_family, iso_week(today), max(weeks)).get(change.foundry_code, {})
        if capacity_may_cure(order.order, order.plan.shortfall, standing, change.product_family, free, weeks, today):
            return True
    return False


def what_if(
    cooperative: Cooperative,
    orders: Sequence[OpenOrder],
    hypotheses: Hypotheses,
    new_orders: Sequence[PurchaseOrder],
    *,
    today: date,
    now: datetime,
    rules: PlanRules,
) -> WhatIf:
    """What every open order and every new order would become under the hypotheses (see the module)."""
    world, lost, why = suppose(cooperative, orders, hypotheses, today)
    first_week = iso_week(today)
    last_week = first_week
    outcomes: list[OrderOutcome] = []
    for open_order in sorted(orders, key=lambda o: o.order.id):
        order = open_order.order
        for line in order.lines:
            last_week = max(last_week, iso_week(horizon(line, today)))
        retry = may_help(open_order, hypotheses, world, today)
        if order.id not in lost and not retry:
            outcomes.append(_as_is(open_order))
            continue
        reason = "; ".join(why.get(order.id, ["capacity added where the order is short"]))
        todo = Outstanding.of(order, open_order.plan, lost.get(order.id, {}), open_order.made_again)
        decision = _plan(world, todo, open_order.refused, today, now, reason, rules)
        if decision is None:
            outcomes.append(_as_is(open_order))
            continue
        outcomes.append(_outcome(order, open_order.plan, decision, reason))
    new: list[OrderOutcome] = []
    for order in new_orders:
        for line in order.lines:
            last_week = max(last_week, iso_week(horizon(line, today)))
        decision = _plan(
            world, Outstanding.of(order, None, {}, MadeAgain()), frozenset(), today, now, "what-if: new order", rules
        )
        assert decision is not None  # a new order always has something to plan
        new.append(_outcome(order, None, decision, "new order"))
    return WhatIf(tuple(outcomes), tuple(new), _utilisation(cooperative, world, first_week, last_week), first_week, last_week)


def _plan(
    world: Cooperative,
    todo: Outstanding,
    refused: Collection[tuple[str, str]],
    today: date,
    now: datetime,
    reason: str,
    rules: PlanRules,
) -> NewPlan | None:
    """The replan a reaction would make, on the world; the capacity its new allocations take is held there."""
    free = {
        line.line_no: world.free(line.product_family, iso_week(today), iso_week(horizon(line, today)))
        for line in todo.lines_to_plan
    }
    decision = replan(
        todo,
        standings=sorted(world.standings.values(), key=lambda s: s.code) if free else [],
        free=free,
        refused=refused,
        today=today,
        now=now,
        reason=reason,
        rules=rules,
    )
    if not isinstance(decision, NewPlan):
        return None
    kept = {held.allocation.allocation_id for held in todo.kept}
    for held in decision.allocations:
        a = held.allocation
        if a.allocation_id not in kept:
            world.hold(a.product_family, a.foundry_code, a.week, a.quantity)
    return decision


def _line_outcome(
    line_no: int,
    before: Sequence[Any],
    after: Sequence[Any],
    risk: Mapping[str, Any] | None,
    shortfall: Sequence[Mapping[str, Any]],
) -> LineOutcome:
    """`before`, `after`: the line's `Allocated` in the plan in force and in the plan it would have."""

    def cells(allocated: Sequence[Any]) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for held in allocated:
            if held.state != "rejected":
                key = (held.allocation.foundry_code, held.allocation.week)
                out[key] = out.get(key, 0) + held.allocation.quantity
        return out

    was, will = cells(before), cells(after)
    moved = sum(max(0, units - will.get(key, 0)) for key, units in was.items())
    per_member_before: dict[str, int] = {}
    per_member_after: dict[str, int] = {}
    for (foundry, _), units in was.items():
        per_member_before[foundry] = per_member_before.get(foundry, 0) + units
    for (foundry, _), units in will.items():
        per_member_after[foundry] = per_member_after.get(foundry, 0) + units
    members = tuple(
        MemberShift(code, per_member_before.get(code, 0), per_member_after.get(code, 0))
        for code in sorted({*per_member_before, *per_member_after})
        if per_member_before.get(code, 0) != per_member_after.get(code, 0)
    )
    return LineOutcome(
        line_no=line_no,
        at_risk=risk is not None,
        late_units=int(risk["shortfall"]) if risk else 0,
        late_due_dates=tuple(risk["due_dates"]) if risk else (),
        late=_late(risk),
        expected_completion=risk["expected_completion"] if risk else None,
        moved_units=moved,
        members=members,
        allocations=tuple(
            {
                "foundry_code": held.allocation.foundry_code,
                "week": held.allocation.week,
                "quantity": held.allocation.quantity,
                "due_date": held.allocation.due_date.isoformat(),
                "state": held.state,
            }
            for held in sorted(after, key=lambda h: (h.allocation.week, h.allocation.foundry_code, h.allocation.due_date))
            if held.state != "rejected"
        ),
        shortfall=tuple(dict(s) for s in shortfall),
    )


def _late(risk: Mapping[str, Any] | None) -> tuple[LateUnits, ...]:
    """The planner's late units per due date. A plan in force kept before risks named them has them only when one
    due date is missed: then every late unit is due on it."""
    if risk is None:
        return ()
    if "late" in risk:
        return tuple(LateUnits(str(entry["due_date"]), int(entry["units"])) for entry in risk["late"])
    if len(risk["due_dates"]) == 1:
        return (LateUnits(str(risk["due_dates"][0]), int(risk["shortfall"])),)
    return ()


def _outcome(order: PurchaseOrder, previous: PlanInForce | None, decision: NewPlan, reason: str) -> OrderOutcome:
    risks = {int(r["line_no"]): r for r in decision.risk}
    lines = tuple(
        _line_outcome(
            line.line_no,
            [h for h in (previous.allocations if previous else ()) if h.allocation.line_no == line.line_no],
            [h for h in decision.allocations if h.allocation.line_no == line.line_no],
            risks.get(line.line_no),
            [s for s in decision.shortfall if int(s["line_no"]) == line.line_no],
        )
        for line in order.lines
    )
    return OrderOutcome(order.id, order.po_number, order.buyer_code, decision.status.value, True, reason, lines)


def _as_is(open_order: OpenOrder) -> OrderOutcome:
    order, plan = open_order.order, open_order.plan
    allocations = plan.allocations if plan else ()
    risks = {int(r["line_no"]): r for r in (plan.risk if plan else ())}
    lines = tuple(
        _line_outcome(
            line.line_no,
            [h for h in allocations if h.allocation.line_no == line.line_no],
            [h for h in allocations if h.allocation.line_no == line.line_no],
            risks.get(line.line_no),
            [s for s in (plan.shortfall if plan else ()) if int(s["line_no"]) == line.line_no],
        )
        for line in order.lines
    )
    return OrderOutcome(order.id, order.po_number, order.buyer_code, order.status.value, False, None, lines)


def _utilisation(before: Cooperative, after: Cooperative, first_week: str, last_week: str) -> tuple[Utilisation, ...]:
    out: list[Utilisation] = []
    for family in sorted({*before.capacity, *after.capacity}):
        foundries = {*before.capacity.get(family, {}), *after.capacity.get(family, {})}
        for code in sorted(foundries):
            was = before.utilisation(family, code, first_week, last_week)
            will = after.utilisation(family, code, first_week, last_week)
            if was != will:
                out.append(Utilisation(code, family, was, will))
    return tuple(out)
