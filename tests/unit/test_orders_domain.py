"""Orders' intake rules for a buyer's purchase order: pure, each violation naming its field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.orders.domain import (
    LOOK_AHEAD_WEEKS,
    Buyer,
    Delivery,
    DeliverySite,
    Item,
    OrderLine,
    OrderRejected,
    OrderStatus,
    Requirements,
    WebhookEndpoint,
    check_delivery_site,
    check_purchase_order,
    receive_purchase_order,
    with_items,
)
from services.orders.webhooks import body_of, sign
from shared.events.orders import PurchaseOrderReceived, ReceivedLine
from tests.fixtures.catalogue import ORDERS_CATALOGUE as CATALOGUE

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
IN_90_DAYS = TODAY + timedelta(days=90)
# The buyers and delivery sites orders knows: data the store loads, here given.
BUYERS = {
    b.code: b for b in (Buyer("KAI", "PT Kereta Api Indonesia (Persero)"), Buyer("INKA", "PT Industri Kereta Api (Persero)"))
}
SITES = {
    s.code: s
    for s in (
        DeliverySite("BY-YK", "Balai Yasa Yogyakarta", "KAI", "Yogyakarta"),
        DeliverySite("BY-MRI", "Balai Yasa Manggarai", "KAI", "Jakarta"),
        DeliverySite("INKA-MN", "PT INKA Madiun", "INKA", "Madiun", "Jl. Yos Sudarso 71"),
    )
}


def line(line_no: int = 1, quantity: int = 1200, *deliveries: Delivery, **changes: object) -> OrderLine:
    made = OrderLine(
        line_no=line_no,
        item_code="BB-COMP-K",
        description="Blok rem komposit tipe K",
        quantity=quantity,
        unit_price=203_700,
        deliveries=deliveries or (Delivery(IN_90_DAYS, quantity, "BY-YK"),),
    )
    return replace(made, **changes)  # type: ignore[arg-type]


def violations(
    lines: list[OrderLine] | None = None,
    *,
    buyer: str = "KAI",
    issued_on: date = TODAY,
    currency: str = "IDR",
    buyers: dict[str, Buyer] = BUYERS,
    sites: dict[str, DeliverySite] = SITES,
    catalogue: Mapping[str, Item] = CATALOGUE,
) -> dict[str, str]:
    found = check_purchase_order(
        buyer, issued_on, currency, [line()] if lines is None else lines, TODAY, buyers=buyers, sites=sites, catalogue=catalogue
    )
    return {v.field: v.message for v in found}


def test_a_valid_order_has_no_violations():
    split = line(1, 12_000, Delivery(IN_90_DAYS, 6_000, "BY-YK"), Delivery(IN_90_DAYS + timedelta(days=30), 6_000, "BY-MRI"))
    assert violations([split, line(2, 500, item_code="BB-CI")]) == {}
    inka = [line(1, 100, Delivery(IN_90_DAYS, 100, "INKA-MN"))]
    assert violations(inka, buyer="INKA", issued_on=TODAY - timedelta(days=10)) == {}


def test_a_line_follows_the_catalogue_it_was_given():
    """The item's family, minimum lot and requirements come from the catalogue's version; a line only adds to them."""
    raised = {**CATALOGUE, "BB-COMP-K": replace(CATALOGUE["BB-COMP-K"], version=2, requirements=Requirements(("SNI",), 40.0))}
    [k] = with_items([line(requirements=Requirements(("ISO9001",), 30.0))], raised)
    assert (k.product_family, k.min_lot) == ("BRAKE_BLOCK_COMPOSITE", 200)
    assert k.required == Requirements(("SNI", "ISO9001"), 40.0)
    [impeller] = with_items([line(item_code="PMP-IMP-FC200")], CATALOGUE)
    assert (impeller.product_family, impeller.min_lot, impeller.required) == ("PUMP_PARTS", 20, Requirements(("ISO9001",)))
    with pytest.raises(LookupError, match="BB-COMP-K"):
        _ = line().product_family  # a line without its item attached knows no family


def test_a_retired_item_is_no_longer_ordered():
    retired = {**CATALOGUE, "BB-CI": replace(CATALOGUE["BB-CI"], version=2, retired=True)}
    found = violations([line(item_code="BB-CI")], catalogue=retired)
    assert list(found) == ["lines.0.item_code"] and "BB-CI is retired" in found["lines.0.item_code"]
    assert "BB-CI" not in found["lines.0.item_code"].split("known: ")[1]
    new_item = {**CATALOGUE, "X-NEW": Item("X-NEW", "Barang baru", "MACHINE_PARTS")}
    assert violations([line(item_code="X-NEW")], catalogue=new_item) == {}


def test_unknown_buyer():
    found = violations(buyer="PT ASING")
    assert list(found) == ["buyer_code"] and "'PT ASING'" in found["buyer_code"] and "KAI" in found["buyer_code"]


def test_unknown_item():
    found = violations([line(item_code="BB-RUBBER")])
    assert list(found) == ["lines.0.item_code"] and "'BB-RUBBER'" in found["lines.0.item_code"]


def test_unknown_delivery_site():
    found = violations([line(1, 100, Delivery(IN_90_DAYS, 100, "DEPO-ATLANTIS"))])
    assert list(found) == ["lines.0.deliveries.0.site_code"]
    assert found["lines.0.deliveries.0.site_code"] == "unknown site 'DEPO-ATLANTIS'; known: BY-YK, BY-MRI, INKA-MN"


def test_the_buyers_and_sites_given_are_the_ones_known():
    pelni = {**BUYERS, "PELNI": Buyer("PELNI", "PT Pelayaran Nasional Indonesia (Persero)")}
    tanjung_priok = {**SITES, "PELNI-TPK": DeliverySite("PELNI-TPK", "Galangan Tanjung Priok", "PELNI", "Jakarta")}
    order = [line(1, 100, Delivery(IN_90_DAYS, 100, "PELNI-TPK"))]
    assert violations(order, buyer="PELNI", buyers=pelni, sites=tanjung_priok) == {}
    assert list(violations(order, buyer="PELNI")) == ["buyer_code", "lines.0.deliveries.0.site_code"]
    assert list(violations(buyers={})) == ["buyer_code"] and list(violations(sites={})) == ["lines.0.deliveries.0.site_code"]


def test_an_inactive_buyer_or_site_takes_no_new_order():
    retired = {**BUYERS, "INKA": replace(BUYERS["INKA"], active=False)}
    found = violations([line(1, 100, Delivery(IN_90_DAYS, 100, "INKA-MN"))], buyer="INKA", buyers=retired)
    assert found == {"buyer_code": "buyer INKA is inactive: it may send no new purchase orders"}
    closed = {**SITES, "BY-MRI": replace(SITES["BY-MRI"], active=False)}
    found = violations([line(1, 100, Delivery(IN_90_DAYS, 60, "BY-YK"), Delivery(IN_90_DAYS, 40, "BY-MRI"))], sites=closed)
    assert found == {"lines.0.deliveries.1.site_code": "site BY-MRI is inactive: it takes no new deliveries"}
    # Unknown codes name only the buyers and sites an order may still use.
    assert "BY-MRI" not in violations([line(1, 1, Delivery(IN_90_DAYS, 1, "X"))], sites=closed)["lines.0.deliveries.0.site_code"]
    assert violations(buyer="X", buyers=retired)["buyer_code"] == "unknown buyer 'X'; known: KAI"


def test_an_order_delivers_only_to_its_buyers_sites():
    found = violations([line(1, 100, Delivery(IN_90_DAYS, 60, "INKA-MN"), Delivery(IN_90_DAYS, 40, "BY-YK"))], buyer="INKA")
    assert found == {"lines.0.deliveries.1.site_code": "site BY-YK is KAI's, not INKA's; INKA's sites: INKA-MN"}
    found = violations([line(1, 100, Delivery(IN_90_DAYS, 100, "INKA-MN"))])
    assert found == {"lines.0.deliveries.0.site_code": "site INKA-MN is INKA's, not KAI's; KAI's sites: BY-YK, BY-MRI"}
    # A site handed over to another buyer takes that buyer's orders from then on.
    moved = {**SITES, "BY-MRI": replace(SITES["BY-MRI"], buyer_code="INKA")}
    assert violations([line(1, 100, Delivery(IN_90_DAYS, 100, "BY-MRI"))], buyer="INKA", sites=moved) == {}


def test_a_site_belongs_to_a_known_buyer():
    assert check_delivery_site(SITES["INKA-MN"], BUYERS) == []
    assert [v.field for v in check_delivery_site(replace(SITES["INKA-MN"], buyer_code="PELNI"), BUYERS)] == ["buyer_code"]


@pytest.mark.parametrize("delivered", [(600, 500), (600, 700), (1200, 1)])
def test_deliveries_must_sum_to_the_line(delivered: tuple[int, int]):
    first, second = delivered
    found = violations([line(1, 1200, Delivery(IN_90_DAYS, first, "BY-YK"), Delivery(IN_90_DAYS, second, "BY-MRI"))])
    assert list(found) == ["lines.0.deliveries"]
    assert found["lines.0.deliveries"] == f"deliveries sum to {first + second} but the line orders 1200"


def test_a_line_needs_a_delivery():
    bare = replace(line(), deliveries=())
    assert list(violations([bare])) == ["lines.0.deliveries"]


@pytest.mark.parametrize("due", [TODAY, TODAY - timedelta(days=1), date(2020, 1, 1)])
def test_due_dates_must_be_after_today(due: date):
    found = violations([line(1, 10, Delivery(IN_90_DAYS, 5, "BY-YK"), Delivery(due, 5, "BY-YK"))])
    assert list(found) == ["lines.0.deliveries.1.due_date"]


def test_tomorrow_is_a_valid_due_date():
    assert violations([line(1, 10, Delivery(TODAY + timedelta(days=1), 10, "BY-YK"))]) == {}


def test_due_dates_reach_two_years_ahead_at_most():
    # The same bound as a what-if question's: planning looks no further, and a far date would cost weeks of work.
    latest = TODAY + timedelta(weeks=LOOK_AHEAD_WEEKS)
    assert violations([line(1, 10, Delivery(latest, 10, "BY-YK"))]) == {}
    for far in (latest + timedelta(days=1), date(3000, 1, 1)):
        found = violations([line(1, 10, Delivery(IN_90_DAYS, 5, "BY-YK"), Delivery(far, 5, "BY-YK"))])
        assert found == {"lines.0.deliveries.1.due_date": "must not be after 2028-11-21 (104 weeks ahead)"}


@pytest.mark.parametrize("amount", [0, -1, -203_700])
def test_quantities_and_prices_must_be_positive(amount: int):
    assert "lines.0.quantity" in violations([line(1, amount, Delivery(IN_90_DAYS, 1, "BY-YK"))])
    assert list(violations([line(unit_price=amount)])) == ["lines.0.unit_price"]
    # A zero delivery inside a line whose deliveries still sum up.
    found = violations([line(1, 10, Delivery(IN_90_DAYS, 10, "BY-YK"), Delivery(IN_90_DAYS, amount, "BY-MRI"))])
    assert "lines.0.deliveries.1.quantity" in found


def test_line_numbers_must_not_repeat():
    found = violations([line(1), line(2), line(1)])
    assert list(found) == ["lines.2.line_no"] and "repeats" in found["lines.2.line_no"]


def test_line_numbers_start_at_one():
    assert list(violations([line(0)])) == ["lines.0.line_no"]


def test_issued_on_must_not_be_in_the_future():
    assert list(violations(issued_on=TODAY + timedelta(days=1))) == ["issued_on"]


@pytest.mark.parametrize("currency", ["USD", "idr", "", "Rp"])
def test_only_rupiah(currency: str):
    assert list(violations(currency=currency)) == ["currency"]


def test_an_order_needs_a_line():
    assert list(violations([])) == ["lines"]


def test_every_broken_rule_is_reported_at_once():
    broken = line(1, 100, Delivery(TODAY, 40, "NOWHERE"), item_code="X", unit_price=0)
    found = violations([broken], buyer="X", currency="EUR", issued_on=TODAY + timedelta(days=2))
    assert set(found) == {
        "buyer_code",
        "currency",
        "issued_on",
        "lines.0.item_code",
        "lines.0.unit_price",
        "lines.0.deliveries.0.due_date",
        "lines.0.deliveries.0.site_code",
        "lines.0.deliveries",
    }


# --- receiving ------------------------------------------------------------------------------------------


def test_receive_returns_the_order_and_its_event():
    lines = [line(1, 1200), line(2, 300, item_code="BB-CI", unit_price=111_000)]
    order, event = receive_purchase_order(
        "po_1", "KAI", "KAI/PO/2027/00042", TODAY, "IDR", lines, TODAY, NOW, buyers=BUYERS, sites=SITES, catalogue=CATALOGUE
    )
    assert order.status is OrderStatus.RECEIVED and order.lines == with_items(lines, CATALOGUE)
    assert [line.item for line in order.lines] == [CATALOGUE["BB-COMP-K"], CATALOGUE["BB-CI"]]
    assert order.total_amount == 1200 * 203_700 + 300 * 111_000
    assert isinstance(order.total_amount, int)
    assert event == PurchaseOrderReceived(
        order_id="po_1",
        buyer_code="KAI",
        po_number="KAI/PO/2027/00042",
        issued_on=TODAY,
        lines=[
            ReceivedLine(line_no=1, item_code="BB-COMP-K", quantity=1200),
            ReceivedLine(line_no=2, item_code="BB-CI", quantity=300),
        ],
        received_at=NOW,
    )


def test_receive_refuses_with_every_violation():
    with pytest.raises(OrderRejected) as refused:
        receive_purchase_order(
            "po_1", "KAI", "KAI/PO/1", TODAY, "USD", [line(0)], TODAY, NOW, buyers=BUYERS, sites=SITES, catalogue=CATALOGUE
        )
    assert [v.field for v in refused.value.violations] == ["currency", "lines.0.line_no"]
    assert "currency: only IDR" in str(refused.value)


# --- webhook endpoints: secrets and their rotation ------------------------------------------------------------


def test_a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends():

    at = datetime(2027, 1, 4, 2, 0, tzinfo=UTC)
    endpoint = WebhookEndpoint("KAI", "https://eproc.kai.id/hooks", "whsec_" + "A" * 40, True, at)
    assert endpoint.signing_secrets(at) == ("whsec_" + "A" * 40,)

    rotated = endpoint.rotated("whsec_" + "B" * 40, at, timedelta(hours=24))
    assert rotated.previous_secret_expires_at == at + timedelta(hours=24)
    assert rotated.signing_secrets(at + timedelta(hours=23)) == ("whsec_" + "B" * 40, "whsec_" + "A" * 40)
    assert rotated.signing_secrets(at + timedelta(hours=24)) == ("whsec_" + "B" * 40,)
    assert endpoint.rotated(endpoint.secret, at, timedelta(hours=24)) is endpoint  # the same secret is no rotation
    assert endpoint.rotated("whsec_" + "B" * 40, at, timedelta(0)).previous_secret is None  # no grace: the old one stops

    twice = rotated.rotated("whsec_" + "C" * 40, at + timedelta(hours=1), timedelta(hours=24))
    assert twice.signing_secrets(at + timedelta(hours=2)) == ("whsec_" + "C" * 40, "whsec_" + "B" * 40)

    public = rotated.public()
    assert "whsec_" not in repr(public) and public["previous_secret_expires_at"] == "2027-01-05T02:00:00+00:00"

    # Signed with both, a message verifies with either secret, as a Standard Webhooks receiver checks it.
    now = datetime.now(UTC)
    body = body_of("msg_1", "ping", now, {"buyer_code": "KAI"})
    headers = sign("whsec_" + "B" * 40, "msg_1", now, body, "whsec_" + "A" * 40)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in ("whsec_" + "A" * 40, "whsec_" + "B" * 40):
        assert Webhook(secret).verify(body, headers)["id"] == "msg_1"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "C" * 40).verify(body, headers)
