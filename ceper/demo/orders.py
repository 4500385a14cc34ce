"""Orders' part of the demo: fulfilment under way on the INKA order, so `make dev` shows every stage.

Runs after the purchase orders were posted: once the INKA order is accepted, members report lots for its
earliest allocations (one fails its laboratory test and is planned again), and the passed units leave for
PT INKA Madiun under a surat jalan. Safe to run again: lots and the surat jalan exist only once.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import httpx

from .quality import decide_lot


def _inka_order(client: httpx.Client, orders_url: str, po_number: str, wait_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        found = client.get(f"{orders_url}/v1/purchase-orders", params={"buyer_code": "INKA"}).raise_for_status().json()
        match = [o for o in found["items"] if o["po_number"] == po_number]
        if match:
            order = client.get(f"{orders_url}/v1/purchase-orders/{match[0]['id']}").raise_for_status().json()
            if order["status"] in ("accepted", "fulfilled") or (order["status"] == "needs_review" and order["plan"]):
                return order  # type: ignore[no-any-return]
        time.sleep(0.5)
    return None


def seed_fulfilment(
    client: httpx.Client, urls: dict[str, str], po_number: str, seed: int, today: date, *, wait_s: float = 90.0
) -> str:
    order = _inka_order(client, urls["orders"], po_number, wait_s)
    if order is None:
        return f"Fulfilment demo: skipped, {po_number} was not planned within {wait_s:.0f}s."
    first = sorted(order["plan"]["allocations"], key=lambda a: (a["week"], a["foundry_code"]))[:4]
    lots: list[tuple[str, int]] = []
    failed = 0
    for n, allocation in enumerate(first, start=1):
        lot_code = f"{allocation['foundry_code']}-CI-DEMO-{n:02d}"
        failing = n == 2  # one member's lot fails: its units are made again
        body = {
            "lot_code": lot_code, "foundry_code": allocation["foundry_code"], "item_code": "BB-CI",
            "quantity": allocation["quantity"], "order_id": order["id"], "allocation_id": allocation["allocation_id"],
        }  # fmt: skip
        created = client.post(f"{urls['quality']}/v1/lots", json=body)
        if created.status_code not in (201, 409):
            raise RuntimeError(f"seeding lot {lot_code} failed: {created.status_code} {created.text}")
        decide_lot(client, urls["quality"], lot_code, failing, seed, today, "B4T Bandung")
        failed += failing
        if not failing:
            lots.append((lot_code, allocation["quantity"]))
    # Orders learns of passed lots through quality's events: wait until they are shippable.
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        current = client.get(f"{urls['orders']}/v1/purchase-orders/{order['id']}").raise_for_status().json()
        if current["lines"][0]["quantities"]["passed"] >= sum(q for _, q in lots):
            break
        time.sleep(0.5)
    shipment = client.post(
        f"{urls['orders']}/v1/purchase-orders/{order['id']}/shipments",
        json={"surat_jalan_number": f"SJ/BJ/{today.year}/0001", "site_code": "INKA-MN", "vehicle_plate": "AD 8123 KT",
              "driver_name": "Pak Slamet", "items": [{"lot_code": code, "quantity": quantity} for code, quantity in lots]},
    )  # fmt: skip
    if shipment.status_code == 409:
        return "Fulfilment demo: 0 shipments added (existing ones kept)."
    if shipment.status_code != 201:
        raise RuntimeError(f"seeding the demo shipment failed: {shipment.status_code} {shipment.text}")
    client.post(f"{urls['orders']}/v1/shipments/{shipment.json()['id']}/dispatch").raise_for_status()
    units = sum(q for _, q in lots)
    return f"Fulfilment demo: {len(first)} lots on {po_number} ({failed} failed, made again), {units} units dispatched to INKA Madiun."
