"""Orders' fulfilment rules: per-delivery eligibility, what must be made again, lateness, shipments, TKDN."""

from __future__ import annotations

from datetime import date

import pytest

from services.orders.domain import (
    CertificateHeld,
    Delivery,
    FoundryStanding,
    LineProgress,
    OrderLine,
    OrderStatus,
    Requirements,
    expected_completion,
    local_content,
    outstanding,
    serves_until,
    split_handover,
    split_over_deliveries,
    tkdn_of,
    why_not_eligible,
)
from tests.fixtures.catalogue import ORDERS_CATALOGUE as CATALOGUE

TODAY = date(2026, 11, 24)
FEB, MAR, JUN = date(2027, 2, 26), date(2027, 3, 31), date(2027, 6, 30)

LINE = OrderLine(
    line_no=1,
    item_code="BB-COMP-K",
    description="Blok rem komposit tipe K",
    quantity=9_000,
    unit_price=203_700,
    deliveries=(Delivery(FEB, 3_000, "BY-YK"), Delivery(MAR, 3_000, "BY-MRI"), Delivery(JUN, 3_000, "BY-YK")),
    requirements=Requirements(("SNI", "ISO9001"), 25),
    item=CATALOGUE["BB-COMP-K"],
)


def member(
    sni_until: date = date(2028, 1, 1), iso_until: date = date(2028, 1, 1), tkdn: float = 40.0, **changes: object
) -> FoundryStanding:
    values: dict[str, object] = {
        "code": "IKM-001",
        "membership_status": "active",
        "product_families": ("BRAKE_BLOCK_COMPOSITE",),
        "certificates": (
            CertificateHeld("SNI", date(2025, 1, 1), sni_until, ("BB-COMP-K",)),
            CertificateHeld("ISO9001", date(2025, 1, 1), iso_until),
            CertificateHeld("TKDN", date(2025, 1, 1), date(2028, 1, 1), (), tkdn),
        ),
    }
    values.update(changes)
    return FoundryStanding(**values)  # type: ignore[arg-type]


def test_a_certificate_running_out_mid_order_still_allows_the_deliveries_before_it():
    expiring = member(sni_until=date(2027, 4, 15))
    assert why_not_eligible(expiring, LINE, TODAY, MAR) == []
    assert why_not_eligible(expiring, LINE, TODAY) == ["no SNI certificate valid through 2027-06-30 covering BB-COMP-K"]
    assert serves_until(expiring, LINE, TODAY) == MAR
    assert serves_until(member(), LINE, TODAY) == JUN


@pytest.mark.parametrize(
    "standing",
    [
        member(sni_until=date(2027, 1, 31)),
        member(membership_status="suspended"),
        member(quality_status="suspended"),
        member(tkdn=20.0),
        member(product_families=("BRAKE_BLOCK_CAST_IRON",)),
    ],
)
def test_a_member_that_may_not_make_the_first_delivery_serves_none(standing: FoundryStanding):
    assert serves_until(standing, LINE, TODAY) is None


def test_tkdn_is_the_best_certificate_in_force_on_the_day():
    assert tkdn_of(member(tkdn=42.5), TODAY) == 42.5
    assert tkdn_of(member(certificates=()), TODAY) == 0.0


def test_failed_and_refused_units_are_made_again_on_top_of_what_the_plan_lacks():
    assert outstanding(3_000, 3_000, 0) == 0
    assert outstanding(3_000, 3_000, 400) == 400  # a failed lot: its allocation stays, 400 more are needed
    assert outstanding(3_000, 2_500, 100) == 600
    assert outstanding(3_000, 3_500, 0) == 0  # never negative when a replan planned more than needed


def test_expected_completion_is_the_first_week_the_spare_capacity_covers_the_late_units_plus_the_lead_time():
    weeks = ["2027-W10", "2027-W11", "2027-W12"]
    spare = {"2027-W10": 300, "2027-W11": 0, "2027-W12": 500}
    # 2027-W10 ends on Sunday 14 March, W12 on 28 March; two weeks for testing and transport follow.
    assert expected_completion(300, spare, weeks, 14, 200) == date(2027, 3, 28)
    assert expected_completion(301, spare, weeks, 14, 200) == date(2027, 4, 11)
    assert expected_completion(900, spare, weeks, 14, 200) is None


def test_a_shipment_counts_towards_the_sites_deliveries_earliest_first_and_never_beyond_them():
    assert split_over_deliveries(LINE, "BY-YK", 4_000, {}) == [(FEB, 3_000), (JUN, 1_000)]
    assert split_over_deliveries(LINE, "BY-YK", 500, {FEB: 2_800}) == [(FEB, 200), (JUN, 300)]
    with pytest.raises(ValueError, match="needs only 3000 more units at BY-MRI"):
        split_over_deliveries(LINE, "BY-MRI", 3_500, {})


def test_a_handover_fills_the_earliest_delivery_with_received_units_and_must_add_up():
    assert split_handover([(JUN, 1_000), (FEB, 3_000)], 3_800, 200) == [(FEB, 3_000, 0), (JUN, 800, 200)]
    with pytest.raises(ValueError, match="must add up to the 4000 shipped"):
        split_handover([(FEB, 3_000), (JUN, 1_000)], 3_000, 500)


def test_local_content_is_weighted_by_value():
    assert local_content([]) is None
    assert local_content([(0, 50.0)]) is None
    assert local_content([(3_000_000, 40.0), (1_000_000, 20.0)]) == 35.0


def test_shippable_is_passed_less_everything_on_a_shipment():
    progress = LineProgress(line_no=1, ordered=9_000, passed=2_000, shipped=1_200, loading=300)
    assert progress.shippable == 500


def test_closed_orders_are_the_cancelled_rejected_and_fulfilled_ones():
    assert {s for s in OrderStatus if s.closed} == {OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.FULFILLED}
