"""The console's order page: a line at risk tells its late units per due date as orders answers them, and only the
dates for a plan made before orders kept the units of each. Orders and quality are stood in for by an httpx mock
transport."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fixtures.tokens import TokenMint
from tests.unit.test_console_login import Services, console_over, settings_for, sign_in, token_in

QUALITY = "http://quality.test"
STAGES = {"planned": 1500, "reserved": 1500, "produced": 0, "passed": 0, "failed": 0, "shipped": 0, "delivered": 0,
          "rejected": 0, "shippable": 0}  # fmt: skip


def order_line(line_no: int, risk: dict[str, Any]) -> dict[str, Any]:
    return {
        "line_no": line_no, "item_code": "BB-COMP-K", "description": "Blok rem komposit tipe K", "quantity": 2000,
        "unit_price": 203700, "quantities": STAGES, "risk": risk,
        "deliveries": [{"due_date": "2027-02-26", "quantity": 1000, "site_code": "BY-YK"},
                       {"due_date": "2027-03-31", "quantity": 1000, "site_code": "BY-YK"}],
    }  # fmt: skip


AT_RISK = {"at_risk": True, "late_units": 500, "late_due_dates": ["2027-02-26", "2027-03-31"],
           "late": [{"due_date": "2027-02-26", "units": 120}, {"due_date": "2027-03-31", "units": 380}],
           "expected_completion": "2027-04-21"}  # fmt: skip
KEPT_BEFORE = {"at_risk": True, "late_units": 200, "late_due_dates": ["2027-03-31"], "late": [], "expected_completion": None}
ON_TIME = {"at_risk": False, "late_units": 0, "late_due_dates": [], "late": [], "expected_completion": None}
ORDER = {
    "id": "po_kai", "po_number": "KAI/PO/2027/00042", "buyer_code": "KAI", "status": "accepted", "status_reason": None,
    "issued_on": "2026-12-01", "received_at": "2026-12-01T03:00:00Z", "currency": "IDR", "total_amount": 1222200000,
    "local_content_percent": None, "plan": None,
    "lines": [order_line(1, AT_RISK), order_line(2, KEPT_BEFORE), order_line(3, ON_TIME)],
}  # fmt: skip


class Orders(Services):
    """Orders' order GET and what hangs off it, and quality's lots, as the console sees them."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "identity.test":
            return super().handle(request)
        self.calls.append(request)
        path = request.url.path
        if path == "/v1/purchase-orders/po_kai":
            return httpx.Response(200, json=ORDER)
        if path in ("/v1/purchase-orders/po_kai/shipments", "/v1/purchase-orders/po_kai/plans"):
            return httpx.Response(200, json=[])
        if path == "/v1/lots":
            return httpx.Response(200, json={"items": [], "total": 0, "limit": 100, "offset": 0})
        return httpx.Response(404, json={"title": "Not found", "status": 404})


@pytest.fixture
def mint() -> TokenMint:
    return TokenMint()


@pytest.fixture
def services(mint: TokenMint) -> Orders:
    return Orders(mint)


@pytest.fixture
async def console(tmp_path: Any, mint: TokenMint, services: Orders) -> AsyncIterator[httpx.AsyncClient]:
    async with console_over(services.handle, mint, settings_for(tmp_path, quality_url=QUALITY)) as client:
        yield client


def risk_cells(page: str) -> dict[int, str]:
    """The risk cell of each order line, as text, by line number."""
    found = re.findall(r'<tr data-line="(\d+)">.*?<td class="line-risk">(.*?)</td>', page, re.S)
    return {int(no): re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", cell.replace("<br>", " "))).strip() for no, cell in found}


async def test_a_line_at_risk_tells_its_late_units_per_due_date(console: httpx.AsyncClient):
    await sign_in(console)
    page = await console.get("/orders/po_kai")
    assert page.status_code == 200, page.text
    cells = risk_cells(page.text)
    assert (
        cells[1] == "500 unit terlambat Unit terlambat per jatuh tempo: 26 Feb 2027: 120, 31 Mar 2027: 380 perkiraan 21 Apr 2027"
    )
    # A plan made before orders kept the units of each due date names the dates alone.
    assert "Unit terlambat per jatuh tempo: 31 Mar 2027 " in cells[2] + " " and "31 Mar 2027:" not in cells[2]
    assert "per jatuh tempo" not in cells[3]
    await console.post("/language", data={"csrftoken": token_in(page.text), "locale": "en", "back": "/orders/po_kai"})
    cells = risk_cells((await console.get("/orders/po_kai/live")).text)
    assert "Late units per due date: Feb 26, 2027: 120, Mar 31, 2027: 380 expected Apr 21, 2027" in cells[1], cells[1]
