"""A foundry's quality status from its recent lot record, and the QA officer's override."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.quality.domain import (
    Rejected,
    StateConflict,
    StatusRule,
    initial_quality,
    override_status,
    reassess,
    release_override,
)
from shared.events.quality import FoundryQualityStatusChanged, QualityStatus

NOW = datetime(2027, 3, 1, 3, 0, tzinfo=UTC)
RULE = StatusRule()  # last 12 lots, prior of 10 lots at 90 %, good at 80 %, suspended below 60 %
GOOD, WATCH, SUSPENDED = QualityStatus.GOOD, QualityStatus.WATCH, QualityStatus.SUSPENDED
P, F = True, False


def test_a_foundry_without_lots_is_good_at_the_prior():
    quality = initial_quality("IKM-001", RULE)
    assert (quality.status, quality.pass_rate, quality.lots_considered, quality.overridden, quality.changed_at) == (
        GOOD,
        0.9,
        0,
        False,
        None,
    )


@pytest.mark.parametrize(
    "outcomes, rate, status",
    [
        ([], 0.9, GOOD),
        ([F], 9 / 11, GOOD),  # one failed lot does not swing a young record
        ([F, F], 9 / 12, WATCH),
        ([F, F, F, F, F], 9 / 15, WATCH),  # exactly at the suspension threshold
        ([F] * 6, 9 / 16, SUSPENDED),
        ([P] * 9 + [F] * 3, 18 / 22, GOOD),
        ([F] * 4 + [P] * 8, 17 / 22, WATCH),
        ([P] * 12 + [F] * 20, 21 / 22, GOOD),  # only the 12 most recent lots count
    ],
)
def test_pass_rate_with_a_prior_and_its_status(outcomes, rate, status):
    assert RULE.pass_rate(outcomes) == pytest.approx(rate)
    assert RULE.status_for(RULE.pass_rate(outcomes)) is status


def test_thresholds_and_prior_are_configurable():
    strict = StatusRule(window=5, prior_weight=2, prior_pass_rate=0.9, good_at=0.9, suspend_below=0.75)
    assert strict.status_for(strict.pass_rate([F])) is SUSPENDED  # 1.8 / 3
    assert strict.status_for(strict.pass_rate([P, P, P, P, F])) is WATCH  # 5.8 / 7
    no_prior = StatusRule(prior_weight=0)
    assert no_prior.pass_rate([F]) == 0.0 and no_prior.pass_rate([]) == 0.9
    with pytest.raises(ValueError):
        StatusRule(good_at=0.5, suspend_below=0.7)


def test_reassessing_announces_only_a_move():
    quality = initial_quality("IKM-001", RULE)
    quality, event = reassess(quality, [F], RULE, NOW)
    assert event is None and quality.status is GOOD and quality.lots_considered == 1 and quality.changed_at is None
    later = NOW + timedelta(hours=1)
    quality, event = reassess(quality, [F, F], RULE, later)
    assert quality.status is WATCH and quality.changed_at == later
    assert event == FoundryQualityStatusChanged(
        foundry_code="IKM-001",
        status=WATCH,
        previous_status=GOOD,
        pass_rate=0.75,
        overridden=False,
        reason=quality.reason,
        changed_at=later,
    )
    assert "0 of the last 2 lots passed" in quality.reason
    quality, event = reassess(quality, [F, F, F], RULE, later)
    assert event is None and quality.changed_at == later
    quality, event = reassess(quality, [F] * 6, RULE, later)
    assert event is not None and (event.previous_status, event.status) == (WATCH, SUSPENDED)


def test_an_override_pins_the_status_until_released():
    quality, _ = reassess(initial_quality("IKM-001", RULE), [F] * 6, RULE, NOW)
    assert quality.status is SUSPENDED
    pinned, event = override_status(quality, WATCH, " Furnace relined; retested at B4T ", NOW)
    assert (pinned.status, pinned.computed_status, pinned.overridden) == (WATCH, SUSPENDED, True)
    assert event is not None and (event.status, event.previous_status, event.overridden) == (WATCH, SUSPENDED, True)
    assert event.reason == "QA officer: Furnace relined; retested at B4T"

    # Results keep moving the computed status, but the pin counts.
    still, event = reassess(pinned, [P] * 12, RULE, NOW)
    assert event is None and (still.status, still.computed_status) == (WATCH, GOOD)

    released, event = release_override(still, "retests good", RULE, NOW)
    assert (released.status, released.overridden) == (GOOD, False)
    assert event is not None and (event.previous_status, event.status, event.overridden) == (WATCH, GOOD, False)
    assert released.reason.startswith("QA officer: retests good; back to the computed status")
    with pytest.raises(StateConflict, match="not overridden"):
        release_override(released, "", RULE, NOW)


def test_pinning_the_same_status_is_announced_because_the_pin_is_news():
    quality = initial_quality("IKM-001", RULE)
    pinned, event = override_status(quality, GOOD, "audited on site", NOW)
    assert event is not None and event.status is GOOD and event.previous_status is GOOD and event.overridden
    again, event = override_status(pinned, GOOD, "audited again", NOW)
    assert event is None and again.reason == "QA officer: audited again"
    with pytest.raises(Rejected):
        override_status(quality, SUSPENDED, " ", NOW)
