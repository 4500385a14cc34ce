"""Production lots: registered under the item's specification in force, then passed or failed on a lab report
by attribute sampling."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from shared.events.quality import LotFailed, LotFailureReason, LotPassed, LotRegistered
from shared.weeks import local_date

from ..sampling import SamplingPlan
from .errors import Rejected, StateConflict, Violation
from .items import Catalogue, unknown_item
from .specifications import Specification, figure

LOT_CODE = re.compile(r"^[A-Z0-9][A-Z0-9./-]{2,39}$")


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
    catalogue: Catalogue,
) -> tuple[Lot, LotRegistered]:
    """`spec` is the item's specification in force now (None for an unknown item); `catalogue` the items in force."""
    found: list[Violation] = []
    if not LOT_CODE.fullmatch(lot_code):
        found.append(Violation("lot_code", "3–40 characters: capital letters, digits, '-', '.', '/'"))
    item = catalogue.get(item_code)
    if item is None:
        found.append(Violation("item_code", unknown_item(item_code, catalogue)))
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
        shown = ["fail" if v is False else ("pass" if v is True else figure(v)) for v in self.observed[:limit]]
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
