"""The allocation planner: who makes how many of a line, in which ISO week. Pure: no I/O.

Meets due dates first; then spreads work fairly across members (*pemerataan*: equal utilisation of
free capacity), keeps a minimum useful quantity per foundry-week and a maximum share per foundry, and
prefers better quality records. An exact model (scipy `milp`, HiGHS) runs under a time limit; a fast
greedy heuristic with the same rules is the fallback. Capacity that cannot be found is reported as a
shortfall per delivery and per week instead of failing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_start(label: str) -> date:
    year, week = label.split("-W")
    return date.fromisocalendar(int(year), int(week), 1)


def week_end(label: str) -> date:
    return week_start(label) + timedelta(days=6)


def weeks_between(first: date, last: date) -> list[str]:
    """ISO weeks from the week of `first` to the week of `last`, inclusive."""
    out = []
    day = first - timedelta(days=first.weekday())
    while day <= last:
        out.append(iso_week(day))
        day += timedelta(days=7)
    return out


@dataclass(frozen=True)
class Demand:
    """One delivery of a line still to be planned."""

    due_date: date
    quantity: int


@dataclass(frozen=True)
class Candidate:
    """An eligible foundry with its free capacity per ISO week for the line's product family."""

    foundry_code: str
    free: Mapping[str, int]
    quality: float = 0.8  # expected pass rate, 0..1; higher is preferred
    already: int = 0  # units of this line it already makes (kept allocations of an earlier plan)


@dataclass(frozen=True)
class PlanRules:
    min_quantity: int = 200  # a foundry-week below this is not worth setting up a press or a melt
    max_share: float = 0.35  # of the line, per foundry: limits the damage one failing member can do
    lead_days: int = 14  # from the end of the production week to the due date: testing and transport
    time_limit_s: float = 1.5
    shortfall_penalty: float = 1_000.0
    fairness_weight: float = 10.0
    quality_weight: float = 1.0


@dataclass(frozen=True)
class Allocation:
    foundry_code: str
    week: str
    quantity: int
    due_date: date


@dataclass
class LinePlan:
    allocations: list[Allocation]
    shortfall: dict[date, int]  # due date → units no eligible foundry can make in time
    solver: str  # "milp", "milp-time-limit" or "heuristic"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def planned(self) -> int:
        return sum(a.quantity for a in self.allocations)

    @property
    def feasible(self) -> bool:
        return not any(self.shortfall.values())

    def load_by_foundry(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for a in self.allocations:
            load[a.foundry_code] = load.get(a.foundry_code, 0) + a.quantity
        return load


@dataclass(frozen=True)
class _Problem:
    demands: list[Demand]
    cells: list[tuple[int, str, int]]  # (candidate index, week, free units) usable for some demand
    deadline_index: list[int]  # per demand: how many weeks (sorted) finish in time for it
    weeks: list[str]
    candidates: list[Candidate]
    share_cap: list[int]  # per candidate: the most it may still take
    line_total: int


def _prepare(demands: Sequence[Demand], candidates: Sequence[Candidate], rules: PlanRules, today: date, line_total: int | None) -> _Problem:
    ordered = sorted((d for d in demands if d.quantity > 0), key=lambda d: d.due_date)
    total = line_total if line_total is not None else sum(d.quantity for d in ordered)
    first_week = iso_week(today + timedelta(days=7 - today.weekday()))  # production starts next week
    last_due = max((d.due_date for d in ordered), default=today)
    weeks = [w for w in weeks_between(week_start(first_week), last_due) if week_end(w) + timedelta(days=rules.lead_days) <= last_due]
    deadline_index = [
        sum(1 for w in weeks if week_end(w) + timedelta(days=rules.lead_days) <= d.due_date) for d in ordered
    ]
    week_set = set(weeks)
    cells = [
        (i, w, int(units))
        for i, c in enumerate(candidates)
        for w, units in sorted(c.free.items())
        if w in week_set and units >= rules.min_quantity
    ]
    share_cap = [max(0, math.floor(rules.max_share * total) - c.already) for c in candidates]
    return _Problem(ordered, cells, deadline_index, weeks, list(candidates), share_cap, total)


def plan_line(
    demands: Sequence[Demand],
    candidates: Sequence[Candidate],
    today: date,
    rules: PlanRules = PlanRules(),
    *,
    line_total: int | None = None,
    exact: bool = True,
) -> LinePlan:
    """Plans the given deliveries on the candidates' free capacity; never plans more than is demanded."""
    started = time.perf_counter()
    problem = _prepare(demands, candidates, rules, today, line_total)
    plan = _heuristic(problem, rules)
    if exact and problem.cells and problem.demands:
        # The exact model may stop at its time limit with a worse plan than the heuristic: keep the better.
        exact_plan = _solve_milp(problem, rules)
        if exact_plan is not None and score(exact_plan, problem.candidates, rules) <= score(plan, problem.candidates, rules):
            plan = exact_plan
    plan.seconds = time.perf_counter() - started
    return plan


def score(plan: LinePlan, candidates: Sequence[Candidate], rules: PlanRules = PlanRules()) -> float:
    """The planner's objective for any plan (lower is better): shortfall first, then fairness, then quality."""
    total = max(1, plan.planned + sum(plan.shortfall.values()))
    load = plan.load_by_foundry()
    utilisation = 0.0
    quality_cost = 0.0
    for c in candidates:
        capacity = sum(c.free.values()) + c.already
        if capacity:
            utilisation = max(utilisation, (load.get(c.foundry_code, 0) + c.already) / capacity)
        quality_cost += (1.0 - c.quality) * load.get(c.foundry_code, 0) / total
    return (
        rules.shortfall_penalty * sum(plan.shortfall.values())
        + rules.fairness_weight * utilisation
        + rules.quality_weight * quality_cost
    )


# --- exact model ------------------------------------------------------------------------------------


def _solve_milp(p: _Problem, rules: PlanRules) -> LinePlan | None:
    # Weeks are grouped into windows between consecutive deadlines: production anywhere in a window serves
    # the same deliveries, so the model decides units per foundry and window (170 × 12, not 170 × 52).
    bounds_by_demand = sorted(set(p.deadline_index))
    window_of_week: dict[str, int] = {}
    start = 0
    for k, end in enumerate(bounds_by_demand):
        for w in p.weeks[start:end]:
            window_of_week[w] = k
        start = end
    free_in: dict[tuple[int, int], int] = {}
    for i, w, units in p.cells:
        k = window_of_week.get(w)
        if k is not None:
            free_in[(i, k)] = free_in.get((i, k), 0) + units
    cells = sorted((i, k, units) for (i, k), units in free_in.items() if units >= rules.min_quantity)
    if not cells:
        return None
    n_cells, n_demands = len(cells), len(p.demands)
    # Variables: x per cell (semi-integer: 0 or between the minimum useful quantity and the free capacity,
    # which HiGHS handles natively instead of a binary per cell), s shortfall per demand, u max utilisation.
    nx, ns = n_cells, n_demands
    iu = nx + ns
    n_vars = iu + 1
    capacity = np.zeros(len(p.candidates))
    for i, _, units in cells:
        capacity[i] += units

    cost = np.zeros(n_vars)
    scale = max(1, p.line_total)
    for c, (i, _, _) in enumerate(cells):
        cost[c] = rules.quality_weight * (1.0 - p.candidates[i].quality) / scale
    cost[nx : nx + ns] = rules.shortfall_penalty  # per unit: outweighs any fairness gain
    cost[iu] = rules.fairness_weight

    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lower: list[float] = []
    upper: list[float] = []
    row = 0

    def add(entries: Iterable[tuple[int, float]], lo: float, hi: float) -> None:
        nonlocal row
        for col, val in entries:
            rows.append(row)
            cols.append(col)
            vals.append(val)
        lower.append(lo)
        upper.append(hi)
        row += 1

    # Cumulative due dates: what is made in time for delivery j covers demands 1..j, less shortfall.
    cumulative = 0
    for j, demand in enumerate(p.demands):
        cumulative += demand.quantity
        last_window = bounds_by_demand.index(p.deadline_index[j]) if p.deadline_index[j] in bounds_by_demand else -1
        entries = [(c, 1.0) for c, (_, k, _) in enumerate(cells) if k <= last_window]
        entries += [(nx + m, 1.0) for m in range(j + 1)]
        add(entries, float(cumulative), np.inf)
    total = sum(d.quantity for d in p.demands)
    add([(c, 1.0) for c in range(nx)] + [(nx + m, 1.0) for m in range(ns)], float(total), float(total))
    by_candidate: dict[int, list[int]] = {}
    for c, (i, _, _) in enumerate(cells):
        by_candidate.setdefault(i, []).append(c)
    for i, cs in by_candidate.items():
        already = float(p.candidates[i].already)
        add([(c, 1.0) for c in cs], -np.inf, float(p.share_cap[i]))
        add([(c, 1.0) for c in cs] + [(iu, -float(capacity[i] + already))], -np.inf, -already)

    matrix = coo_array((vals, (rows, cols)), shape=(row, n_vars)).tocsr()
    lo = np.concatenate([np.full(nx, float(rules.min_quantity)), np.zeros(ns), [0.0]])
    hi = np.concatenate([
        np.array([units for _, _, units in cells], dtype=float),
        np.array([d.quantity for d in p.demands], dtype=float),
        [np.inf],
    ])
    integrality = np.concatenate([np.full(nx, 3), np.zeros(ns), [0]])
    result = milp(
        cost,
        constraints=LinearConstraint(matrix, np.array(lower), np.array(upper)),
        integrality=integrality,
        bounds=Bounds(lo, hi),
        options={"time_limit": rules.time_limit_s, "mip_rel_gap": 0.02, "disp": False},
    )
    if result.x is None:
        return None
    weeks_of_window: dict[tuple[int, int], list[tuple[str, int]]] = {}
    for i, w, units in p.cells:
        k = window_of_week.get(w)
        if k is not None:
            weeks_of_window.setdefault((i, k), []).append((w, units))
    made: list[tuple[str, str, int]] = []
    for (i, k, _), q in zip(cells, np.rint(result.x[:nx]).astype(int)):
        if q > 0:
            made += _into_weeks(p.candidates[i].foundry_code, int(q), weeks_of_window[(i, k)], rules)
    solver = "milp" if result.status == 0 else "milp-time-limit"
    return _assign_to_deliveries(p, made, rules, solver)


def _into_weeks(foundry: str, quantity: int, weeks: list[tuple[str, int]], rules: PlanRules) -> list[tuple[str, str, int]]:
    """Splits a foundry's units for a window over its weeks: fullest weeks first, no chunk below the minimum."""
    out: list[tuple[str, str, int]] = []
    left = quantity
    for week, units in sorted(weeks, key=lambda wu: (-wu[1], wu[0])):
        if left == 0:
            break
        take = min(units, left)
        if left - take and left - take < rules.min_quantity:
            take = max(0, left - rules.min_quantity)  # leave a useful remainder for the next week
            if take < rules.min_quantity:
                take = min(units, left)
        out.append((foundry, week, take))
        left -= take
    return out


def _assign_to_deliveries(p: _Problem, made: list[tuple[str, str, int]], rules: PlanRules, solver: str) -> LinePlan:
    """Earliest production serves the earliest delivery; what no production covers is shortfall."""
    remaining = [d.quantity for d in p.demands]
    allocations: list[Allocation] = []
    lead = timedelta(days=rules.lead_days)
    for foundry, week, quantity in sorted(made, key=lambda m: (m[1], m[0])):
        left = quantity
        for j, demand in enumerate(p.demands):
            if left == 0:
                break
            if remaining[j] == 0 or week_end(week) + lead > demand.due_date:
                continue
            take = min(left, remaining[j])
            allocations.append(Allocation(foundry, week, take, demand.due_date))
            remaining[j] -= take
            left -= take
    shortfall = {d.due_date: 0 for d in p.demands}
    for j, demand in enumerate(p.demands):
        shortfall[demand.due_date] += remaining[j]
    return LinePlan(_merge(allocations), shortfall, solver)


def _merge(allocations: list[Allocation]) -> list[Allocation]:
    merged: dict[tuple[str, str, date], int] = {}
    for a in allocations:
        merged[(a.foundry_code, a.week, a.due_date)] = merged.get((a.foundry_code, a.week, a.due_date), 0) + a.quantity
    return [Allocation(f, w, q, d) for (f, w, d), q in sorted(merged.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2]))]


# --- heuristic ----------------------------------------------------------------------------------------


def _heuristic(p: _Problem, rules: PlanRules) -> LinePlan:
    """Delivery by delivery, week by week: give each week's work to the least-utilised eligible members."""
    free: dict[tuple[int, str], int] = {(i, w): units for i, w, units in p.cells}
    capacity = [0] * len(p.candidates)
    for i, _, units in p.cells:
        capacity[i] += units
    load = [c.already for c in p.candidates]
    taken = [0] * len(p.candidates)
    by_week: dict[str, list[int]] = {}
    for i, w, _ in p.cells:
        by_week.setdefault(w, []).append(i)
    made: list[tuple[str, str, int]] = []
    for j, demand in enumerate(p.demands):
        remaining = demand.quantity
        usable = p.weeks[: p.deadline_index[j]]
        while remaining > 0:
            progressed = False
            for w in usable:
                if remaining == 0:
                    break
                order = sorted(
                    (i for i in by_week.get(w, []) if free[(i, w)] >= rules.min_quantity and taken[i] < p.share_cap[i]),
                    key=lambda i: (load[i] / max(1, capacity[i] + p.candidates[i].already), -p.candidates[i].quality, p.candidates[i].foundry_code),
                )
                if not order:
                    continue
                i = order[0]
                # One chunk per week and pass, so work rotates across members instead of filling one.
                chunk = min(free[(i, w)], remaining, p.share_cap[i] - taken[i], max(rules.min_quantity, math.ceil(demand.quantity / max(1, len(usable)))))
                if chunk < rules.min_quantity and chunk < remaining:
                    continue
                free[(i, w)] -= chunk
                load[i] += chunk
                taken[i] += chunk
                remaining -= chunk
                made.append((p.candidates[i].foundry_code, w, chunk))
                progressed = True
            if not progressed:
                break
    return _assign_to_deliveries(p, made, rules, "heuristic")


def greedy_baseline(demands: Sequence[Demand], candidates: Sequence[Candidate], today: date, rules: PlanRules = PlanRules()) -> LinePlan:
    """The naive plan a spreadsheet would give: fill the earliest weeks, members in code order. For benchmarks."""
    p = _prepare(demands, candidates, rules, today, None)
    free = {(i, w): units for i, w, units in p.cells}
    made: list[tuple[str, str, int]] = []
    order = sorted(range(len(p.candidates)), key=lambda i: p.candidates[i].foundry_code)
    for j, demand in enumerate(p.demands):
        remaining = demand.quantity
        for w in p.weeks[: p.deadline_index[j]]:
            for i in order:
                if remaining == 0:
                    break
                units = min(free.get((i, w), 0), remaining)
                if units >= rules.min_quantity or (units == remaining and units > 0):
                    free[(i, w)] -= units
                    remaining -= units
                    made.append((p.candidates[i].foundry_code, w, units))
    return _assign_to_deliveries(p, made, rules, "greedy")


def shortfall_by_week(plan: LinePlan, rules: PlanRules = PlanRules()) -> dict[str, int]:
    """The shortfall expressed in the ISO week production would have had to finish: the explanation people read."""
    out: dict[str, int] = {}
    for due, units in plan.shortfall.items():
        if units:
            latest = due - timedelta(days=rules.lead_days)
            last_sunday = latest - timedelta(days=(latest.weekday() + 1) % 7)
            week = iso_week(last_sunday)
            out[week] = out.get(week, 0) + units
    return out
