"""The console's what-if page: a planner's hypotheses become one question to orders' `POST /v1/what-if`, asked
with the person's token; the answer is shown in people's words with the plan it would make beside the plan in
force; orders' refusals land next to their fields; nothing is changed anywhere. Orders and quality are stood in
for by an httpx mock transport."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.console.domain import what_if_answer
from tests.fixtures.tokens import TokenMint
from tests.unit.test_console_login import Services, console_over, settings_for, sign_in, token_in

QUALITY = "http://quality.test"


def allocation(foundry: str, week: str, quantity: int, state: str = "reserved") -> dict[str, Any]:
    return {"foundry_code": foundry, "week": week, "quantity": quantity, "due_date": "2027-03-31", "state": state}


def line(line_no: int, at_risk: bool, allocations: list[dict[str, Any]], **figures: Any) -> dict[str, Any]:
    return {
        "line_no": line_no,
        "at_risk": at_risk,
        "late_units": figures.get("late_units", 0),
        "late_due_dates": figures.get("late_due_dates", []),
        "late": figures.get("late", []),
        "expected_completion": figures.get("expected_completion"),
        "moved_units": figures.get("moved_units", 0),
        "members": figures.get("members", []),
        "plan": {"allocations": allocations, "shortfall": []},
    }


ANSWER = {
    "first_week": "2027-W01",
    "last_week": "2027-W20",
    "orders": [
        {
            "order_id": "po_kai", "po_number": "KAI/PO/2027/00042", "buyer_code": "KAI", "status": "needs_review",
            "replanned": True, "reason": "what_if",
            "lines": [
                line(1, True, [allocation("IKM-002", "2027-W10", 900, "planned"), allocation("IKM-003", "2027-W10", 300)],
                     late_units=300, late_due_dates=["2027-02-26", "2027-03-31"], expected_completion="2027-04-21", moved_units=1200,
                     late=[{"due_date": "2027-02-26", "units": 120}, {"due_date": "2027-03-31", "units": 180}],
                     members=[{"foundry_code": "IKM-071", "units_before": 1200, "units_after": 0},
                              {"foundry_code": "IKM-002", "units_before": 0, "units_after": 900}]),
            ],
        },
        {"order_id": "po_quiet", "po_number": "INKA/1", "buyer_code": "INKA", "status": "accepted", "replanned": False,
         "reason": None, "lines": [line(1, False, [allocation("IKM-010", "2027-W05", 500)])]},
    ],
    "new_orders": [],
    "utilisation": [
        {"foundry_code": "IKM-002", "product_family": "BRAKE_BLOCK_COMPOSITE", "before": 0.5, "after": 0.95},
        {"foundry_code": "IKM-071", "product_family": "BRAKE_BLOCK_COMPOSITE", "before": 0.9, "after": 0.0},
    ],
}  # fmt: skip


def item(code: str, name_id: str, name_en: str, retired: bool = False) -> dict[str, Any]:
    return {"code": code, "version": 1, "name_id": name_id, "name_en": name_en, "product_family": "BRAKE_BLOCK_COMPOSITE",
            "unit": "pcs", "min_lot": 200, "required_certificates": ["SNI", "ISO9001"], "min_tkdn_percent": 25.0,
            "sampling": {"inspection_level": "II", "aql": 2.5}, "retired": retired,
            "published_at": "2026-12-07T10:00:00Z"}  # fmt: skip


IN_FORCE = {"id": "po_kai", "buyer_code": "KAI", "plan": {"allocations": [allocation("IKM-071", "2027-W10", 1200)]}}


class Planning(Services):
    """Orders' what-if and order GET, and quality's catalogue, as the console sees them."""

    def __init__(self, mint: TokenMint) -> None:
        super().__init__(mint)
        self.people["qa"] = {"roles": ["qa_officer"]}
        self.answer: httpx.Response = httpx.Response(200, json=ANSWER)
        self.items = [item("BB-COMP-K", "Blok rem komposit tipe K", "Composite brake block, type K")]

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "identity.test":
            return super().handle(request)
        self.calls.append(request)
        if request.url.path == "/v1/items":
            return httpx.Response(200, json=self.items)
        if request.url.path == "/v1/buyers":
            return httpx.Response(
                200, json=[{"code": "KAI", "legal_name": "PT Kereta Api Indonesia", "npwp": None, "active": True}]
            )
        if request.url.path == "/v1/sites":
            return httpx.Response(200, json=[
                {"code": "BY-YK", "name": "Balai Yasa Yogyakarta", "buyer_code": "KAI", "city": "Yogyakarta", "address": None, "active": True},
                {"code": "OLD", "name": "Closed", "buyer_code": "KAI", "city": "Nowhere", "address": None, "active": False}])  # fmt: skip
        if request.url.path == "/v1/what-if":
            return self.answer
        if request.url.path == "/v1/purchase-orders/po_kai":
            return httpx.Response(200, json=IN_FORCE)
        return httpx.Response(404, json={"title": "Not found", "status": 404})


@pytest.fixture
def services(mint: TokenMint) -> Planning:
    return Planning(mint)


@pytest.fixture
async def console(tmp_path: Any, mint: TokenMint, services: Planning) -> AsyncIterator[httpx.AsyncClient]:
    async with console_over(services.handle, mint, settings_for(tmp_path, quality_url=QUALITY)) as client:
        yield client


@pytest.fixture
def mint() -> TokenMint:
    return TokenMint()


async def ask(console: httpx.AsyncClient, **fields: str) -> httpx.Response:
    page = await console.get("/what-if")
    assert page.status_code == 200
    return await console.post("/what-if", data={"csrftoken": token_in(page.text), **fields})


CAPACITY_LOSS = {
    "capacity_changes.0.foundry_code": "IKM-071",
    "capacity_changes.0.product_family": "BRAKE_BLOCK_COMPOSITE",
    "capacity_changes.0.from_date": "2027-03-01",
    "capacity_changes.0.to_date": "2027-03-28",
    "capacity_changes.0.weekly_units": "0",
}


async def test_only_planners_and_admins_are_offered_the_page(console: httpx.AsyncClient):
    await sign_in(console, "planner")
    page = await console.get("/what-if")
    assert (
        page.status_code == 200 and 'href="/what-if"' in page.text and "Kapasitas anggota berkurang atau bertambah" in page.text
    )
    console.cookies.clear()
    for who in ("qa", "ikm-001"):
        await sign_in(console, who)
        assert (await console.get("/what-if")).status_code == 403, who
        assert 'href="/what-if"' not in (await console.get("/quality")).text, who
        console.cookies.clear()


async def test_a_new_order_may_name_only_active_items_by_their_name_in_the_persons_language(
    console: httpx.AsyncClient, services: Planning
):
    services.items.append(item("BB-COMP-LL", "Blok rem komposit tipe LL", "Composite brake block, type LL"))
    services.items.append(item("BB-OLD", "Blok rem lama", "Old brake block", retired=True))
    await sign_in(console)
    page = await console.get("/what-if")
    options = re.findall(
        r"<option value=\"([^\"]+)\"[^>]*>([^<]+)</option>", page.text.split('id="wi-new-item')[1].split("</select>")[0]
    )
    assert options == [
        ("BB-COMP-K", "BB-COMP-K · Blok rem komposit tipe K"),
        ("BB-COMP-LL", "BB-COMP-LL · Blok rem komposit tipe LL"),
    ]
    asked = [r for r in services.calls if r.url.path == "/v1/items"]
    assert len(asked) == 1 and not asked[0].url.params  # the items in force only; retired ones are not asked for
    switched = await console.post("/language", data={"csrftoken": token_in(page.text), "locale": "en", "back": "/what-if"})
    assert switched.status_code in (302, 303)
    english = await console.get("/what-if")
    assert "BB-COMP-K · Composite brake block, type K" in english.text and "Blok rem komposit tipe K" not in english.text
    assert "BB-OLD" not in english.text


async def test_a_capacity_loss_is_asked_with_the_persons_token_and_answered_in_their_words(
    console: httpx.AsyncClient, services: Planning
):
    await sign_in(console)
    answer = await ask(console, **CAPACITY_LOSS)
    assert answer.status_code == 200, answer.text
    asked = [r for r in services.calls if r.url.path == "/v1/what-if"]
    assert len(asked) == 1 and asked[0].headers["authorization"] == f"Bearer {services.issued[0]}"
    assert json.loads(asked[0].content) == {
        "capacity_changes": [{"foundry_code": "IKM-071", "product_family": "BRAKE_BLOCK_COMPOSITE",
                              "from_date": "2027-03-01", "to_date": "2027-03-28", "weekly_units": 0}],
        "certificate_lapses": [], "suspensions": [], "new_orders": [],
    }  # fmt: skip
    # Asking changes nothing: the only other calls read.
    assert {r.method for r in services.calls if r.url.path != "/v1/what-if"} == {"GET"}
    text = answer.text
    assert "1 pesanan akan direncanakan ulang, 1 baris akan berisiko, 1 pesanan tidak berubah" in text
    assert "KAI/PO/2027/00042" in text and "INKA/1" not in text  # an untouched order is only counted
    assert "Berisiko" in text and "21 Apr 2027" in text and "1.200" in text
    assert "IKM-071: 1.200 → 0" in text and "IKM-002: 0 → 900" in text
    assert "Unit terlambat per jatuh tempo" in text and "26 Feb 2027: 120" in text and "31 Mar 2027: 180" in text
    assert 'id="in-force-1"' in text and 'id="would-be-1"' in text  # the plan it would make beside the plan in force
    assert "90,0%" in text and "95,0%" in text


async def test_orders_refusal_is_shown_next_to_its_field_and_nothing_else_is_asked(
    console: httpx.AsyncClient, services: Planning
):
    await sign_in(console)
    services.answer = httpx.Response(
        422,
        json={"title": "Unprocessable", "status": 422, "detail": "invalid",
              "errors": [{"field": "body.capacity_changes.0.to_date", "type": "date_parsing", "message": "bad date"}]},
    )  # fmt: skip
    answer = await ask(console, **CAPACITY_LOSS)
    assert answer.status_code == 422
    assert 'id="err-capacity_changes-0-to_date"' in answer.text and "Isi tanggal." in answer.text
    assert 'value="IKM-071"' in answer.text  # the question is kept for correcting


async def test_an_empty_question_is_not_sent(console: httpx.AsyncClient, services: Planning):
    await sign_in(console)
    answer = await ask(console)
    assert answer.status_code == 422 and "Isi paling sedikit satu pengandaian" in answer.text
    assert not [r for r in services.calls if r.url.path == "/v1/what-if"]


async def test_a_new_order_is_asked_as_a_purchase_order_body(console: httpx.AsyncClient, services: Planning):
    await sign_in(console)
    services.answer = httpx.Response(200, json={**ANSWER, "orders": [], "new_orders": [
        {"po_number": "WHAT-IF", "buyer_code": "KAI", "acceptable_in_full": True, "complete_by": "2027-05-14",
         "lines": [line(1, False, [allocation("IKM-005", "2027-W15", 400, "planned")])]}]})  # fmt: skip
    answer = await ask(
        console,
        **{"new_orders.0.buyer_code": "KAI", "new_orders.0.lines.0.item_code": "BB-COMP-K", "new_orders.0.lines.0.quantity": "400",
           "new_orders.0.lines.0.deliveries.0.due_date": "2027-05-01", "new_orders.0.lines.0.deliveries.0.site_code": "BY-YK"},
    )  # fmt: skip
    body = json.loads(next(r for r in services.calls if r.url.path == "/v1/what-if").content)
    (order,) = body["new_orders"]
    assert order["buyer_code"] == "KAI" and order["lines"][0]["quantity"] == 400
    assert order["lines"][0]["deliveries"] == [{"due_date": "2027-05-01", "quantity": 400, "site_code": "BY-YK"}]
    assert "Dapat diterima seluruhnya; semua unit dapat sampai ke pembeli paling lambat 14 Mei 2027." in answer.text


def test_touched_orders_come_first_and_members_by_how_much_they_change():
    answer = what_if_answer(ANSWER, {"po_kai": IN_FORCE["plan"]["allocations"]})
    assert [o.order_id for o in answer.touched] == ["po_kai"] and answer.untouched == 1
    (kai,) = answer.touched
    assert kai.in_force is not None and kai.in_force.total == 1200 and kai.would_be.total == 1200
    assert [row[0] for row in kai.would_be.rows] == ["IKM-002", "IKM-003"]
    assert answer.lines_at_risk == 1
    assert [u["foundry_code"] for u in answer.utilisation] == ["IKM-071", "IKM-002"]  # 0.9 → 0 moves more than 0.5 → 0.95


async def test_a_row_is_added_without_asking_and_every_filled_row_is_asked(console: httpx.AsyncClient, services: Planning):
    await sign_in(console)
    page = await ask(console, **CAPACITY_LOSS, add_row="capacity_changes")
    assert page.status_code == 200 and not [r for r in services.calls if r.url.path == "/v1/what-if"]
    assert 'name="capacity_changes.1.foundry_code"' in page.text and 'name="capacity_changes.2.foundry_code"' not in page.text
    assert 'value="IKM-071"' in page.text and 'id="wi-cap-member-2"' in page.text  # what was filled in is kept
    assert "Tambah perubahan kapasitas" in page.text and page.text.count(" autofocus") == 1  # the new row, to fill in
    second = {
        "capacity_changes.1.foundry_code": "IKM-072", "capacity_changes.1.product_family": "BRAKE_BLOCK_COMPOSITE",
        "capacity_changes.1.from_date": "2027-04-01", "capacity_changes.1.to_date": "2027-04-30",
        "capacity_changes.1.weekly_units": "150",
        "suspensions.0.foundry_code": "", "suspensions.0.from_date": "", "suspensions.1.foundry_code": "IKM-030",
        "suspensions.1.from_date": "2027-01-15",
    }  # fmt: skip
    answer = await ask(console, **CAPACITY_LOSS, **second)
    assert answer.status_code == 200, answer.text
    body = json.loads(next(r for r in services.calls if r.url.path == "/v1/what-if").content)
    assert [(c["foundry_code"], c["weekly_units"]) for c in body["capacity_changes"]] == [("IKM-071", 0), ("IKM-072", 150)]
    assert body["suspensions"] == [{"foundry_code": "IKM-030", "from_date": "2027-01-15"}]  # the empty row is left out


async def test_orders_refusal_of_a_later_row_lands_next_to_that_row(console: httpx.AsyncClient, services: Planning):
    await sign_in(console)
    # The form's first suspension row is empty: orders' suspensions.0 is the form's second row.
    services.answer = httpx.Response(
        422,
        json={"title": "Unprocessable", "status": 422, "detail": "invalid",
              "errors": [{"field": "body.suspensions.0.foundry_code", "type": "value_error", "message": "unknown member"},
                         {"field": "body.capacity_changes.1.weekly_units", "type": "int_parsing", "message": "not a number"}]},
    )  # fmt: skip
    answer = await ask(
        console,
        **CAPACITY_LOSS,
        **{"capacity_changes.1.foundry_code": "IKM-072", "capacity_changes.1.weekly_units": "5",
           "suspensions.0.foundry_code": "", "suspensions.1.foundry_code": "IKM-999", "suspensions.1.from_date": "2027-01-15"},
    )  # fmt: skip
    assert answer.status_code == 422
    assert 'id="err-suspensions-1-foundry_code"' in answer.text and 'id="err-suspensions-0-foundry_code"' not in answer.text
    assert 'id="err-capacity_changes-1-weekly_units"' in answer.text


async def test_no_more_than_ten_rows_of_a_kind(console: httpx.AsyncClient, services: Planning):
    await sign_in(console)
    rows = {f"certificate_lapses.{i}.foundry_code": "" for i in range(9)}
    page = await ask(console, **rows, add_row="certificate_lapses")
    assert 'name="certificate_lapses.9.foundry_code"' in page.text and 'value="certificate_lapses"' not in page.text
    page = await ask(console, **rows, **{"certificate_lapses.9.foundry_code": ""}, add_row="certificate_lapses")
    assert 'name="certificate_lapses.10.foundry_code"' not in page.text
