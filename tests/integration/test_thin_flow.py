"""One thin flow through all three services on the real broker, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

from tests.fixtures.tokens import as_
from tests.support import eventually, run_services

FOUNDRY = {"code": "IKM-001", "name": "CV Logam Batur", "village": "Batur", "product_families": ["BRAKE_BLOCK_COMPOSITE"]}


def purchase_order(po_number: str = "KAI/PO/2027/00042") -> dict:
    due = (date.today() + timedelta(days=90)).isoformat()
    return {
        "buyer_code": "KAI",
        "po_number": po_number,
        "issued_on": date.today().isoformat(),
        "currency": "IDR",
        "lines": [
            {
                "line_no": 1,
                "item_code": "BB-COMP-K",
                "quantity": 1200,
                "unit_price": 203700,
                "deliveries": [{"due_date": due, "quantity": 1200, "site_code": "BY-YK"}],
            }
        ],
    }


async def test_foundry_and_order_flow_through_kafka(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity", "orders", "quality") as svc:
        created = await svc["capacity"].http.post("/v1/foundries", json=FOUNDRY)
        assert created.status_code == 201, created.text
        assert created.json()["revision"] == 0

        async def seen_by(name: str):
            listed = (await svc[name].http.get("/v1/foundries")).json()
            return [f for f in listed if f["code"] == "IKM-001"]

        for name in ("orders", "quality"):
            projected = await eventually(lambda name=name: seen_by(name))
            assert projected[0]["name"] == "CV Logam Batur"
            assert projected[0]["product_families"] == ["BRAKE_BLOCK_COMPOSITE"]

        renamed = await svc["capacity"].http.patch("/v1/foundries/IKM-001", json={"name": "CV Logam Batur Jaya"})
        assert renamed.status_code == 200 and renamed.json()["revision"] == 1

        async def renamed_in_orders():
            found = await seen_by("orders")
            return found and found[0]["name"] == "CV Logam Batur Jaya" and found[0]["revision"] == 1

        await eventually(renamed_in_orders)

        kai = as_("buyer", "KAI")  # KAI's procurement system, with a token for its buyer code
        order = await svc["orders"].http.post(
            "/v1/purchase-orders", json=purchase_order(), headers={"Idempotency-Key": "k-1"}, auth=kai
        )
        assert order.status_code == 201, order.text
        assert order.json()["total_amount"] == 1200 * 203700
