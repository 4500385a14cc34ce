"""Each foundry's quality status (good, watch, suspended) from its recent lots, and a QA officer's override of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from shared.events.quality import FoundryQualityStatusChanged, QualityStatus

from .errors import Rejected, StateConflict, Violation


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
