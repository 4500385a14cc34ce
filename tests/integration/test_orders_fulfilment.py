"""Fulfilment that reacts by itself, with all three services on the real broker: lots fail and are made again,
passed lots are shipped, the buyer's BAST closes the order; members losing eligibility move the plan, and a line
that cannot be made in time is at risk until it recovers. Buyers hear of it through signed webhooks."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from shared.events.orders import PurchaseOrderFulfilled, ShipmentDelivered, ShipmentDispatched
from tests.fixtures.tokens import as_
from tests.integration.quality_helpers import good_composite_sample
from tests.integration.test_orders_planning import kai_order, members_known, register_member
from tests.support import RECEIVER_ON_LOOPBACK, Receiver, eventually, published, run_services


async def order_when(svc: Any, order_id: str, ready: Any, timeout: float = 60) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def check() -> dict[str, Any] | None:
        order = (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}")).json()
        seen[:] = [order]
        return order if ready(order) else None

    try:
        return await eventually(check, timeout=timeout, interval=0.3)  # type: ignore[no-any-return]
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the order was last: {json.dumps(seen[0] if seen else None)}") from None


async def make_lot(svc: Any, order_id: str, allocation: dict[str, Any], lot_code: str, *, passing: bool) -> None:
    """A member reports production for an allocation and the laboratory's result decides the lot."""
    quality = svc["quality"].http
    lot = await quality.post(
        "/v1/lots",
        json={"lot_code": lot_code, "foundry_code": allocation["foundry_code"], "item_code": "BB-COMP-K",
              "quantity": allocation["quantity"], "order_id": order_id, "allocation_id": allocation["allocation_id"]},
    )  # fmt: skip
    assert lot.status_code == 201, lot.text
    samples = [good_composite_sample() for _ in range(lot.json()["sampling_plan"]["sample_size"])]
    if not passing:
        for sample in samples[:5]:
            sample["friction_coefficient"] = 0.15
    result = await quality.post(
        f"/v1/lots/{lot_code}/results", json={"report_number": f"LHU/{lot_code}", "laboratory": "B4T Bandung", "samples": samples}
    )
    assert result.status_code == 201 and result.json()["status"] == ("passed" if passing else "failed"), result.text


def line_of(order: dict[str, Any]) -> dict[str, Any]:
    return order["lines"][0]


def webhook_types(receiver: Receiver) -> list[str]:
    return [json.loads(r["body"])["type"] for r in receiver.received]


async def test_a_failed_lot_is_made_again_passed_lots_ship_and_the_bast_fulfils_the_order(make_settings):
    settings = make_settings(orders_webhook_poll_interval_s=0.05, **RECEIVER_ON_LOOPBACK)
    with Receiver() as receiver:
        async with run_services(settings, "capacity", "quality", "orders") as svc:
            orders = svc["orders"].http
            assert (await orders.put("/v1/buyers/KAI/webhook", json={"url": receiver.url})).status_code == 200
            for i in range(1, 6):
                await register_member(svc, f"IKM-{i:03d}", 400, tkdn=30.0 + 5 * i)

            await members_known(svc, [f"IKM-{i:03d}" for i in range(1, 6)])
            posted = await orders.post(
                "/v1/purchase-orders", json=kai_order("KAI/PO/2027/00201", [1200]), headers={"Idempotency-Key": "ful-1"}
            )
            order_id = posted.json()["id"]
            order = await order_when(svc, order_id, lambda o: o["status"] == "accepted")
            first = order["plan"]["allocations"]
            assert line_of(order)["quantities"]["planned"] == line_of(order)["quantities"]["reserved"] == 1200

            # A lot fails testing: its units are planned again, the failed allocation stays (its capacity was used).
            failing = first[0]
            await make_lot(svc, order_id, failing, "LOT-F1", passing=False)
            order = await order_when(svc, order_id, lambda o: o["plan"]["version"] >= 2 and o["status"] == "accepted")
            assert "LOT-F1 failed" in order["plan"]["reason"]
            quantities = line_of(order)["quantities"]
            assert quantities["failed"] == quantities["produced"] == failing["quantity"]
            assert quantities["planned"] == 1200 + failing["quantity"]
            assert any(a["allocation_id"] == failing["allocation_id"] for a in order["plan"]["allocations"])
            replacements = [
                a for a in order["plan"]["allocations"] if a["allocation_id"] not in {f["allocation_id"] for f in first}
            ]
            assert sum(a["quantity"] for a in replacements) == failing["quantity"]
            assert line_of(order)["risk"]["at_risk"] is False

            # Every other allocation's lot passes: all of it becomes shippable.
            to_make = [a for a in order["plan"]["allocations"] if a["allocation_id"] != failing["allocation_id"]]
            for n, allocation in enumerate(to_make):
                await make_lot(svc, order_id, allocation, f"LOT-P{n}", passing=True)
            order = await order_when(svc, order_id, lambda o: line_of(o)["quantities"]["passed"] == 1200)
            assert line_of(order)["quantities"]["shippable"] == 1200

            # Shipments take passed units only, never more than a lot has left or the site still needs.
            bad = await orders.post(
                f"/v1/purchase-orders/{order_id}/shipments",
                json={"surat_jalan_number": "SJ/BJ/2027/0001", "site_code": "BY-YK", "vehicle_plate": "AD 8123 KT",
                      "items": [{"lot_code": "LOT-F1", "quantity": 10}, {"lot_code": "LOT-P0", "quantity": 99999}]},
            )  # fmt: skip
            assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
            fields = {e["field"]: e["message"] for e in bad.json()["errors"]}
            assert (
                "failed testing" in fields["body.items.0.lot_code"]
                and "passed units not yet shipped" in fields["body.items.1.quantity"]
            )
            wrong_site = await orders.post(
                f"/v1/purchase-orders/{order_id}/shipments",
                json={
                    "surat_jalan_number": "SJ/BJ/2027/0001",
                    "site_code": "BY-MRI",
                    "vehicle_plate": "AD 8123 KT",
                    "items": [{"lot_code": "LOT-P0", "quantity": 10}],
                },
            )
            assert wrong_site.status_code == 422 and wrong_site.json()["errors"][0]["field"] == "body.site_code"

            items = [{"lot_code": f"LOT-P{n}", "quantity": a["quantity"]} for n, a in enumerate(to_make)]
            created = await orders.post(
                f"/v1/purchase-orders/{order_id}/shipments",
                json={
                    "surat_jalan_number": "SJ/BJ/2027/0001",
                    "site_code": "BY-YK",
                    "vehicle_plate": "AD 8123 KT",
                    "driver_name": "Pak Slamet",
                    "items": items,
                },
            )
            assert created.status_code == 201, created.text
            shipment = created.json()
            assert shipment["status"] == "prepared" and sum(i["quantity"] for i in shipment["items"]) == 1200
            again = await orders.post(
                f"/v1/purchase-orders/{order_id}/shipments",
                json={
                    "surat_jalan_number": "SJ/BJ/2027/0001",
                    "site_code": "BY-YK",
                    "vehicle_plate": "AD 1",
                    "items": [{"lot_code": "LOT-P0", "quantity": 1}],
                },
            )
            assert again.status_code == 409
            too_early = await orders.post(
                f"/v1/shipments/{shipment['id']}/handover",
                json={
                    "bast_number": "BAST/1",
                    "signed_by": "Kepala BY",
                    "signed_on": date.today().isoformat(),
                    "items": [{"lot_code": "LOT-P0", "received": 1}],
                },
            )
            assert too_early.status_code == 409

            dispatched = await orders.post(f"/v1/shipments/{shipment['id']}/dispatch")
            assert dispatched.status_code == 200 and dispatched.json()["status"] == "dispatched"
            assert (await orders.post(f"/v1/shipments/{shipment['id']}/dispatch")).status_code == 409
            order = (await orders.get(f"/v1/purchase-orders/{order_id}")).json()
            assert line_of(order)["quantities"]["shipped"] == 1200 and line_of(order)["quantities"]["shippable"] == 0

            # The buyer refuses 50 units at handover: the rest is delivered and the 50 are planned again.
            refused_lot = items[0]["lot_code"]
            handover = [{"lot_code": i["lot_code"], "received": i["quantity"] - (50 if i["lot_code"] == refused_lot else 0),
                         "rejected": 50 if i["lot_code"] == refused_lot else 0} for i in items]  # fmt: skip
            mismatched = await orders.post(
                f"/v1/shipments/{shipment['id']}/handover",
                json={"bast_number": "BAST/BY-YK/0117", "signed_by": "Ir. Sutrisno", "signed_on": date.today().isoformat(),
                      "items": [{**handover[0], "received": 1}, *handover[1:]]},
            )  # fmt: skip
            assert mismatched.status_code == 422 and "must add up" in mismatched.json()["errors"][0]["message"]
            signed = await orders.post(
                f"/v1/shipments/{shipment['id']}/handover",
                json={
                    "bast_number": "BAST/BY-YK/0117",
                    "signed_by": "Ir. Sutrisno",
                    "signed_on": date.today().isoformat(),
                    "items": handover,
                },
            )
            assert signed.status_code == 200, signed.text
            assert signed.json()["status"] == "delivered" and signed.json()["bast_number"] == "BAST/BY-YK/0117"
            order = await order_when(
                svc, order_id, lambda o: "refused at handover" in o["plan"]["reason"] and o["status"] == "accepted"
            )
            quantities = line_of(order)["quantities"]
            assert (quantities["delivered"], quantities["rejected"]) == (1150, 50)
            remake = [a for a in order["plan"]["allocations"] if a["allocation_id"].endswith(f":v{order['plan']['version']}")]
            assert sum(a["quantity"] for a in remake) == 50

            # The last 50 are made, pass, are shipped and received: the order is fulfilled.
            await make_lot(svc, order_id, remake[0], "LOT-R1", passing=True)
            await order_when(svc, order_id, lambda o: line_of(o)["quantities"]["shippable"] == 50)
            last = await orders.post(
                f"/v1/purchase-orders/{order_id}/shipments",
                json={
                    "surat_jalan_number": "SJ/BJ/2027/0002",
                    "site_code": "BY-YK",
                    "vehicle_plate": "AD 8123 KT",
                    "items": [{"lot_code": "LOT-R1", "quantity": 50}],
                },
            )
            assert last.status_code == 201, last.text
            assert (await orders.post(f"/v1/shipments/{last.json()['id']}/dispatch")).status_code == 200
            final = await orders.post(
                f"/v1/shipments/{last.json()['id']}/handover",
                json={
                    "bast_number": "BAST/BY-YK/0130",
                    "signed_by": "Ir. Sutrisno",
                    "signed_on": date.today().isoformat(),
                    "items": [{"lot_code": "LOT-R1", "received": 50}],
                },
            )
            assert final.status_code == 200, final.text
            order = (await orders.get(f"/v1/purchase-orders/{order_id}")).json()
            assert order["status"] == "fulfilled" and line_of(order)["quantities"]["delivered"] == 1200
            shipped = (await orders.get(f"/v1/purchase-orders/{order_id}/shipments")).json()
            value = {i["lot_code"]: i for s in shipped for i in s["items"]}
            expected = sum((i["received"] or 0) * i["tkdn_percent"] for i in value.values()) / 1200
            assert order["local_content_percent"] == round(expected, 2) and 35 <= order["local_content_percent"] <= 55
            assert (await orders.post(f"/v1/purchase-orders/{order_id}/cancel", json={"reason": "too late"})).status_code == 409

            async def all_sent():
                types = webhook_types(receiver)
                return types if "order.fulfilled" in types else None

            types = await eventually(all_sent, timeout=30)
            assert {"order.accepted", "shipment.dispatched", "shipment.delivered", "order.fulfilled"} <= set(types)

            async def fulfilment_published():
                kinds = [type(e.data) for e in await published(settings, "orders", order_id)]
                return kinds if PurchaseOrderFulfilled in kinds else None

            # Every shipment was dispatched before it was delivered, and the order was fulfilled last.
            kinds = [
                k
                for k in await eventually(fulfilment_published)
                if k in (ShipmentDispatched, ShipmentDelivered, PurchaseOrderFulfilled)
            ]
            assert kinds == [ShipmentDispatched, ShipmentDelivered] * 2 + [PurchaseOrderFulfilled], kinds


async def test_a_revoked_certificate_puts_a_line_at_risk_and_a_new_one_brings_it_back_on_track(make_settings):
    settings = make_settings(orders_webhook_poll_interval_s=0.05, **RECEIVER_ON_LOOPBACK)
    with Receiver() as receiver:
        async with run_services(settings, "capacity", "quality", "orders") as svc:
            orders, quality = svc["orders"].http, svc["quality"].http
            assert (await orders.put("/v1/buyers/KAI/webhook", json={"url": receiver.url})).status_code == 200
            for i in range(1, 4):
                await register_member(svc, f"IKM-{i:03d}", 400)

            await members_known(svc, [f"IKM-{i:03d}" for i in range(1, 4)])
            # 1,200 units with at most 35 % each (420) on three members: no room for losing one of them.
            posted = await orders.post(
                "/v1/purchase-orders", json=kai_order("KAI/PO/2027/00202", [1200]), headers={"Idempotency-Key": "risk-1"}
            )
            order_id = posted.json()["id"]
            order = await order_when(svc, order_id, lambda o: o["status"] == "accepted")
            assert {a["foundry_code"] for a in order["plan"]["allocations"]} == {"IKM-001", "IKM-002", "IKM-003"}

            sni = [
                c
                for c in (await quality.get("/v1/certificates", params={"foundry_code": "IKM-002"})).json()
                if c["kind"] == "SNI"
            ]
            revoked = await quality.post(
                f"/v1/certificates/{sni[0]['id']}/revoke", json={"reason": "SPPT-SNI suspended by LSPro after surveillance audit"}
            )
            assert revoked.status_code == 200, revoked.text

            order = await order_when(svc, order_id, lambda o: line_of(o)["risk"]["at_risk"])
            assert "SNI certificate of IKM-002 revoked" in order["plan"]["reason"]
            assert "IKM-002" not in {a["foundry_code"] for a in order["plan"]["allocations"]}
            risk = line_of(order)["risk"]
            due = date.fromisoformat(order["lines"][0]["deliveries"][0]["due_date"])
            assert risk["late_units"] == 1200 - line_of(order)["quantities"]["planned"] > 0
            assert risk["late_due_dates"] == [due.isoformat()]
            assert risk["late"] == [{"due_date": due.isoformat(), "units": risk["late_units"]}]
            assert risk["expected_completion"] is not None and date.fromisoformat(risk["expected_completion"]) > date.today()
            assert order["status"] in ("planned", "accepted")  # under way, not back in review

            today = date.today()
            granted = await quality.post(
                "/v1/certificates",
                json={"foundry_code": "IKM-002", "kind": "SNI", "number": "SNI-IKM-002-R1", "issuer": "LSPro B4T", "items": ["BB-COMP-K"],
                      "valid_from": (today - timedelta(days=1)).isoformat(), "valid_until": (today + timedelta(days=900)).isoformat()},
            )  # fmt: skip
            assert granted.status_code == 201, granted.text
            order = await order_when(svc, order_id, lambda o: not line_of(o)["risk"]["at_risk"] and o["status"] == "accepted")
            assert line_of(order)["quantities"]["planned"] == 1200
            assert "IKM-002" in {a["foundry_code"] for a in order["plan"]["allocations"]}

            async def told():
                types = webhook_types(receiver)
                return types if "line.back_on_track" in types else None

            types = await eventually(told, timeout=30)
            assert types.index("line.at_risk") < types.index("line.back_on_track")
            at_risk = next(json.loads(r["body"]) for r in receiver.received if json.loads(r["body"])["type"] == "line.at_risk")
            assert at_risk["data"]["line_no"] == 1 and at_risk["data"]["expected_completion"] == risk["expected_completion"]


async def test_suspended_and_resigned_members_lose_their_work_and_the_cooperative_can_reject_an_order(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        orders, quality = svc["orders"].http, svc["quality"].http
        for i in range(1, 9):
            await register_member(svc, f"IKM-{i:03d}", 400)

        await members_known(svc, [f"IKM-{i:03d}" for i in range(1, 9)])
        posted = await orders.post(
            "/v1/purchase-orders", json=kai_order("KAI/PO/2027/00203", [1200]), headers={"Idempotency-Key": "susp-1"}
        )
        order_id = posted.json()["id"]
        order = await order_when(svc, order_id, lambda o: o["status"] == "accepted")
        victim = order["plan"]["allocations"][0]["foundry_code"]
        suspended = await quality.put(
            f"/v1/foundries/{victim}/quality-status/override",
            json={"status": "suspended", "reason": "three failed lots in a row"},
            auth=as_("qa_officer"),
        )
        assert suspended.status_code in (200, 201), suspended.text
        order = await order_when(
            svc,
            order_id,
            lambda o: (
                victim not in {a["foundry_code"] for a in o["plan"]["allocations"]}
                and line_of(o)["quantities"]["reserved"] == 1200
            ),
        )
        assert f"{victim} suspended" in order["plan"]["reason"] and order["status"] == "accepted"
        assert not line_of(order)["risk"]["at_risk"]

        # A member resigns from the cooperative: capacity revokes its reservations, orders plans its units away.
        leaving = sorted({a["foundry_code"] for a in order["plan"]["allocations"]})[0]
        resigned = await svc["capacity"].http.patch(f"/v1/foundries/{leaving}", json={"membership_status": "resigned"})
        assert resigned.status_code == 200, resigned.text
        order = await order_when(
            svc,
            order_id,
            lambda o: (
                leaving not in {a["foundry_code"] for a in o["plan"]["allocations"]}
                and line_of(o)["quantities"]["reserved"] == 1200
            ),
        )
        assert not {victim, leaving} & {a["foundry_code"] for a in order["plan"]["allocations"]}

        rejected = await orders.post(f"/v1/purchase-orders/{order_id}/reject", json={"reason": "price no longer agreed"})
        assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
        assert (await orders.post(f"/v1/purchase-orders/{order_id}/reject", json={"reason": "again"})).status_code == 409
        assert (await orders.post(f"/v1/purchase-orders/{order_id}/replan", json={"reason": "try"})).status_code == 409
        order = (await orders.get(f"/v1/purchase-orders/{order_id}")).json()
        assert order["status_reason"] == "price no longer agreed"

        async def released():
            reservations = (await svc["capacity"].http.get("/v1/reservations", params={"order_id": order_id})).json()
            items = reservations["items"] if isinstance(reservations, dict) else reservations
            return all(r["state"] != "confirmed" for r in items) and items

        await eventually(released, timeout=30)
