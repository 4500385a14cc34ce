"""Quality's domain: specifications, certificates, lots and their test results, quality status, eligibility.

Pure: no I/O; time comes in as arguments, and operations return the events they cause.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.events.quality import (
    CertificateGranted,
    CertificateKind,
    CertificateRevoked,
    CertificationExpired,
    CertificationExpiring,
    FoundryQualityStatusChanged,
    LotFailed,
    LotFailureReason,
    LotPassed,
    LotRegistered,
    QualityStatus,
)

from .sampling import DEFAULT_INSPECTION_LEVEL, SamplingError, SamplingPlan, single_sampling_plan

FOUNDRY_CODE = re.compile(r"^IKM-\d{3,4}$")
LOT_CODE = re.compile(r"^[A-Z0-9][A-Z0-9./-]{2,39}$")
PARAMETER_CODE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")

# The cooperative's day starts at midnight in Ceper (WIB, UTC+7); dates of times are read there.
WIB = timedelta(hours=7)


def local_date(at: datetime) -> date:
    return (at.astimezone(UTC) + WIB).date()


# --- errors ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    field: str
    message: str


class Rejected(ValueError):
    """A command broke one or more rules; each violation names the offending field."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))
        self.violations = list(violations)


class StateConflict(ValueError):
    """The command is valid but the thing's current state does not allow it (e.g. revoking twice)."""


# --- items ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    code: str
    description: str
    product_family: str  # capacity's product family that makes it


ITEMS: dict[str, Item] = {
    item.code: item
    for item in (
        Item("BB-COMP-K", "Blok rem komposit tipe K", "BRAKE_BLOCK_COMPOSITE"),
        Item("BB-COMP-LL", "Blok rem komposit tipe LL", "BRAKE_BLOCK_COMPOSITE"),
        Item("BB-CI", "Blok rem besi cor", "BRAKE_BLOCK_CAST_IRON"),
    )
}


def unknown_item(item_code: str) -> str:
    return f"unknown item {item_code!r}; known: {', '.join(ITEMS)}"


# --- specifications ----------------------------------------------------------------------------------------


class RuleKind(StrEnum):
    RANGE = "range"  # minimum ≤ x ≤ maximum
    MINIMUM = "minimum"  # x ≥ minimum
    MAXIMUM = "maximum"  # x ≤ maximum
    TARGET = "target"  # |x − target| ≤ tolerance
    PASS_FAIL = "pass_fail"  # the test says pass


def _fmt(x: float) -> str:
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
            return f"{_fmt(self.minimum)}–{_fmt(self.maximum)}{unit}"  # type: ignore[arg-type]
        if self.rule is RuleKind.MINIMUM:
            return f"≥ {_fmt(self.minimum)}{unit}"  # type: ignore[arg-type]
        if self.rule is RuleKind.MAXIMUM:
            return f"≤ {_fmt(self.maximum)}{unit}"  # type: ignore[arg-type]
        if self.rule is RuleKind.TARGET:
            return f"{_fmt(self.target)} ± {_fmt(self.tolerance)}{unit}"  # type: ignore[arg-type]
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
            return f"{_fmt(value)} is impossible for {self.name}: it cannot be below {_fmt(self.possible_min)}{(' ' + self.unit) if self.unit else ''}"
        if self.possible_max is not None and value > self.possible_max:
            return f"{_fmt(value)} is impossible for {self.name}: it cannot exceed {_fmt(self.possible_max)}{(' ' + self.unit) if self.unit else ''}"
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
}


def default_specification(item_code: str, now: datetime) -> Specification:
    parameters, sampling, note = DEFAULT_SPECIFICATIONS[item_code]
    return Specification(item_code, 1, parameters, sampling, note, now)


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
    if item_code not in ITEMS:
        found.append(Violation("item_code", unknown_item(item_code)))
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


# --- certificates --------------------------------------------------------------------------------------------


class CertificateState(StrEnum):
    PENDING = "pending"  # not yet valid
    VALID = "valid"
    EXPIRING = "expiring"  # valid, but lapses within the warning period
    EXPIRED = "expired"
    REVOKED = "revoked"


# Longest validity each kind is issued for (ISO 9001 3 years, SPPT-SNI 4, TKDN 5, SKKNI 5): longer is a typo.
MAX_VALIDITY_YEARS: dict[CertificateKind, int] = {
    CertificateKind.ISO9001: 3,
    CertificateKind.SNI: 4,
    CertificateKind.TKDN: 5,
    CertificateKind.SKKNI: 5,
}
EXPIRY_WARNING_DAYS = 30


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


@dataclass(frozen=True)
class Certificate:
    id: str
    foundry_code: str
    kind: CertificateKind
    number: str
    issuer: str
    valid_from: date
    valid_until: date  # inclusive: the certificate still counts on this day
    tkdn_percent: float | None
    certified_workers: int | None
    items: tuple[str, ...]
    granted_at: datetime
    revoked_at: datetime | None = None
    revoke_reason: str | None = None

    def is_valid_on(self, day: date) -> bool:
        if not self.valid_from <= day <= self.valid_until:
            return False
        # A revoked certificate still counted before the day it was revoked.
        return self.revoked_at is None or day < local_date(self.revoked_at)

    def state_on(self, today: date, warning_days: int = EXPIRY_WARNING_DAYS) -> CertificateState:
        if self.revoked_at is not None and today >= local_date(self.revoked_at):
            return CertificateState.REVOKED
        if today < self.valid_from:
            return CertificateState.PENDING
        if today > self.valid_until:
            return CertificateState.EXPIRED
        if (self.valid_until - today).days <= warning_days:
            return CertificateState.EXPIRING
        return CertificateState.VALID

    def covers(self, item_code: str) -> bool:
        return self.kind is not CertificateKind.SNI or item_code in self.items


def grant_certificate(
    certificate_id: str,
    foundry_code: str,
    kind: CertificateKind,
    number: str,
    issuer: str,
    valid_from: date,
    valid_until: date,
    now: datetime,
    *,
    tkdn_percent: float | None = None,
    certified_workers: int | None = None,
    items: Sequence[str] = (),
) -> tuple[Certificate, CertificateGranted]:
    found: list[Violation] = []
    if not FOUNDRY_CODE.fullmatch(foundry_code):
        found.append(Violation("foundry_code", f"foundry code {foundry_code!r} must look like IKM-001"))
    if not number.strip():
        found.append(Violation("number", "must not be empty"))
    if not issuer.strip():
        found.append(Violation("issuer", "must not be empty"))
    if valid_until < valid_from:
        found.append(Violation("valid_until", "must not be before valid_from"))
    elif valid_until > _add_years(valid_from, MAX_VALIDITY_YEARS[kind]):
        found.append(
            Violation("valid_until", f"a {kind.value} certificate is valid for at most {MAX_VALIDITY_YEARS[kind]} years")
        )
    if kind is CertificateKind.TKDN:
        if tkdn_percent is None:
            found.append(Violation("tkdn_percent", "a TKDN certificate states its local-content percentage"))
        elif not (math.isfinite(tkdn_percent) and 0 <= tkdn_percent <= 100):
            found.append(Violation("tkdn_percent", "must be between 0 and 100"))
    elif tkdn_percent is not None:
        found.append(Violation("tkdn_percent", "only a TKDN certificate has a percentage"))
    if kind is CertificateKind.SKKNI:
        if certified_workers is None:
            found.append(Violation("certified_workers", "an SKKNI certificate states how many workers are certified"))
        elif certified_workers < 1:
            found.append(Violation("certified_workers", "must be at least 1"))
    elif certified_workers is not None:
        found.append(Violation("certified_workers", "only an SKKNI certificate counts certified workers"))
    if kind is CertificateKind.SNI:
        if not items:
            found.append(Violation("items", "an SNI product certificate names the items it covers"))
        for i, item in enumerate(items):
            if item not in ITEMS:
                found.append(Violation(f"items.{i}", unknown_item(item)))
    elif items:
        found.append(Violation("items", "only an SNI product certificate covers items"))
    if found:
        raise Rejected(found)
    certificate = Certificate(
        id=certificate_id,
        foundry_code=foundry_code,
        kind=kind,
        number=number.strip(),
        issuer=issuer.strip(),
        valid_from=valid_from,
        valid_until=valid_until,
        tkdn_percent=tkdn_percent,
        certified_workers=certified_workers,
        items=tuple(dict.fromkeys(items)),
        granted_at=now,
    )
    return certificate, CertificateGranted(
        certificate_id=certificate.id,
        foundry_code=certificate.foundry_code,
        kind=certificate.kind,
        number=certificate.number,
        issuer=certificate.issuer,
        valid_from=certificate.valid_from,
        valid_until=certificate.valid_until,
        tkdn_percent=certificate.tkdn_percent,
        certified_workers=certificate.certified_workers,
        items=list(certificate.items),
        granted_at=now,
    )


def revoke_certificate(certificate: Certificate, reason: str, now: datetime) -> tuple[Certificate, CertificateRevoked]:
    if not reason.strip():
        raise Rejected([Violation("reason", "say why the certificate is revoked")])
    if certificate.revoked_at is not None:
        raise StateConflict(f"certificate {certificate.id} was already revoked at {certificate.revoked_at.isoformat()}")
    revoked = replace(certificate, revoked_at=now, revoke_reason=reason.strip())
    return revoked, CertificateRevoked(
        certificate_id=certificate.id,
        foundry_code=certificate.foundry_code,
        kind=certificate.kind,
        reason=reason.strip(),
        revoked_at=now,
    )


class Notice(StrEnum):
    EXPIRING = "expiring"
    EXPIRED = "expired"


def expiry_notices(
    certificate: Certificate, already: set[Notice], today: date, warning_days: int = EXPIRY_WARNING_DAYS
) -> list[tuple[Notice, CertificationExpiring | CertificationExpired]]:
    """The notices a certificate is due today and has not had yet; each is given at most once in its life."""
    if certificate.revoked_at is not None:
        return []  # revocation was announced; an expiry of a revoked certificate tells nobody anything
    if today > certificate.valid_until:
        if Notice.EXPIRED in already:
            return []
        # A certificate first seen already lapsed gets only the expiry: a warning after the fact is noise.
        return [
            (
                Notice.EXPIRED,
                CertificationExpired(
                    certificate_id=certificate.id,
                    foundry_code=certificate.foundry_code,
                    kind=certificate.kind,
                    valid_until=certificate.valid_until,
                ),
            )
        ]
    days_left = (certificate.valid_until - today).days
    if days_left <= warning_days and Notice.EXPIRING not in already and Notice.EXPIRED not in already:
        return [
            (
                Notice.EXPIRING,
                CertificationExpiring(
                    certificate_id=certificate.id,
                    foundry_code=certificate.foundry_code,
                    kind=certificate.kind,
                    valid_until=certificate.valid_until,
                    days_left=days_left,
                ),
            )
        ]
    return []


# --- lots and test results ---------------------------------------------------------------------------------


class LotStatus(StrEnum):
    REGISTERED = "registered"  # waiting for its test result
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class Lot:
    lot_code: str
    foundry_code: str
    item_code: str
    quantity: int
    order_id: str | None
    allocation_id: str | None
    spec_version: int
    plan: SamplingPlan
    status: LotStatus
    registered_at: datetime
    decided_at: datetime | None = None


MAX_LOT_QUANTITY = 1_000_000


def register_lot(
    lot_code: str,
    foundry_code: str,
    foundry_families: Iterable[str],
    item_code: str,
    quantity: int,
    order_id: str | None,
    allocation_id: str | None,
    spec: Specification | None,
    now: datetime,
) -> tuple[Lot, LotRegistered]:
    """`spec` is the item's specification in force now (None for an unknown item)."""
    found: list[Violation] = []
    if not LOT_CODE.fullmatch(lot_code):
        found.append(Violation("lot_code", "3–40 characters: capital letters, digits, '-', '.', '/'"))
    item = ITEMS.get(item_code)
    if item is None:
        found.append(Violation("item_code", unknown_item(item_code)))
    elif item.product_family not in set(foundry_families):
        found.append(Violation("item_code", f"{foundry_code} does not make {item.product_family} (capacity's register)"))
    if not 1 <= quantity <= MAX_LOT_QUANTITY:
        found.append(Violation("quantity", f"must be between 1 and {MAX_LOT_QUANTITY}"))
    if allocation_id is not None and order_id is None:
        found.append(Violation("order_id", "an allocation belongs to an order: give its order_id too"))
    if found:
        raise Rejected(found)
    assert spec is not None and spec.item_code == item_code
    plan = spec.sampling.plan_for(quantity)
    lot = Lot(lot_code, foundry_code, item_code, quantity, order_id, allocation_id, spec.version, plan, LotStatus.REGISTERED, now)
    return lot, LotRegistered(
        lot_code=lot_code,
        foundry_code=foundry_code,
        item_code=item_code,
        quantity=quantity,
        order_id=order_id,
        allocation_id=allocation_id,
        spec_version=spec.version,
        registered_at=now,
    )


Measurement = float | bool
Sample = Mapping[str, Measurement]


@dataclass(frozen=True)
class LabReport:
    report_number: str
    laboratory: str
    tested_on: date
    samples: tuple[Sample, ...]  # one row of measurements per sample, in the order the lab numbered them


_PASS_WORDS = {"pass": True, "passed": True, "fail": False, "failed": False}


def read_samples(spec: Specification, plan: SamplingPlan, rows: Sequence[Mapping[str, Any]]) -> tuple[Sample, ...]:
    """Checks a lab's rows against the plan and the specification; refuses what cannot be a real measurement."""
    found: list[Violation] = []
    if len(rows) != plan.sample_size:
        found.append(
            Violation(
                "samples",
                f"the sampling plan calls for {plan.sample_size} samples ({plan.describe()}); the report has {len(rows)}",
            )
        )
        raise Rejected(found)
    samples: list[Sample] = []
    for i, row in enumerate(rows):
        where = f"samples.{i}"
        sample: dict[str, Measurement] = {}
        for name in row:
            if spec.parameter(name) is None:
                found.append(
                    Violation(
                        f"{where}.{name}",
                        f"unknown parameter; specification v{spec.version} of {spec.item_code} tests {', '.join(spec.parameter_codes)}",
                    )
                )
        for parameter in spec.parameters:
            at = f"{where}.{parameter.code}"
            if parameter.code not in row or row[parameter.code] is None:
                found.append(Violation(at, "missing: every sample is measured for every parameter"))
                continue
            value = row[parameter.code]
            if parameter.is_pass_fail:
                if isinstance(value, bool):
                    sample[parameter.code] = value
                elif isinstance(value, str) and value.strip().lower() in _PASS_WORDS:
                    sample[parameter.code] = _PASS_WORDS[value.strip().lower()]
                else:
                    found.append(Violation(at, 'must be "pass" or "fail"'))
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                found.append(Violation(at, f"must be a number in {parameter.unit or 'its unit'}"))
                continue
            problem = parameter.impossible(float(value))
            if problem:
                found.append(Violation(at, problem))
                continue
            sample[parameter.code] = float(value)
        samples.append(sample)
    if found:
        raise Rejected(found)
    return tuple(samples)


@dataclass(frozen=True)
class Finding:
    """A parameter some samples did not meet."""

    parameter: str
    rule: str
    samples: tuple[int, ...]  # 1-based sample numbers
    observed: tuple[Measurement, ...]

    def observed_text(self, limit: int = 5) -> str:
        shown = ["fail" if v is False else ("pass" if v is True else _fmt(v)) for v in self.observed[:limit]]
        more = len(self.observed) - limit
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class Evaluation:
    plan: SamplingPlan
    nonconforming: int  # samples failing at least one parameter
    findings: tuple[Finding, ...]

    @property
    def accepted(self) -> bool:
        return self.plan.accepts(self.nonconforming)

    def reasons(self, sample_count: int) -> list[LotFailureReason]:
        verdict = (
            f"{self.nonconforming} nonconforming samples reach the plan's rejection number "
            f"(n={self.plan.sample_size}, Ac {self.plan.acceptance_number}, Re {self.plan.rejection_number})"
        )
        return [
            LotFailureReason(
                parameter=f.parameter,
                rule=f.rule,
                observed=f.observed_text(),
                message=f"{len(f.samples)} of {sample_count} samples outside {f.rule} "
                f"(sample{'s' if len(f.samples) > 1 else ''} {', '.join(map(str, f.samples[:10]))}{'…' if len(f.samples) > 10 else ''}); {verdict}",
            )
            for f in self.findings
        ]


def evaluate(spec: Specification, plan: SamplingPlan, samples: Sequence[Sample]) -> Evaluation:
    """Attribute inspection: a sample is nonconforming if any parameter misses its rule; the plan decides the lot."""
    failing: set[int] = set()
    findings: list[Finding] = []
    for parameter in spec.parameters:
        misses = [(i, s[parameter.code]) for i, s in enumerate(samples) if not parameter.conforms(s[parameter.code])]
        if misses:
            failing.update(i for i, _ in misses)
            findings.append(
                Finding(parameter.code, parameter.describe(), tuple(i + 1 for i, _ in misses), tuple(v for _, v in misses))
            )
    return Evaluation(plan, len(failing), tuple(findings))


def decide_lot(lot: Lot, spec: Specification, report: LabReport, now: datetime) -> tuple[Lot, Evaluation, LotPassed | LotFailed]:
    if lot.status is not LotStatus.REGISTERED:
        raise StateConflict(f"lot {lot.lot_code} was already decided: {lot.status.value}")
    if spec.version != lot.spec_version or spec.item_code != lot.item_code:
        raise ValueError("a lot is judged against the specification version it was registered under")
    found: list[Violation] = []
    if not report.report_number.strip():
        found.append(Violation("report_number", "must not be empty"))
    if not report.laboratory.strip():
        found.append(Violation("laboratory", "must not be empty"))
    if report.tested_on > local_date(now):
        found.append(Violation("tested_on", "must not be in the future"))
    elif report.tested_on < local_date(lot.registered_at):
        found.append(Violation("tested_on", "must not be before the lot was registered"))
    if found:
        raise Rejected(found)
    evaluation = evaluate(spec, lot.plan, report.samples)
    common = {
        "lot_code": lot.lot_code,
        "foundry_code": lot.foundry_code,
        "item_code": lot.item_code,
        "quantity": lot.quantity,
        "order_id": lot.order_id,
        "allocation_id": lot.allocation_id,
        "report_number": report.report_number.strip(),
        "laboratory": report.laboratory.strip(),
        "decided_at": now,
    }
    if evaluation.accepted:
        return replace(lot, status=LotStatus.PASSED, decided_at=now), evaluation, LotPassed.model_validate(common)
    decided = replace(lot, status=LotStatus.FAILED, decided_at=now)
    return decided, evaluation, LotFailed.model_validate({**common, "reasons": evaluation.reasons(len(report.samples))})


# --- quality status ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRule:
    """How a foundry's recent lots become its status; the figures are settings (`CEPER_QUALITY_STATUS_…`)."""

    window: int = 12  # most recent decided lots considered
    prior_weight: float = 10.0  # pseudo-lots of prior belief: one lot cannot swing a young record
    prior_pass_rate: float = 0.9
    good_at: float = 0.8  # pass rate at or above: good
    suspend_below: float = 0.6  # pass rate below: suspended; in between: watch

    def __post_init__(self) -> None:
        if not (self.window >= 1 and self.prior_weight >= 0 and 0 <= self.prior_pass_rate <= 1):
            raise ValueError("status rule: window ≥ 1, prior_weight ≥ 0, prior_pass_rate in [0, 1]")
        if not 0 <= self.suspend_below <= self.good_at <= 1:
            raise ValueError("status rule: 0 ≤ suspend_below ≤ good_at ≤ 1")

    def pass_rate(self, outcomes: Sequence[bool]) -> float:
        """Outcomes newest first; a Beta-prior mean so a short record leans on the prior."""
        recent = list(outcomes)[: self.window]
        if not recent and self.prior_weight == 0:
            return self.prior_pass_rate
        return (sum(recent) + self.prior_weight * self.prior_pass_rate) / (len(recent) + self.prior_weight)

    def status_for(self, pass_rate: float) -> QualityStatus:
        if pass_rate >= self.good_at:
            return QualityStatus.GOOD
        if pass_rate < self.suspend_below:
            return QualityStatus.SUSPENDED
        return QualityStatus.WATCH


@dataclass(frozen=True)
class FoundryQuality:
    foundry_code: str
    status: QualityStatus  # what counts: the override while there is one, else the computed status
    computed_status: QualityStatus
    pass_rate: float
    lots_considered: int
    lots_passed: int
    overridden: bool
    reason: str  # why the status is what it is
    changed_at: datetime | None  # when `status` or `overridden` last changed; None while never changed


def initial_quality(foundry_code: str, rule: StatusRule) -> FoundryQuality:
    rate = rule.pass_rate([])
    status = rule.status_for(rate)
    return FoundryQuality(foundry_code, status, status, rate, 0, 0, False, "no lots tested yet", None)


def _changed(
    before: FoundryQuality, after: FoundryQuality, now: datetime
) -> tuple[FoundryQuality, FoundryQualityStatusChanged | None]:
    if (before.status, before.overridden) == (after.status, after.overridden):
        return replace(after, changed_at=before.changed_at), None
    after = replace(after, changed_at=now)
    return after, FoundryQualityStatusChanged(
        foundry_code=after.foundry_code,
        status=after.status,
        previous_status=before.status,
        pass_rate=round(after.pass_rate, 4),
        overridden=after.overridden,
        reason=after.reason,
        changed_at=now,
    )


def reassess(
    quality: FoundryQuality, outcomes: Sequence[bool], rule: StatusRule, now: datetime
) -> tuple[FoundryQuality, FoundryQualityStatusChanged | None]:
    """The status after a lot was decided; `outcomes` are the foundry's decided lots, newest first."""
    recent = list(outcomes)[: rule.window]
    rate = rule.pass_rate(recent)
    computed = rule.status_for(rate)
    passed = sum(recent)
    updated = replace(quality, computed_status=computed, pass_rate=rate, lots_considered=len(recent), lots_passed=passed)
    if not quality.overridden:
        updated = replace(
            updated,
            status=computed,
            reason=f"{passed} of the last {len(recent)} lots passed; pass rate {rate:.0%} with the prior "
            f"(good at {rule.good_at:.0%}, suspended below {rule.suspend_below:.0%})",
        )
    return _changed(quality, updated, now)


def override_status(
    quality: FoundryQuality, status: QualityStatus, reason: str, now: datetime
) -> tuple[FoundryQuality, FoundryQualityStatusChanged | None]:
    if not reason.strip():
        raise Rejected([Violation("reason", "an override needs a reason")])
    pinned = replace(quality, status=status, overridden=True, reason=f"QA officer: {reason.strip()}")
    changed, event = _changed(quality, pinned, now)
    if event is None and quality.reason != pinned.reason:
        changed = replace(changed, reason=pinned.reason)  # a new reason for the same pin is kept, not announced
    return changed, event


def release_override(
    quality: FoundryQuality, reason: str, rule: StatusRule, now: datetime
) -> tuple[FoundryQuality, FoundryQualityStatusChanged | None]:
    if not quality.overridden:
        raise StateConflict(f"{quality.foundry_code}'s quality status is not overridden")
    why = reason.strip() or "override released"
    released = replace(
        quality,
        status=quality.computed_status,
        overridden=False,
        reason=f"QA officer: {why}; back to the computed status ({quality.lots_passed} of the last {quality.lots_considered} lots passed, "
        f"pass rate {quality.pass_rate:.0%})",
    )
    return _changed(quality, released, now)


# --- eligibility --------------------------------------------------------------------------------------------

# Certificates a foundry needs to make an item, unless the asker names others. An SNI certificate always has to
# cover the item itself: a product certificate for cast-iron blocks says nothing about composite ones.
REQUIRED_CERTIFICATES: dict[str, tuple[CertificateKind, ...]] = {
    "BB-COMP-K": (CertificateKind.SNI, CertificateKind.ISO9001),
    "BB-COMP-LL": (CertificateKind.SNI, CertificateKind.ISO9001),
    "BB-CI": (CertificateKind.SNI, CertificateKind.ISO9001),
}


@dataclass(frozen=True)
class Candidate:
    foundry_code: str
    name: str
    product_families: tuple[str, ...]
    certificates: tuple[Certificate, ...]
    status: QualityStatus


@dataclass(frozen=True)
class Reason:
    rule: str  # product_family | certificate | tkdn | quality_status
    message: str


@dataclass(frozen=True)
class Verdict:
    foundry_code: str
    name: str
    eligible: bool
    reasons: tuple[Reason, ...]
    certificate_ids: tuple[str, ...]  # the valid certificates the verdict rests on
    tkdn_percent: float | None
    status: QualityStatus


def judge_eligibility(
    item_code: str,
    on: date,
    candidates: Iterable[Candidate],
    required: Sequence[CertificateKind],
    min_tkdn_percent: float,
) -> list[Verdict]:
    """Which foundries may make the item on the date, and for the others every reason why not."""
    item = ITEMS[item_code]
    verdicts: list[Verdict] = []
    for c in candidates:
        reasons: list[Reason] = []
        used: list[str] = []
        if item.product_family not in c.product_families:
            reasons.append(Reason("product_family", f"does not make {item.product_family}"))
        valid = [cert for cert in c.certificates if cert.is_valid_on(on)]
        for kind in dict.fromkeys(required):
            holding = [cert for cert in valid if cert.kind is kind and cert.covers(item_code)]
            if holding:
                used.append(max(holding, key=lambda cert: cert.valid_until).id)
            else:
                covering = f" covering {item_code}" if kind is CertificateKind.SNI else ""
                reasons.append(
                    Reason(
                        "certificate",
                        f"no {kind.value} certificate{covering} valid on {on.isoformat()}{_lapse_hint(c, kind, item_code, on)}",
                    )
                )
        tkdn = [cert for cert in valid if cert.kind is CertificateKind.TKDN]
        best = max(tkdn, key=lambda cert: cert.tkdn_percent or 0.0) if tkdn else None
        tkdn_percent = best.tkdn_percent if best else None
        if min_tkdn_percent > 0:
            if best is None:
                reasons.append(
                    Reason(
                        "tkdn", f"no TKDN certificate valid on {on.isoformat()}; at least {_fmt(min_tkdn_percent)} % is required"
                    )
                )
            elif (best.tkdn_percent or 0.0) < min_tkdn_percent:
                reasons.append(
                    Reason("tkdn", f"TKDN {_fmt(best.tkdn_percent or 0.0)} % is below the required {_fmt(min_tkdn_percent)} %")
                )
            else:
                used.append(best.id)
        if c.status is QualityStatus.SUSPENDED:
            reasons.append(Reason("quality_status", "quality status is suspended"))
        verdicts.append(
            Verdict(c.foundry_code, c.name, not reasons, tuple(reasons), tuple(dict.fromkeys(used)), tkdn_percent, c.status)
        )
    return verdicts


def _lapse_hint(candidate: Candidate, kind: CertificateKind, item_code: str, on: date) -> str:
    """Says what happened to the certificate the foundry did hold, which is what a planner asks next."""
    held = [cert for cert in candidate.certificates if cert.kind is kind and cert.covers(item_code)]
    if not held:
        return ""
    latest = max(held, key=lambda cert: cert.valid_until)
    if latest.revoked_at is not None and local_date(latest.revoked_at) <= on:
        return f" ({latest.number} revoked: {latest.revoke_reason})"
    if latest.valid_until < on:
        return f" ({latest.number} expired {latest.valid_until.isoformat()})"
    if latest.valid_from > on:
        return f" ({latest.number} valid only from {latest.valid_from.isoformat()})"
    return ""
