"""The allocation planner: who makes how many of a line, in which ISO week. Pure: no I/O.

Meets due dates first; then spreads work fairly across members (*pemerataan*: the lowest possible highest
utilisation of free capacity), keeps a minimum useful quantity per foundry-week and a maximum share per
foundry, and prefers better quality records. A member whose certificates run out may still make the
deliveries due before they do. Capacity that cannot be found is reported as a shortfall per delivery and
per week instead of failing.

How (see `plan_line`): a lower bound on the utilisation any plan needs, and a plan built at that level; a
water-filling heuristic; and, when neither reaches the bound with every due date met, an exact model (scipy
`milp`, HiGHS) under what is left of the time limit. The best plan by `score` is kept.
"""

from __future__ import annotations

import bisect
import heapq
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from shared.weeks import iso_week, week_end, week_start, weeks_between

# A plan whose utilisation is within this fraction of the lower bound counts as reaching it.
LEVEL_TOLERANCE = 0.001


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
    serves_until: date | None = None  # the last due date it may serve (a certificate runs out); None: all


@dataclass(frozen=True)
class PlanRules:
    min_quantity: int = 200  # a foundry-week below this is not worth setting up a press or a melt (the item's minimum lot)
    max_share: float = 0.35  # of the line, per foundry: limits the damage one failing member can do (see `share_cap`)
    lead_days: int = 14  # from the end of the production week to the due date: testing and transport
    # Production finishes this much earlier still where capacity allows, so a failed lot can be made again in
    # time; where it does not, the latest weeks are used (see `plan_line`).
    safety_lead_days: int = 0
    time_limit_s: float = 1.5  # for the whole call; the exact model gets what the heuristics leave of it
    shortfall_penalty: float = 1_000.0
    fairness_weight: float = 10.0
    quality_weight: float = 1.0
    # A replan must answer at once: when the units to plan are at most `quick_share` of the line, the solver
    # gets at most `quick_time_limit_s` (see `plan_line`).
    quick_share: float = 0.1
    quick_time_limit_s: float = 0.1


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
    solver: str  # "level", "heuristic", "milp" or "milp-time-limit" (see `plan_line`); "greedy" for the baseline
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    # No plan making every unit can have a lower `max_utilisation` (due dates aside); None for the baseline.
    utilisation_bound: float | None = None

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
    demands: list[Demand]  # by due date
    weeks: list[str]  # production weeks, ascending; cells refer to them by position
    deadline_index: list[int]  # per demand: how many weeks finish in time for it
    candidates: list[Candidate]
    limit: list[int]  # per candidate: the last demand (by position) it may serve; -1 for none
    capacity: list[int]  # per candidate: free capacity plus what it already makes, as `score` counts it
    share_cap: list[int]  # per candidate: the most it may still take
    cells: list[tuple[int, int, int]]  # (candidate, week position, free units) usable for a demand it may serve
    line_total: int

    @property
    def demanded(self) -> int:
        return sum(d.quantity for d in self.demands)


def share_cap(line_total: int, rules: PlanRules) -> int:
    """The most of a line one member may make: `max_share` of it, but never less than the minimum lot allows.

    A small line cannot be spread: at most `line_total // min_quantity` members can each make a minimum lot, so
    the cap is at least what each of those must take (a 300-unit line at 200 per foundry-week goes to one member,
    500 units to two). Once a line needs no fewer members by its share than its minimum lots allow (600 units at
    200 and 35 %), the share alone decides.
    """
    spread = max(1, line_total // max(1, rules.min_quantity))
    return max(math.floor(rules.max_share * line_total), -(-line_total // spread))


def _prepare(
    demands: Sequence[Demand],
    candidates: Sequence[Candidate],
    rules: PlanRules,
    today: date,
    line_total: int | None,
    minimum_lot: int | None = None,
) -> _Problem:
    """`minimum_lot`: the item's minimum lot when `rules.min_quantity` was lowered for a small remake; the share
    cap is the line's, whatever the units being planned now."""
    ordered = sorted((d for d in demands if d.quantity > 0), key=lambda d: d.due_date)
    total = line_total if line_total is not None else sum(d.quantity for d in ordered)
    lead = timedelta(days=rules.lead_days)
    first_week = iso_week(today + timedelta(days=7 - today.weekday()))  # production starts next week
    last_due = max((d.due_date for d in ordered), default=today)
    weeks = [w for w in weeks_between(week_start(first_week), last_due) if week_end(w) + lead <= last_due]
    deadline_index = [sum(1 for w in weeks if week_end(w) + lead <= d.due_date) for d in ordered]
    limit = [
        len(ordered) - 1 if c.serves_until is None else sum(1 for d in ordered if d.due_date <= c.serves_until) - 1
        for c in candidates
    ]
    position = {w: n for n, w in enumerate(weeks)}
    cells = []
    for i, c in enumerate(candidates):
        usable = deadline_index[limit[i]] if limit[i] >= 0 else 0
        for w, units in sorted(c.free.items()):
            n = position.get(w)
            if n is not None and n < usable and units >= rules.min_quantity:
                cells.append((i, n, int(units)))
    capacity = [sum(c.free.values()) + c.already for c in candidates]
    most = share_cap(total, rules if minimum_lot is None else replace(rules, min_quantity=minimum_lot))
    room = [max(0, most - c.already) for c in candidates]
    return _Problem(ordered, weeks, deadline_index, list(candidates), limit, capacity, room, cells, total)


def plan_line(
    demands: Sequence[Demand],
    candidates: Sequence[Candidate],
    today: date,
    rules: PlanRules = PlanRules(),
    *,
    line_total: int | None = None,
    exact: bool = True,
) -> LinePlan:
    """Plans the given deliveries on the candidates' free capacity; never plans more than is demanded.

    Up to three plans compete and the best by `score` is returned, with the bound it was measured against:
    1. "level": the lowest utilisation any plan can have is bounded from below, due dates aside: the lowest level
       at which the members' largest loads (whole foundry-weeks under the level, within their share) add up to
       the demand. At that level loads go to better quality records first (a small exact program settles them
       when whole weeks leave units over), each member's into its fullest weeks, moved earlier where a delivery
       would be late; the level is raised while due dates leave units short. Without shortfall at the bound,
       no plan has a lower utilisation.
    2. "heuristic": water-filling, delivery by delivery and week by week.
    3. With `exact`, when neither met every due date at the bound: the exact model ("milp", or "milp-time-limit"
       when it stopped early) searches the lowest level at which HiGHS meets the due dates, in the time left.

    The call takes at most about `rules.time_limit_s`. When the units to plan are at most `rules.quick_share` of
    `line_total` (a replan of the units one foundry lost), the solver gets at most `rules.quick_time_limit_s`
    instead, so that at full size (170 members × 52 weeks) the call answers within about 0.2 s. With
    `exact=False` no solver runs at all. Fewer units in all than `rules.min_quantity` (a remake of units refused
    at handover) are made in one foundry-week below the minimum rather than not at all.

    With `rules.safety_lead_days`, the plan's foundry-weeks are then moved earlier, within each member, so that
    production finishes that much sooner where free weeks allow (`_with_safety_lead`).
    """
    if rules.safety_lead_days > 0:
        return _with_safety_lead(demands, candidates, today, rules, line_total, exact)
    started = time.perf_counter()
    units = sum(d.quantity for d in demands if d.quantity > 0)
    minimum_lot = rules.min_quantity
    if 0 < units < rules.min_quantity:
        # Fewer units than a useful foundry-week (a remake of refused units): one foundry-week makes them all.
        rules = replace(rules, min_quantity=units)
    p = _prepare(demands, candidates, rules, today, line_total, minimum_lot)
    members = _Members(p, rules)
    bound = members.lowest_level(p.demanded)
    limit = rules.time_limit_s
    if p.demanded <= rules.quick_share * p.line_total:
        limit = min(limit, rules.quick_time_limit_s)
    # Without `exact`, no HiGHS at all: the level plan's loads come from quality order alone.
    plans = [_level_plan(p, rules, members, bound, started + limit if exact else started), _heuristic(p, rules)]
    plan = min(plans, key=lambda plan: score(plan, p.candidates, rules))
    at_bound = plan.feasible and max_utilisation(plan, p.candidates) <= bound * (1 + LEVEL_TOLERANCE) + 1e-12
    if exact and members.members and not at_bound:
        exact_plan = _solve_milp(p, rules, members, plan, bound, started + limit)
        if exact_plan is not None and score(exact_plan, p.candidates, rules) < score(plan, p.candidates, rules):
            plan = exact_plan
    plan.utilisation_bound = bound
    plan.seconds = time.perf_counter() - started
    return plan


def _with_safety_lead(
    demands: Sequence[Demand],
    candidates: Sequence[Candidate],
    today: date,
    rules: PlanRules,
    line_total: int | None,
    exact: bool,
) -> LinePlan:
    """The plan without the lead, its foundry-weeks then moved earlier, each to a free week of the same member,
    until production finishes `rules.safety_lead_days` before it must, delivery by delivery, as far as free weeks
    allow (`_on_time` with the longer lead); what cannot move stays in the latest weeks. Members' loads do not
    change, so neither do utilisation and score: the lead costs no fairness, and it never makes a delivery late."""
    started = time.perf_counter()
    plain = replace(rules, safety_lead_days=0)
    plan = plan_line(demands, candidates, today, plain, line_total=line_total, exact=exact)
    units = sum(d.quantity for d in demands if d.quantity > 0)
    minimum = min(rules.min_quantity, units) if units else rules.min_quantity
    at = replace(plain, min_quantity=max(1, minimum))
    p = _prepare(demands, candidates, at, today, line_total, rules.min_quantity)
    if not plan.allocations or not p.demands:
        return plan
    members = _Members(p, at)
    index = {c.foundry_code: i for i, c in enumerate(p.candidates)}
    position = {w: n for n, w in enumerate(p.weeks)}
    placed: dict[int, dict[int, int]] = {}
    for a in plan.allocations:
        weeks = placed.setdefault(index[a.foundry_code], {})
        weeks[position[a.week]] = weeks.get(position[a.week], 0) + a.quantity
    lead = timedelta(days=rules.lead_days + rules.safety_lead_days)
    earlier = replace(p, deadline_index=[sum(1 for w in p.weeks if week_end(w) + lead <= d.due_date) for d in p.demands])
    moved = _on_time(earlier, members, {i: sorted(weeks.items()) for i, weeks in placed.items()})
    early = _assign_to_deliveries(p, moved, plan.solver, at.min_quantity)
    # Moving production earlier cannot leave a delivery shorter; the check keeps the plan honest if it ever did.
    if sum(early.shortfall.values()) > sum(plan.shortfall.values()):
        return plan
    early.notes = plan.notes
    early.utilisation_bound = plan.utilisation_bound
    early.seconds = time.perf_counter() - started
    return early


def score(plan: LinePlan, candidates: Sequence[Candidate], rules: PlanRules = PlanRules()) -> float:
    """The planner's objective for any plan (lower is better): shortfall first, then fairness, then quality."""
    total = max(1, plan.planned + sum(plan.shortfall.values()))
    load = plan.load_by_foundry()
    quality_cost = sum((1.0 - c.quality) * load.get(c.foundry_code, 0) / total for c in candidates)
    return (
        rules.shortfall_penalty * sum(plan.shortfall.values())
        + rules.fairness_weight * max_utilisation(plan, candidates)
        + rules.quality_weight * quality_cost
    )


def max_utilisation(plan: LinePlan, candidates: Sequence[Candidate]) -> float:
    """The fairness term of `score`: the largest share of a member's free capacity (plus what it already makes
    of the line) the line takes."""
    load = plan.load_by_foundry()
    utilisation = 0.0
    for c in candidates:
        capacity = sum(c.free.values()) + c.already
        if capacity:
            utilisation = max(utilisation, (load.get(c.foundry_code, 0) + c.already) / capacity)
    return utilisation


def greedy_baseline(
    demands: Sequence[Demand], candidates: Sequence[Candidate], today: date, rules: PlanRules = PlanRules()
) -> LinePlan:
    """The naive plan a spreadsheet would give: fill the earliest weeks, members in code order, each up to its
    share and only for deliveries it may serve. For benchmarks."""
    p = _prepare(demands, candidates, rules, today, None)
    free = {(i, w): units for i, w, units in p.cells}
    room = list(p.share_cap)
    made: list[tuple[int, int, int]] = []
    order = sorted(range(len(p.candidates)), key=lambda i: p.candidates[i].foundry_code)
    for j, demand in enumerate(p.demands):
        remaining = demand.quantity
        for w in range(p.deadline_index[j]):
            for i in order:
                if remaining == 0:
                    break
                if p.limit[i] < j:
                    continue
                units = min(free.get((i, w), 0), remaining, room[i])
                if units >= rules.min_quantity or (units == remaining and units > 0):
                    free[(i, w)] -= units
                    room[i] -= units
                    remaining -= units
                    made.append((i, w, units))
    return _assign_to_deliveries(p, made, "greedy", rules.min_quantity)


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


# --- assignment of production to deliveries ------------------------------------------------------------


def _assign(p: _Problem, made: Iterable[tuple[int, int, int]]) -> tuple[list[Allocation], list[int], dict[tuple[int, int], int]]:
    """Assigns production (candidate, week position, units) to deliveries: (allocations, units short per
    delivery, units per candidate-week no delivery could take).

    Delivery by delivery, earliest first, each takes the production whose use runs out soonest: that of members
    who may serve fewer deliveries, then the earliest weeks. This assigns as much as any assignment could, so
    production of a member limited to early deliveries is never stranded while a later one takes its place.
    """
    pieces = [[i, w, q] for i, w, q in made if q > 0]
    pieces.sort(key=lambda m: (p.limit[m[0]], m[1], p.candidates[m[0]].foundry_code))
    allocations: list[Allocation] = []
    short = []
    for j, demand in enumerate(p.demands):
        need = demand.quantity
        deadline = p.deadline_index[j]
        for piece in pieces:
            if need == 0:
                break
            i, w, left = piece
            if left == 0 or w >= deadline or p.limit[i] < j:
                continue
            take = min(left, need)
            allocations.append(Allocation(p.candidates[i].foundry_code, p.weeks[w], take, demand.due_date))
            piece[2] -= take
            need -= take
        short.append(need)
    stranded: dict[tuple[int, int], int] = {}
    for i, w, left in pieces:
        if left:
            stranded[(i, w)] = stranded.get((i, w), 0) + left
    return allocations, short, stranded


def _assign_to_deliveries(p: _Problem, made: Iterable[tuple[int, int, int]], solver: str, minimum: int) -> LinePlan:
    """The plan of some production. What no production covers is shortfall. Production no delivery can take
    is left out rather than planned for nothing, and a foundry-week left below the minimum quantity by that is
    left out whole (its deliveries may then be covered by other production)."""
    made = [m for m in made if m[2] > 0]
    while True:  # ends: each round leaves out at least one foundry-week
        allocations, short, stranded = _assign(p, made)
        total: dict[tuple[int, int], int] = {}
        for i, w, units in made:
            total[(i, w)] = total.get((i, w), 0) + units
        too_small = {key for key, units in stranded.items() if 0 < total[key] - units < minimum}
        if not too_small:
            break
        made = [m for m in made if (m[0], m[1]) not in too_small]
    shortfall = {d.due_date: 0 for d in p.demands}
    for demand, units in zip(p.demands, short, strict=False):
        shortfall[demand.due_date] += units
    plan = LinePlan(_merge(allocations), shortfall, solver)
    if stranded:
        plan.notes.append(f"{sum(stranded.values())} units of production could not serve any delivery and were left out")
    return plan


def _merge(allocations: list[Allocation]) -> list[Allocation]:
    merged: dict[tuple[str, str, date], int] = {}
    for a in allocations:
        merged[(a.foundry_code, a.week, a.due_date)] = merged.get((a.foundry_code, a.week, a.due_date), 0) + a.quantity
    return [Allocation(f, w, q, d) for (f, w, d), q in sorted(merged.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2]))]


# --- members and utilisation levels -------------------------------------------------------------------


@dataclass
class _Member:
    index: int  # of the candidate
    weeks: list[tuple[int, int, int]]  # (week position, free units, window), ascending
    fullest: list[int]  # free units of its weeks, largest first
    free_in: dict[int, int] = field(default_factory=dict)  # window → free units
    fullest_in: dict[int, list[int]] = field(default_factory=dict)  # window → free units of its weeks there, largest first


class _Members:
    """The members that can make some of the line, and what each can take under a utilisation level.

    A member's load is a whole number of foundry-weeks, each from the minimum quantity up to that week's free
    units: with n weeks, from n minima up to its n fullest weeks. Under a level its load is further capped by
    the level times its capacity, less what it already makes, and by its share.
    Windows are the weeks between consecutive deadlines: production anywhere in a window serves the same
    deliveries.
    """

    def __init__(self, p: _Problem, rules: PlanRules) -> None:
        self.p = p
        self.rules = rules
        self.bounds = sorted(set(p.deadline_index))
        window_of_demand = [self.bounds.index(d) for d in p.deadline_index]
        self.first_demand = [  # per window: the first delivery its production can serve
            min((j for j, k_j in enumerate(window_of_demand) if k_j >= k), default=len(p.demands))
            for k in range(len(self.bounds))
        ]
        weeks: dict[int, list[tuple[int, int, int]]] = {}
        for i, w, units in p.cells:
            weeks.setdefault(i, []).append((w, units, bisect.bisect_right(self.bounds, w)))
        self.members = []
        for i in sorted(weeks):
            m = _Member(i, sorted(weeks[i]), sorted((units for _, units, _ in weeks[i]), reverse=True))
            for _, units, k in m.weeks:
                m.free_in[k] = m.free_in.get(k, 0) + units
                m.fullest_in.setdefault(k, []).append(units)
            for fullest in m.fullest_in.values():
                fullest.sort(reverse=True)
            self.members.append(m)

    def cap(self, m: _Member, level: float) -> int:
        c = self.p.candidates[m.index]
        return min(self.p.share_cap[m.index], math.floor(level * self.p.capacity[m.index] - c.already + 1e-9))

    def achievable(self, m: _Member, at_most: int) -> int:
        """The largest load of whole foundry-weeks not above `at_most` (0 when none)."""
        best, made = 0, 0
        for n, units in enumerate(m.fullest, start=1):
            if n * self.rules.min_quantity > at_most:
                break
            made += units
            best = max(best, min(made, at_most))
        return best

    def lowest_level(self, units: int) -> float:
        """The lowest level at which the members' largest loads add up to `units`, due dates aside (to within
        1e-9; 1.0 when they never do), and not below what members already make of the line: no plan making them
        all can have a lower utilisation."""
        low = max(
            [c.already / capacity for c, capacity in zip(self.p.candidates, self.p.capacity, strict=False) if capacity] + [0.0]
        )
        high = 1.0
        if sum(self.achievable(m, self.cap(m, high)) for m in self.members) < units:
            return high
        if sum(self.achievable(m, self.cap(m, low)) for m in self.members) >= units:
            return low
        for _ in range(32):
            mid = (low + high) / 2
            if sum(self.achievable(m, self.cap(m, mid)) for m in self.members) >= units:
                high = mid
            else:
                low = mid
        return high

    def loads_at(self, level: float, deadline: float) -> dict[int, int]:
        """Loads (member position → units) at a level, due dates aside: better quality records first, members
        limited to early deliveries taking no more than those deliveries need. When whole foundry-weeks leave
        units over that way, an exact program decides instead, if there is time before `deadline`."""
        loads = self._by_quality(level)
        time_left = min(0.05, deadline - time.perf_counter())
        if sum(loads.values()) < self.p.demanded and time_left > 0.005:
            exact = self._exact_loads(level, time_left)
            if sum(exact.values()) > sum(loads.values()):
                return exact
        return loads

    def _by_quality(self, level: float) -> dict[int, int]:
        p, minimum = self.p, self.rules.min_quantity
        left = p.demanded
        cumulative = list(np.cumsum([d.quantity for d in p.demands]))
        by_limit = [0] * len(p.demands)  # units taken by members limited to each delivery
        loads: dict[int, int] = {}
        order = sorted(
            range(len(self.members)), key=lambda n: (-p.candidates[self.members[n].index].quality, self.members[n].index)
        )

        def room(n: int) -> int:
            # what deliveries up to each one need, less what members limited to them or earlier already take
            taken = list(np.cumsum(by_limit))
            return int(min(cumulative[j] - taken[j] for j in range(p.limit[self.members[n].index], len(p.demands))))

        for raise_only in (False, True):  # then top up members already chosen, for a remainder below the minimum
            for n in order:
                if left == 0:
                    break
                m = self.members[n]
                has = loads.get(n, 0)
                if raise_only != bool(has):
                    continue
                load = self.achievable(m, min(self.cap(m, level), has + left, has + room(n)))
                if not raise_only and 0 < left - load < minimum:
                    load = self.achievable(m, left - minimum)  # leave a useful quantity for another member
                if load > has:
                    loads[n] = load
                    by_limit[p.limit[m.index]] += load - has
                    left -= load - has
        return loads

    def _exact_loads(self, level: float, time_limit: float) -> dict[int, int]:
        """The loads at a level with the least shortfall, then the best quality records, due dates aside.

        A small mixed-integer program: per member its load and a count of weeks (the load lies between that
        many minimum quantities and that many of its fullest weeks, a concave bound with one line per week).
        """
        p, minimum = self.p, self.rules.min_quantity
        chosen = [(n, m, min(self.cap(m, level), sum(m.fullest))) for n, m in enumerate(self.members)]
        chosen = [(n, m, most) for n, m, most in chosen if most >= minimum]
        if not chosen:
            return {}
        k = len(chosen)
        rows = _Rows()
        for r, (_, m, most) in enumerate(chosen):
            rows.add([(r, 1.0), (k + r, -float(minimum))], 0.0, np.inf)
            made = 0
            for count, units in enumerate(m.fullest[: most // minimum]):
                rows.add([(r, 1.0), (k + r, -float(units))], -np.inf, float(made - count * units))
                made += units
        rows.add([(r, 1.0) for r in range(k)] + [(2 * k, 1.0)], float(p.demanded), float(p.demanded))
        cumulative = 0
        for j, demand in enumerate(p.demands[:-1]):
            cumulative += demand.quantity
            limited = [r for r, (_, m, _) in enumerate(chosen) if p.limit[m.index] <= j]
            if limited:
                rows.add([(r, 1.0) for r in limited], -np.inf, float(cumulative))
        # Scaled for HiGHS: a unit short costs more than the worst quality record on every unit.
        cost = np.array([1.0 - p.candidates[m.index].quality for _, m, _ in chosen] + [0.0] * k + [float(max(1, p.demanded))])
        high = np.array(
            [most for _, _, most in chosen] + [len(m.fullest[: most // minimum]) for _, m, most in chosen] + [p.demanded],
            dtype=float,
        )
        result = milp(
            cost,
            constraints=rows.constraint(2 * k + 1),
            integrality=np.ones(2 * k + 1, dtype=np.int8),
            bounds=Bounds(np.zeros(2 * k + 1), high),
            options={"time_limit": time_limit, "mip_rel_gap": 1e-3, "disp": False},
        )
        if result.x is None:
            return {}
        loads = np.rint(result.x[:k]).astype(int)
        return {n: int(units) for (n, _, _), units in zip(chosen, loads, strict=False) if units > 0}


class _Rows:
    """Rows of a linear program, collected entry by entry."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []

    def add(self, entries: Iterable[tuple[int, float]], lo: float, hi: float) -> None:
        row = len(self.lower)
        for col, val in entries:
            self.rows.append(row)
            self.cols.append(col)
            self.vals.append(val)
        self.lower.append(lo)
        self.upper.append(hi)

    def constraint(self, n_vars: int) -> LinearConstraint:
        matrix = coo_array((self.vals, (self.rows, self.cols)), shape=(len(self.lower), n_vars)).tocsr()
        return LinearConstraint(matrix, np.array(self.lower), np.array(self.upper))


def _level_plan(p: _Problem, rules: PlanRules, members: _Members, bound: float, deadline: float) -> LinePlan:
    """The plan at the lowest level the due dates allow: loads by quality, placed in each member's fullest
    weeks, then moved earlier where a delivery would be late.

    It starts at the bound, or a little above it while better quality records are worth more than the
    utilisation they cost. When due dates or members limited to early deliveries leave it short, it searches
    upwards (1 %, 2 %, 4 %, … above) and then bisects, a dozen plans at most: each takes milliseconds.
    """
    loads_by_level: dict[float, dict[int, int]] = {}

    def loads(level: float) -> dict[int, int]:
        if level not in loads_by_level:
            loads_by_level[level] = members.loads_at(level, deadline)
        return loads_by_level[level]

    def relaxed(level: float) -> float:
        """The score these loads would have if due dates allowed them."""
        at = loads(level)
        utilisation = max(
            [(at.get(n, 0) + p.candidates[m.index].already) / max(1, p.capacity[m.index]) for n, m in enumerate(members.members)]
            + [c.already / capacity for c, capacity in zip(p.candidates, p.capacity, strict=False) if capacity]
            + [0.0]
        )
        quality = sum((1.0 - p.candidates[members.members[n].index].quality) * units for n, units in at.items()) / max(
            1, p.demanded
        )
        return (
            rules.shortfall_penalty * (p.demanded - sum(at.values()))
            + rules.fairness_weight * utilisation
            + rules.quality_weight * quality
        )

    def plan_at(level: float) -> LinePlan:
        weeks = {n: [(w, f) for w, f, _ in members.members[n].weeks] for n in loads(level)}
        placed = {members.members[n].index: _into_weeks(units, weeks[n], rules.min_quantity) for n, units in loads(level).items()}
        return _assign_to_deliveries(p, _on_time(p, members, placed), "level", rules.min_quantity)

    start = min(1.0, bound + 1e-12)
    for factor in (1.01, 1.03, 1.1, 1.3):
        level = min(1.0, bound * factor + 1e-12)
        if level <= start or relaxed(level) >= relaxed(start):
            break
        start = level
    best = plan_at(start)
    if best.feasible or start >= 1.0:
        return best
    low, high, step = start, None, 0.01
    for _ in range(12):
        level = min(1.0, low * (1 + step)) if high is None else (low + high) / 2
        plan = plan_at(level)
        if score(plan, p.candidates, rules) < score(best, p.candidates, rules):
            best = plan
        if plan.feasible:
            high = level
        else:
            low = level
            step *= 2
        if (high is None and level >= 1.0) or (high is not None and high - low <= LEVEL_TOLERANCE * high):
            break
    return best


def _on_time(p: _Problem, members: _Members, placed: dict[int, list[tuple[int, int]]]) -> list[tuple[int, int, int]]:
    """Moves foundry-weeks earlier, each to a free week of the same member, until every delivery can be made.

    Earlier production serves every delivery later production could, and a member's load does not change, so a
    move can only help. For each delivery, earliest first, while what is made before its deadline falls short
    of what is due by then, the foundry-week closest after the deadline moves to the member's latest free week
    before it: production stays as close to its delivery as the due dates allow. A second round, assigning
    after each move, covers members limited to early deliveries.
    """
    free = {(m.index, w): units for m in members.members for w, units, _ in m.weeks}
    weeks_of = {m.index: [w for w, _, _ in m.weeks] for m in members.members}
    chunks = {(i, w): units for i, weeks in placed.items() for w, units in weeks}

    def late_for(j: int) -> list[tuple[int, int]]:
        """Foundry-weeks too late for delivery j whose member may serve it, closest after its deadline first."""
        deadline = p.deadline_index[j]
        return sorted((key for key in chunks if key[1] >= deadline and p.limit[key[0]] >= j), key=lambda key: (key[1], key[0]))

    def move_before(deadline: int, late: list[tuple[int, int]], most: int) -> int:
        """Moves up to `most` units of one of the `late` foundry-weeks to before the deadline, keeping every
        foundry-week at the minimum quantity or more: the whole week to a free week, else part of it onto a
        week the member already works, else part of it to a free week. Returns the units moved (0: none)."""
        minimum = members.rules.min_quantity
        for whole in (True, False):
            for i, w in late:
                units = chunks.get((i, w), 0)
                if not units:
                    continue
                for e in reversed(weeks_of[i]):
                    if e >= deadline:
                        continue
                    room = free[(i, e)] - chunks.get((i, e), 0)
                    if whole:
                        part = units if (i, e) not in chunks and room >= units else 0
                    else:
                        part = min(room, most, units)
                        if 0 < units - part < minimum:
                            part = units - minimum
                        if (i, e) not in chunks and part < minimum:
                            part = 0
                    if part > 0:
                        chunks[(i, e)] = chunks.get((i, e), 0) + part
                        if part == units:
                            del chunks[(i, w)]
                        else:
                            chunks[(i, w)] = units - part
                        return part
        return 0

    due = 0
    for j, demand in enumerate(p.demands):
        due += demand.quantity
        deadline = p.deadline_index[j]
        short = due - sum(units for (_, w), units in chunks.items() if w < deadline)
        late = late_for(j) if short > 0 else []
        while short > 0:
            units = move_before(deadline, late, short)
            if not units:
                break
            short -= units
    for _ in range(len(chunks)):
        _, short_by_delivery, _ = _assign(p, [(i, w, units) for (i, w), units in chunks.items()])
        first_short = next((j for j, short in enumerate(short_by_delivery) if short), None)
        if first_short is None or not move_before(
            p.deadline_index[first_short], late_for(first_short), short_by_delivery[first_short]
        ):
            break
    return [(i, w, units) for (i, w), units in chunks.items()]


def _into_weeks(quantity: int, weeks: list[tuple[int, int]], minimum: int) -> list[tuple[int, int]]:
    """Units as (week position, units) over as few of the given (week position, free units) as possible, the
    fullest (the latest among equals: closest to the deliveries), each from the minimum quantity up to its free
    units. Callers only ask for quantities that whole weeks allow; what does not fit is left out (shortfall)."""
    if quantity < minimum or not weeks:
        return []
    fullest = sorted(weeks, key=lambda wf: (-wf[1], -wf[0]))
    count, made = 0, 0
    while count < len(fullest) and made < quantity:
        made += fullest[count][1]
        count += 1
    chosen = fullest[: max(1, min(count, quantity // minimum))]
    amounts = [minimum] * len(chosen)
    left = quantity - minimum * len(chosen)
    for n, (_, free) in enumerate(chosen):
        extra = min(free - minimum, left)
        amounts[n] += extra
        left -= extra
    return sorted((w, units) for (w, _), units in zip(chosen, amounts, strict=False))


# --- heuristic ----------------------------------------------------------------------------------------


def _heuristic(p: _Problem, rules: PlanRules) -> LinePlan:
    """Water-filling, delivery by delivery: every step of work goes to the member whose utilisation after it is
    lowest, so a member joins only when the level reaches what its first minimum quantity costs. When some
    members may serve only early deliveries, a second pass gives them the work first (their capacity is useless
    later) and the better of the two is kept."""
    utilisation = _utilisation_rank(p)
    plans = [_assign_to_deliveries(p, _fill(p, rules, utilisation), "heuristic", rules.min_quantity)]
    if any(limit < len(p.demands) - 1 for limit in p.limit):
        soonest = _soonest_rank(p, utilisation)
        plans.append(_assign_to_deliveries(p, _fill(p, rules, soonest), "heuristic", rules.min_quantity))
    return min(plans, key=lambda plan: score(plan, p.candidates, rules))


Rank = Callable[[int, int], tuple[float | int, ...]]  # (candidate, its load after the step) → sort key, lowest goes first


def _utilisation_rank(p: _Problem) -> Rank:
    capacity = [max(1, c) for c in p.capacity]
    quality = [-c.quality for c in p.candidates]

    def rank(i: int, load: int) -> tuple[float | int, ...]:
        return (load / capacity[i], quality[i], i)

    return rank


def _soonest_rank(p: _Problem, utilisation: Rank) -> Rank:
    def rank(i: int, load: int) -> tuple[float | int, ...]:
        return (p.limit[i], *utilisation(i, load))

    return rank


def _fill(p: _Problem, rules: PlanRules, rank: Rank) -> list[tuple[int, int, int]]:
    """Fills the deliveries earliest first, in small steps, each to the member `rank` puts first.

    A step tops up a foundry-week the member already has (a tenth of the minimum quantity, so loads can even
    out finely) or opens a new one with the minimum quantity. A new week's units beyond the delivery's need
    count towards the member's later deliveries.
    """
    minimum = rules.min_quantity
    step = max(1, minimum // 10)
    n = len(p.candidates)
    weeks_of: list[list[int]] = [[] for _ in range(n)]
    free: dict[tuple[int, int], int] = {}
    for i, w, units in p.cells:
        weeks_of[i].append(w)
        free[(i, w)] = units
    load = [c.already for c in p.candidates]
    room = list(p.share_cap)
    used: list[list[int]] = [[] for _ in range(n)]
    made: dict[tuple[int, int], int] = {}
    remaining = [d.quantity for d in p.demands]

    def next_step(i: int, j: int) -> tuple[int, int] | None:
        need = remaining[j]
        if room[i] <= 0 or need <= 0:
            return None
        deadline = p.deadline_index[j]
        for w in used[i]:
            if w < deadline and free[(i, w)] > 0:
                return w, int(min(step, need, free[(i, w)], room[i]))
        if room[i] < minimum or sum(remaining[j : p.limit[i] + 1]) < minimum:
            return None
        best = -1
        for w in weeks_of[i]:
            if w >= deadline:
                break
            if free[(i, w)] >= minimum and (best < 0 or free[(i, w)] >= free[(i, best)]):
                best = w
        return (best, minimum) if best >= 0 else None

    def take(i: int, j: int, w: int, units: int) -> None:
        if (i, w) not in made:
            used[i].append(w)
        made[(i, w)] = made.get((i, w), 0) + units
        free[(i, w)] -= units
        load[i] += units
        room[i] -= units
        for k in range(j, p.limit[i] + 1):  # a new week's units beyond this delivery's need go to later ones
            covered = min(units, remaining[k])
            remaining[k] -= covered
            units -= covered
            if not units:
                break

    for j in range(len(p.demands)):
        heap = []
        for i in range(n):
            if p.limit[i] >= j and weeks_of[i]:
                move = next_step(i, j)
                if move is not None:
                    heap.append((rank(i, load[i] + move[1]), i))
        heapq.heapify(heap)
        while remaining[j] > 0 and heap:
            key, i = heapq.heappop(heap)
            move = next_step(i, j)
            if move is None:
                continue
            fresh = rank(i, load[i] + move[1])
            if fresh > key:  # its step changed since it was queued: queue it again at its real rank
                heapq.heappush(heap, (fresh, i))
                continue
            take(i, j, *move)
            move = next_step(i, j)
            if move is not None:
                heapq.heappush(heap, (rank(i, load[i] + move[1]), i))
    return [(i, w, units) for (i, w), units in made.items()]


# --- exact model ------------------------------------------------------------------------------------


def _solve_milp(
    p: _Problem, rules: PlanRules, members: _Members, incumbent: LinePlan, bound: float, deadline: float
) -> LinePlan | None:
    """The exact model's best plan by `score`, or None when it finds none in time.

    Shortfall first: when the incumbent is short, the model is solved once at level 1 for the least shortfall
    due dates allow. Then the lowest level at which the model keeps that shortfall is searched between the
    lower bound and the incumbent's level: first just above the bound (loose due dates usually allow a plan
    there), then by bisection. A level that allows no plan is usually proved so in milliseconds, and each try
    gets at most half the time left. With time to spare, a few levels above are tried for better quality
    records. The plan is "milp" when the search closed to within 0.1 % and HiGHS finished every step, else
    "milp-time-limit".
    """
    short = sum(incumbent.shortfall.values())
    high = max_utilisation(incumbent, p.candidates)
    best: LinePlan | None = None
    proved = True

    def keep(plan: LinePlan | None) -> bool:
        nonlocal best
        if plan is None or sum(plan.shortfall.values()) > short:
            return False
        if best is None or score(plan, p.candidates, rules) < score(best, p.candidates, rules):
            best = plan
        return True

    if short:
        plan, _ = _model_at(p, rules, members, 1.0, short, deadline)
        if plan is not None and sum(plan.shortfall.values()) < short:
            short, high = sum(plan.shortfall.values()), max_utilisation(plan, p.candidates)
            keep(plan)
        bound = members.lowest_level(p.demanded - short)
    low = bound
    level = min(high, bound * (1 + LEVEL_TOLERANCE) + 1e-9)
    while high - low > LEVEL_TOLERANCE * high and deadline - time.perf_counter() > 0.005:
        plan, finished = _model_at(p, rules, members, level, short, time.perf_counter() + (deadline - time.perf_counter()) / 2)
        proved = proved and finished
        if keep(plan):
            high = min(level, max_utilisation(plan, p.candidates))  # type: ignore[arg-type]
        else:
            low = level
        level = (low + high) / 2
    closed = proved and high - low <= LEVEL_TOLERANCE * high
    if best is not None and rules.quality_weight > 0:
        reached = max_utilisation(best, p.candidates)
        for factor in (1.01, 1.03, 1.1):
            if deadline - time.perf_counter() <= 0.005 or reached * factor > 1.0:
                break
            keep(_model_at(p, rules, members, reached * factor, short, deadline)[0])
    if best is not None:
        best.solver = "milp" if closed else "milp-time-limit"
    return best


def _model_at(
    p: _Problem, rules: PlanRules, members: _Members, level: float, most_short: int, until: float
) -> tuple[LinePlan | None, bool]:
    """The best plan at a utilisation level with at most `most_short` units short, by a mixed-integer program,
    and whether HiGHS finished (proved the plan best within its gap, or proved there is none) before `until`.

    Units per member and window (170 × 12, not 170 × 52). Per member-window an integer counts the weeks worked
    there: units lie between that many minimum quantities and the sum of that many of its fullest weeks (a
    concave bound: one line per week), which is exact for the minimum quantity per foundry-week and far easier
    for HiGHS than a semi-integer variable per week. The level caps every member's load, so members whose
    first minimum quantity would exceed it drop out. Production of a window by members who may serve deliveries
    up to the same one forms a group, and groups are assigned to deliveries explicitly, so a member limited to
    early deliveries never counts towards later ones and the model's shortfall is the plan's.
    """
    q_min = rules.min_quantity
    chosen = [(m, members.achievable(m, members.cap(m, level))) for m in members.members]
    chosen = [(m, most) for m, most in chosen if most >= q_min]
    if not chosen:
        return None, True
    cells: list[tuple[int, int, int]] = []  # (position in chosen, window, most units)
    for n, (m, most) in enumerate(chosen):
        cells += [(n, k, min(units, most)) for k, units in sorted(m.free_in.items())]
    groups: dict[tuple[int, int], int] = {}
    group_of_cell = [groups.setdefault((k, p.limit[chosen[n][0].index]), len(groups)) for n, k, _ in cells]
    assignment = [(g, j) for (k, last), g in groups.items() for j in range(members.first_demand[k], last + 1)]
    nx, ns, nz = len(cells), len(p.demands), len(assignment)
    iy, is_, iz = nx, 2 * nx, 2 * nx + ns
    n_vars = iz + nz

    rows = _Rows()
    add = rows.add

    cells_of_group: list[list[int]] = [[] for _ in groups]
    for c, g in enumerate(group_of_cell):
        cells_of_group[g].append(c)
    to_demand: list[list[int]] = [[] for _ in p.demands]
    from_group: list[list[int]] = [[] for _ in groups]
    for a, (g, j) in enumerate(assignment):
        to_demand[j].append(iz + a)
        from_group[g].append(iz + a)
    for g in range(len(groups)):
        add([(c, 1.0) for c in cells_of_group[g]] + [(col, -1.0) for col in from_group[g]], 0.0, 0.0)
    for j, demand in enumerate(p.demands):
        add([(col, 1.0) for col in to_demand[j]] + [(is_ + j, 1.0)], float(demand.quantity), float(demand.quantity))
    add([(is_ + j, 1.0) for j in range(ns)], 0.0, float(most_short))
    weeks_high = []
    for c, (n, k, _) in enumerate(cells):
        fullest = chosen[n][0].fullest_in[k][: chosen[n][1] // q_min]
        weeks_high.append(len(fullest))
        add([(c, 1.0), (iy + c, -float(q_min))], 0.0, np.inf)
        made = 0
        for count, units in enumerate(fullest):
            add([(c, 1.0), (iy + c, -float(units))], -np.inf, float(made - count * units))
            made += units
    cells_of: list[list[int]] = [[] for _ in chosen]
    for c, (n, _, _) in enumerate(cells):
        cells_of[n].append(c)
    for n, (_, most) in enumerate(chosen):
        if most < sum(cells[c][2] for c in cells_of[n]):
            add([(c, 1.0) for c in cells_of[n]], -np.inf, float(most))

    # Scaled for HiGHS as in `_Members._exact_loads`: a unit short costs more than the worst record on every unit.
    cost = np.zeros(n_vars)
    for c, (n, _, _) in enumerate(cells):
        cost[c] = 1.0 - p.candidates[chosen[n][0].index].quality
    cost[is_ : is_ + ns] = float(max(1, p.demanded))
    high = np.concatenate(
        [
            np.array([units for _, _, units in cells], dtype=float),
            np.array(weeks_high, dtype=float),
            np.array([min(d.quantity, most_short) for d in p.demands], dtype=float),
            np.full(nz, np.inf),
        ]
    )
    time_left = until - time.perf_counter()
    if time_left <= 0.005:
        return None, False
    result = milp(
        cost,
        constraints=rows.constraint(n_vars),
        integrality=np.concatenate([np.ones(2 * nx), np.zeros(ns + nz)]),
        bounds=Bounds(np.zeros(n_vars), high),
        # 1 % of the quality term is below what the score can tell apart at the fairness weight; with units short,
        # the gap would be on them, and those must be the fewest.
        options={"time_limit": time_left, "mip_rel_gap": 1e-6 if most_short else 0.01, "disp": False},
    )
    if result.x is None:
        return None, result.status == 2
    made_units: list[tuple[int, int, int]] = []
    for (n, k, _), units in zip(cells, np.rint(result.x[:nx]).astype(int), strict=False):
        if units > 0:
            m = chosen[n][0]
            made_units += [
                (m.index, w, u) for w, u in _into_weeks(int(units), [(w, f) for w, f, k2 in m.weeks if k2 == k], q_min)
            ]
    return _assign_to_deliveries(p, made_units, "milp", rules.min_quantity), result.status == 0
