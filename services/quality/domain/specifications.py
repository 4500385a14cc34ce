"""Specifications: an item's test parameters with their acceptance rules and its sampling rule, in versions."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ..sampling import DEFAULT_INSPECTION_LEVEL, SamplingError, SamplingPlan, single_sampling_plan
from .errors import Rejected, Violation

PARAMETER_CODE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


class RuleKind(StrEnum):
    RANGE = "range"  # minimum ≤ x ≤ maximum
    MINIMUM = "minimum"  # x ≥ minimum
    MAXIMUM = "maximum"  # x ≤ maximum
    TARGET = "target"  # |x − target| ≤ tolerance
    PASS_FAIL = "pass_fail"  # the test says pass


def figure(x: float) -> str:
    """A number as a report writes it: 0.25, 25, 1.8."""
    return f"{x:g}"


@dataclass(frozen=True)
class Parameter:
    code: str
    name: str
    unit: str
    rule: RuleKind
    minimum: float | None = None
    maximum: float | None = None
    target: float | None = None
    tolerance: float | None = None
    # Values a measurement of this quantity can physically take; outside them the report is wrong, not the lot.
    possible_min: float | None = None
    possible_max: float | None = None

    @property
    def is_pass_fail(self) -> bool:
        return self.rule is RuleKind.PASS_FAIL

    @property
    def bounds(self) -> tuple[float, float]:
        """The acceptance interval of a numeric rule."""
        if self.rule is RuleKind.RANGE:
            return self.minimum, self.maximum  # type: ignore[return-value]
        if self.rule is RuleKind.MINIMUM:
            return self.minimum, math.inf  # type: ignore[return-value]
        if self.rule is RuleKind.MAXIMUM:
            return -math.inf, self.maximum  # type: ignore[return-value]
        if self.rule is RuleKind.TARGET:
            return self.target - self.tolerance, self.target + self.tolerance  # type: ignore[operator]
        raise ValueError("a pass/fail rule has no interval")

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.rule is RuleKind.RANGE:
            return f"{figure(self.minimum)}–{figure(self.maximum)}{unit}"  # type: ignore[arg-type]
        if self.rule is RuleKind.MINIMUM:
            return f"≥ {figure(self.minimum)}{unit}"  # type: ignore[arg-type]
        if self.rule is RuleKind.MAXIMUM:
            return f"≤ {figure(self.maximum)}{unit}"  # type: ignore[arg-type]
        if self.rule is RuleKind.TARGET:
            return f"{figure(self.target)} ± {figure(self.tolerance)}{unit}"  # type: ignore[arg-type]
        return "pass"

    def conforms(self, value: float | bool) -> bool:
        if self.is_pass_fail:
            return value is True
        low, high = self.bounds
        # Reports give a few decimals; 0.25 − 0.04 must accept a reported 0.21 despite binary floats.
        slack = 1e-9 * max(1.0, abs(low) if math.isfinite(low) else 0.0, abs(high) if math.isfinite(high) else 0.0)
        return low - slack <= float(value) <= high + slack

    def impossible(self, value: float) -> str | None:
        if not math.isfinite(value):
            return "must be a finite number"
        if self.possible_min is not None and value < self.possible_min:
            return f"{figure(value)} is impossible for {self.name}: it cannot be below {figure(self.possible_min)}{(' ' + self.unit) if self.unit else ''}"
        if self.possible_max is not None and value > self.possible_max:
            return f"{figure(value)} is impossible for {self.name}: it cannot exceed {figure(self.possible_max)}{(' ' + self.unit) if self.unit else ''}"
        return None


def check_parameter(p: Parameter, where: str) -> list[Violation]:
    found: list[Violation] = []
    if not PARAMETER_CODE.fullmatch(p.code):
        found.append(Violation(f"{where}.code", "must be lower_snake_case, 2–40 characters, e.g. friction_coefficient"))
    if not p.name.strip():
        found.append(Violation(f"{where}.name", "must not be empty"))
    needed = {
        RuleKind.RANGE: ("minimum", "maximum"),
        RuleKind.MINIMUM: ("minimum",),
        RuleKind.MAXIMUM: ("maximum",),
        RuleKind.TARGET: ("target", "tolerance"),
        RuleKind.PASS_FAIL: (),
    }[p.rule]
    for name in ("minimum", "maximum", "target", "tolerance"):
        value = getattr(p, name)
        if name in needed and value is None:
            found.append(Violation(f"{where}.{name}", f"a {p.rule.value} rule needs {name}"))
        elif name not in needed and value is not None:
            found.append(Violation(f"{where}.{name}", f"a {p.rule.value} rule has no {name}"))
        elif value is not None and not math.isfinite(value):
            found.append(Violation(f"{where}.{name}", "must be a finite number"))
    if found:
        return found
    if p.rule is RuleKind.RANGE and p.minimum >= p.maximum:  # type: ignore[operator]
        found.append(Violation(f"{where}.maximum", "must be greater than minimum"))
    if p.rule is RuleKind.TARGET and p.tolerance <= 0:  # type: ignore[operator]
        found.append(Violation(f"{where}.tolerance", "must be greater than 0"))
    if p.is_pass_fail:
        if p.possible_min is not None or p.possible_max is not None:
            found.append(Violation(f"{where}.possible_min", "a pass/fail rule has no possible values range"))
        return found
    if p.possible_min is not None and p.possible_max is not None and p.possible_min >= p.possible_max:
        found.append(Violation(f"{where}.possible_max", "must be greater than possible_min"))
    if not found:
        low, high = p.bounds
        if (p.possible_min is not None and high < p.possible_min) or (p.possible_max is not None and low > p.possible_max):
            found.append(Violation(f"{where}.rule", "no possible value could ever conform"))
    return found


@dataclass(frozen=True)
class SamplingRule:
    inspection_level: str = DEFAULT_INSPECTION_LEVEL
    aql: float = 2.5

    def plan_for(self, lot_size: int) -> SamplingPlan:
        return single_sampling_plan(lot_size, self.aql, self.inspection_level)


@dataclass(frozen=True)
class Specification:
    """One version of an item's test parameters and sampling rule; earlier versions stay as they were."""

    item_code: str
    version: int
    parameters: tuple[Parameter, ...]
    sampling: SamplingRule
    note: str
    effective_from: datetime

    def parameter(self, code: str) -> Parameter | None:
        return next((p for p in self.parameters if p.code == code), None)

    @property
    def parameter_codes(self) -> tuple[str, ...]:
        return tuple(p.code for p in self.parameters)


_COMPOSITE = (
    Parameter(
        "density", "Density (ASTM D792)", "g/cm³", RuleKind.RANGE, minimum=1.7, maximum=2.4, possible_min=0.1, possible_max=25
    ),
    Parameter("hardness", "Hardness", "HRR", RuleKind.RANGE, minimum=55, maximum=100, possible_min=0, possible_max=150),
    Parameter(
        "compressive_strength",
        "Compressive strength (ASTM D695)",
        "MPa",
        RuleKind.MINIMUM,
        minimum=25,
        possible_min=0,
        possible_max=2000,
    ),
    Parameter(
        "impact_strength", "Impact strength (Charpy)", "kJ/m²", RuleKind.MINIMUM, minimum=1.8, possible_min=0, possible_max=500
    ),
    Parameter("back_plate_bond", "Back-plate bond / bending", "", RuleKind.PASS_FAIL),
)


def _friction(target: float, tolerance: float) -> Parameter:
    return Parameter(
        "friction_coefficient",
        "Friction coefficient μ (mean)",
        "",
        RuleKind.TARGET,
        target=target,
        tolerance=tolerance,
        possible_min=0,
        possible_max=1.5,
    )


# Defaults from the domain reference; none is a published KAI specification, so a QA officer edits them.
DEFAULT_SPECIFICATIONS: dict[str, tuple[tuple[Parameter, ...], SamplingRule, str]] = {
    "BB-COMP-K": (
        (_friction(0.25, 0.04), *_COMPOSITE),
        SamplingRule(),
        "Defaults for K-type composite blocks (UIC 541-4 / EN 16452 friction level K)",
    ),
    # LL blocks are made to brake like cast iron; the friction figure is our assumption until KAI gives one.
    "BB-COMP-LL": (
        (_friction(0.14, 0.03), *_COMPOSITE),
        SamplingRule(),
        "Defaults for LL-type composite blocks; friction target is an assumption",
    ),
    "BB-CI": (
        (
            Parameter("hardness", "Hardness", "HB", RuleKind.RANGE, minimum=197, maximum=255, possible_min=0, possible_max=800),
            Parameter(
                "phosphorus",
                "Phosphorus content",
                "%",
                RuleKind.RANGE,
                minimum=0.5,
                maximum=1.5,
                possible_min=0,
                possible_max=100,
            ),
            Parameter("weight", "Weight", "kg", RuleKind.RANGE, minimum=11, maximum=12, possible_min=0, possible_max=100),
        ),
        SamplingRule(),
        "Defaults for grey cast-iron blocks",
    ),
    # Assumptions until TMMIN gives its drawing tolerances: a small lot, inspected tightly (AQL 1.0).
    "TMMIN-PRT": (
        (
            Parameter(
                "bore_deviation",
                "Bore diameter deviation",
                "mm",
                RuleKind.TARGET,
                target=0.0,
                tolerance=0.02,
                possible_min=-5,
                possible_max=5,
            ),
            Parameter("hardness", "Hardness", "HB", RuleKind.RANGE, minimum=200, maximum=260, possible_min=0, possible_max=800),
        ),
        SamplingRule(aql=1.0),
        "Defaults for TMMIN's piston-ring tooling; tolerances are assumptions",
    ),
    "PMP-IMP-FC200": (
        (
            Parameter(
                "hardness", "Hardness (FC200)", "HB", RuleKind.RANGE, minimum=170, maximum=241, possible_min=0, possible_max=800
            ),
            Parameter(
                "tensile_strength", "Tensile strength", "MPa", RuleKind.MINIMUM, minimum=200, possible_min=0, possible_max=2000
            ),
            Parameter("balance", "Static balance", "", RuleKind.PASS_FAIL),
        ),
        SamplingRule(),
        "Defaults for grey-iron FC200 pump impellers (JIS G5501); assumptions",
    ),
    "KPL-BOLDER-FCD450": (
        (
            Parameter(
                "tensile_strength",
                "Tensile strength (FCD450)",
                "MPa",
                RuleKind.MINIMUM,
                minimum=450,
                possible_min=0,
                possible_max=2000,
            ),
            Parameter("elongation", "Elongation", "%", RuleKind.MINIMUM, minimum=10, possible_min=0, possible_max=100),
        ),
        SamplingRule(aql=1.0),
        "Defaults for ductile-iron FCD450 bollards (JIS G5502); assumptions",
    ),
}


# What an item without defaults of its own starts from, until a QA officer writes its specification.
GENERAL_INSPECTION = (
    Parameter("visual_dimensional", "Visual and dimensional inspection against the drawing", "", RuleKind.PASS_FAIL),
)


def default_specification(item_code: str, now: datetime, sampling: SamplingRule | None = None) -> Specification:
    """Version 1 of an item's specification: its defaults, else a visual and dimensional inspection; `sampling` is
    the item's sampling rule when it has one."""
    parameters, rule, note = DEFAULT_SPECIFICATIONS.get(
        item_code, (GENERAL_INSPECTION, SamplingRule(), "General inspection until a QA officer writes the specification")
    )
    return Specification(item_code, 1, parameters, sampling or rule, note, now)


def revise_specification(
    current: Specification | None,
    item_code: str,
    parameters: Sequence[Parameter],
    sampling: SamplingRule,
    note: str,
    now: datetime,
) -> Specification:
    """The next version of an item's specification; lots registered earlier keep the version they had."""
    found: list[Violation] = []
    if not parameters:
        found.append(Violation("parameters", "a specification tests at least one parameter"))
    seen: set[str] = set()
    for i, parameter in enumerate(parameters):
        found += check_parameter(parameter, f"parameters.{i}")
        if parameter.code in seen:
            found.append(Violation(f"parameters.{i}.code", f"parameter {parameter.code} appears twice"))
        seen.add(parameter.code)
    try:
        sampling.plan_for(100)
    except SamplingError as exc:
        which = "inspection_level" if "level" in str(exc) else "aql"
        found.append(Violation(f"sampling.{which}", str(exc)))
    if found:
        raise Rejected(found)
    version = current.version + 1 if current is not None else 1
    return Specification(item_code, version, tuple(parameters), sampling, note.strip(), now)
