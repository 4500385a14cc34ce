"""A purchase order is planned from orders' projections, reserved by capacity, and accepted — through Kafka."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from services.orders import projections
from shared.events.orders import AllocationPlanned
from shared.weeks import iso_week, week_end
from tests.support import eventually, published, run_services


async def register_member(svc, code: str, weekly: int, *, certified: bool = True, tkdn: float = 40.0) -> None:
    body = {"code": code, "name": f"CV {code}", "village": "Batur", "product_families": ["BRAKE_BLOCK_COMPOSITE"], "presses": 4}
    assert (await svc["capacity"].http.post("/v1/foundries", json=body)).status_code == 201
    change = {"kind": "standard", "reason": "declared", "product_family": "BRAKE_BLOCK_COMPOSITE", "weekly_units": weekly}
    assert (await svc["capacity"].http.post(f"/v1/foundries/{code}/capacity-changes", json=change)).status_code == 201

    async def known():
        return [f for f in (await svc["quality"].http.get("/v1/foundries")).json() if f["code"] == code]

    await eventually(known)
    today = date.today()
    validity = {"valid_from": (today - timedelta(days=10)).isoformat(), "valid_until": (today + timedelta(days=900)).isoformat()}
    certificates = [
        {"kind": "ISO9001", "number": f"ISO-{code}", "issuer": "TÜV"},
        {"kind": "TKDN", "number": f"TKDN-{code}", "issuer": "Kementerian Perindustrian", "tkdn_percent": tkdn},
    ]
    if certified:
        certificates.append({"kind": "SNI", "number": f"SNI-{code}", "issuer": "LSPro B4T", "items": ["BB-COMP-K"]})
    for certificate in certificates:
        response = await svc["quality"].http.post("/v1/certificates", json={"foundry_code": code, **certificate, **validity})
        assert response.status_code == 201, response.text


async def members_known(svc: Any, codes: list[str]) -> None:
    """Waits until orders has projected the members' capacity and certificates: planning earlier would plan
    on part of the cooperative."""
    sessions = svc["orders"].runtime.sessions
    today = date.today()

    async def ready() -> bool:
        async with sessions() as session:
            standing = await projections.standing(session, today)
            free = await projections.free_capacity(
                session, "BRAKE_BLOCK_COMPOSITE", iso_week(today), iso_week(today + timedelta(days=90))
            )
        return all(
            code in standing
            and {c["kind"] for c in standing[code]["certificates"]} >= {"SNI", "ISO9001", "TKDN"}
            and any(free.get(code, {}).values())
            for code in codes
        )

    await eventually(ready, timeout=60)


def kai_order(po_number: str, quantities: list[int]) -> dict:
    today = date.today()
    deliveries = [
        {"due_date": (today + timedelta(days=60 + 30 * i)).isoformat(), "quantity": q, "site_code": "BY-YK"}
        for i, q in enumerate(quantities)
    ]
    return {
        "buyer_code": "KAI",
        "po_number": po_number,
        "issued_on": today.isoformat(),
        "lines": [
            {
                "line_no": 1,
                "item_code": "BB-COMP-K",
                "quantity": sum(quantities),
                "unit_price": 203700,
                "deliveries": deliveries,
                "requirements": {"certificates": ["SNI", "ISO9001"], "min_tkdn_percent": 25},
            }
        ],
    }


async def test_order_is_planned_on_eligible_members_reserved_and_accepted(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        for i in range(1, 6):
            await register_member(svc, f"IKM-{i:03d}", 400)
        await register_member(svc, "IKM-009", 2000, certified=False)  # big, but no SNI: must not be planned
        await register_member(svc, "IKM-010", 2000, tkdn=12.0)  # TKDN below the buyer's 25 %

        async def all_projected():
            known = (await svc["orders"].http.get("/v1/foundries")).json()
            return len(known) == 7

        await eventually(all_projected)
        await members_known(svc, [f"IKM-{i:03d}" for i in range(1, 6)] + ["IKM-010"])
        posted = await svc["orders"].http.post(
            "/v1/purchase-orders", json=kai_order("KAI/PO/2027/00101", [3000, 3000]), headers={"Idempotency-Key": "plan-1"}
        )
        assert posted.status_code == 201, posted.text
        order_id = posted.json()["id"]

        async def accepted():
            order = (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}")).json()
            return order if order["status"] == "accepted" else None

        order = await eventually(accepted, timeout=60)
        plan = order["plan"]
        assert plan["version"] == 1 and plan["shortfall"] == []
        assert sum(a["quantity"] for a in plan["allocations"]) == 6000
        assert {a["state"] for a in plan["allocations"]} == {"reserved"}
        members = {a["foundry_code"] for a in plan["allocations"]}
        assert members <= {f"IKM-{i:03d}" for i in range(1, 6)} and len(members) >= 3

        reservations = (await svc["capacity"].http.get("/v1/reservations", params={"order_id": order_id})).json()
        items = reservations["items"] if isinstance(reservations, dict) else reservations
        assert sum(r["quantity"] for r in items if r["state"] == "confirmed") == 6000

        # The plan capacity reserved for is the one orders published.
        [planned] = [e.data for e in await published(settings, "orders", order_id) if isinstance(e.data, AllocationPlanned)]
        assert planned.plan_version == 1 and sum(a.quantity for a in planned.allocations) == 6000
        assert {a.allocation_id for a in planned.allocations} == {r["allocation_id"] for r in items}


async def test_a_small_line_is_planned_whole_on_one_member_and_accepted(make_settings):
    # 35 % of 300 units is below the 200-unit minimum lot of a brake block: the share gives way to the lot.
    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        codes = [f"IKM-{i:03d}" for i in range(1, 4)]
        for code in codes:
            await register_member(svc, code, 400)
        await members_known(svc, codes)
        posted = await svc["orders"].http.post(
            "/v1/purchase-orders", json=kai_order("KAI/PO/2027/00110", [300]), headers={"Idempotency-Key": "plan-small"}
        )
        assert posted.status_code == 201, posted.text
        order_id = posted.json()["id"]

        async def accepted():
            order = (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}")).json()
            return order if order["status"] == "accepted" else None

        order = await eventually(accepted, timeout=60)
        plan = order["plan"]
        assert plan["shortfall"] == [] and sum(a["quantity"] for a in plan["allocations"]) == 300
        # The default safety lead: a week more than testing and transport need, as there is room for it.
        assert order["lines"][0]["safety_lead_days"] == 7
        assert all(week_end(a["week"]) + timedelta(days=21) <= date.fromisoformat(a["due_date"]) for a in plan["allocations"])
        assert len({a["foundry_code"] for a in plan["allocations"]}) == 1
        assert all(a["quantity"] >= 200 for a in plan["allocations"])


async def test_order_beyond_eligible_capacity_needs_review_with_the_shortfall(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        await register_member(svc, "IKM-001", 300)

        await members_known(svc, [f"IKM-{i:03d}" for i in range(1, 2)])
        posted = await svc["orders"].http.post(
            "/v1/purchase-orders", json=kai_order("KAI/PO/2027/00102", [50000]), headers={"Idempotency-Key": "plan-2"}
        )
        order_id = posted.json()["id"]

        async def reviewed():
            order = (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}")).json()
            return order if order["status"] == "needs_review" else None

        order = await eventually(reviewed, timeout=60)
        shortfall = order["plan"]["shortfall"]
        planned = sum(a["quantity"] for a in order["plan"]["allocations"])
        assert sum(s["quantity"] for s in shortfall) == 50000 - planned > 0
        assert shortfall[0]["eligible_members"] == 1


async def test_capacity_drop_at_a_planned_foundry_moves_the_plan_away_from_it(make_settings):
    from shared.weeks import week_end, week_start

    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        for i in range(1, 7):
            await register_member(svc, f"IKM-{i:03d}", 400)

        await members_known(svc, [f"IKM-{i:03d}" for i in range(1, 7)])
        posted = await svc["orders"].http.post(
            "/v1/purchase-orders", json=kai_order("KAI/PO/2027/00103", [2400]), headers={"Idempotency-Key": "plan-3"}
        )
        order_id = posted.json()["id"]

        async def accepted(version: int):
            order = (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}")).json()
            return order if order["status"] == "accepted" and order["plan"]["version"] >= version else None

        order = await eventually(lambda: accepted(1), timeout=60)
        hit = order["plan"]["allocations"][0]
        # A press breaks down for the whole week the first allocation was planned in.
        breakdown = {
            "kind": "exception",
            "reason": "press_breakdown",
            "product_family": "BRAKE_BLOCK_COMPOSITE",
            "weekly_units": 0,
            "from_date": week_start(hit["week"]).isoformat(),
            "to_date": week_end(hit["week"]).isoformat(),
        }
        change = await svc["capacity"].http.post(f"/v1/foundries/{hit['foundry_code']}/capacity-changes", json=breakdown)
        assert change.status_code == 201, change.text

        replanned = await eventually(lambda: accepted(2), timeout=60)
        allocations = replanned["plan"]["allocations"]
        assert not [a for a in allocations if (a["foundry_code"], a["week"]) == (hit["foundry_code"], hit["week"])]
        assert sum(a["quantity"] for a in allocations) == 2400
        assert replanned["plan"]["reason"].startswith("reservation revoked")
        kept = {a["allocation_id"] for a in order["plan"]["allocations"]} - {hit["allocation_id"]}
        assert kept <= {a["allocation_id"] for a in allocations}  # only the affected allocation moved

        # The plan history lists every version with why it was made and each member's units in it.
        history = (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}/plans")).json()
        assert [v["version"] for v in history] == list(range(1, replanned["plan"]["version"] + 1))
        assert history[0]["reason"] == "received" and history[-1]["reason"] == replanned["plan"]["reason"]
        latest: dict[str, int] = {}
        for a in allocations:
            latest[a["foundry_code"]] = latest.get(a["foundry_code"], 0) + a["quantity"]
        assert {m["foundry_code"]: m["quantity"] for m in history[-1]["members"]} == latest
        assert all(sum(m["quantity"] for m in v["members"]) + v["shortfall_units"] == 2400 for v in history)
        missing = await svc["orders"].http.get("/v1/purchase-orders/po_nothing/plans")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


async def test_cancelled_order_releases_its_capacity_and_is_not_replanned(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        for i in range(1, 4):
            await register_member(svc, f"IKM-{i:03d}", 400)

        await members_known(svc, [f"IKM-{i:03d}" for i in range(1, 4)])
        posted = await svc["orders"].http.post(
            "/v1/purchase-orders", json=kai_order("KAI/PO/2027/00104", [1200]), headers={"Idempotency-Key": "plan-4"}
        )
        order_id = posted.json()["id"]

        async def accepted():
            return (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}")).json()["status"] == "accepted"

        await eventually(accepted, timeout=60)
        cancelled = await svc["orders"].http.post(f"/v1/purchase-orders/{order_id}/cancel", json={"reason": "SPK withdrawn"})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

        async def released():
            listed = (await svc["capacity"].http.get("/v1/reservations", params={"order_id": order_id})).json()
            items = listed["items"] if isinstance(listed, dict) else listed
            return items and all(r["state"] == "released" for r in items)

        await eventually(released)
        again = await svc["orders"].http.post(f"/v1/purchase-orders/{order_id}/cancel", json={"reason": "twice"})
        assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
        missing = await svc["orders"].http.post("/v1/purchase-orders/po_nope/cancel", json={"reason": "x"})
        assert missing.status_code == 404
        no_reason = await svc["orders"].http.post(f"/v1/purchase-orders/{order_id}/cancel", json={})
        assert no_reason.status_code == 422
        order = (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}")).json()
        assert order["status"] == "cancelled" and order["plan"]["version"] == 1


async def test_orders_posted_back_to_back_do_not_plan_on_the_same_capacity(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        for i in range(1, 5):
            await register_member(svc, f"IKM-{i:03d}", 400)

        await members_known(svc, [f"IKM-{i:03d}" for i in range(1, 5)])
        ids = []
        for n in range(3):
            posted = await svc["orders"].http.post(
                "/v1/purchase-orders", json=kai_order(f"KAI/PO/2027/0030{n}", [1200]), headers={"Idempotency-Key": f"b2b-{n}"}
            )
            assert posted.status_code == 201, posted.text
            ids.append(posted.json()["id"])

        async def all_accepted():
            orders = [(await svc["orders"].http.get(f"/v1/purchase-orders/{i}")).json() for i in ids]
            return orders if all(o["status"] == "accepted" for o in orders) else None

        orders = await eventually(all_accepted, timeout=60)
        # Each was planned once: the later ones counted what the earlier ones were still reserving.
        assert [o["plan"]["version"] for o in orders] == [1, 1, 1]
        reservations = (await svc["capacity"].http.get("/v1/reservations", params={"state": "confirmed"})).json()
        items = reservations["items"] if isinstance(reservations, dict) else reservations
        assert sum(r["quantity"] for r in items) == 3600


async def test_capacity_refusing_an_allocation_moves_its_units_and_never_back_to_that_foundry_week(make_settings):
    from shared.weeks import weeks_between

    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        for i in range(1, 7):
            await register_member(svc, f"IKM-{i:03d}", 400)
        await members_known(svc, [f"IKM-{i:03d}" for i in range(1, 7)])
        # Another buyer's enquiry holds all of IKM-001's capacity over the API. Orders only learns of
        # reservations once confirmed, so it plans there and capacity refuses.
        today = date.today()
        for week in weeks_between(today, today + timedelta(days=70)):
            hold = await svc["capacity"].http.post(
                "/v1/reservations",
                json={"foundry_code": "IKM-001", "product_family": "BRAKE_BLOCK_COMPOSITE", "week": week, "quantity": 400},
            )
            assert hold.status_code in (201, 409), hold.text
        posted = await svc["orders"].http.post(
            "/v1/purchase-orders", json=kai_order("KAI/PO/2027/00104", [1200]), headers={"Idempotency-Key": "plan-4"}
        )
        order_id = posted.json()["id"]

        async def accepted():
            order = (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}")).json()
            return order if order["status"] == "accepted" else None

        order = await eventually(accepted, timeout=60)
        # One refusal per foundry-week tried: refused cells are remembered, so the replans end.
        assert 2 <= order["plan"]["version"] <= 12 and "reservation rejected" in order["plan"]["reason"]
        assert "IKM-001" not in {a["foundry_code"] for a in order["plan"]["allocations"]}
        assert sum(a["quantity"] for a in order["plan"]["allocations"]) == 1200 and order["plan"]["shortfall"] == []


async def test_one_capacity_drop_makes_one_plan_version_per_order_it_touches(make_settings):
    """The member loses four weeks: capacity revokes one reservation per foundry-week and order, orders makes one
    new version of each order it touches, and they are accepted again."""
    from shared.weeks import add_weeks, week_end, week_start

    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        codes = [f"IKM-{i:03d}" for i in range(1, 7)]
        for code in codes:
            await register_member(svc, code, 500)
        await members_known(svc, codes)
        ids = []
        for n, quantities in enumerate(([2000, 2000], [1500, 1500, 1500])):
            posted = await svc["orders"].http.post(
                "/v1/purchase-orders",
                json=kai_order(f"KAI/PO/2027/0020{n}", quantities),
                headers={"Idempotency-Key": f"drop-{n}"},
            )
            assert posted.status_code == 201, posted.text
            ids.append(posted.json()["id"])

        async def order(order_id: str) -> dict:
            return (await svc["orders"].http.get(f"/v1/purchase-orders/{order_id}")).json()

        async def all_accepted(newer_than: dict[str, int] | None = None):
            found = [await order(i) for i in ids]
            newer_than = newer_than or {}
            if all(o["status"] == "accepted" and o["plan"]["version"] > newer_than.get(o["id"], 0) for o in found):
                return found
            return None

        before = {o["id"]: o for o in await eventually(all_accepted, timeout=90)}
        cells: dict[str, dict[str, set[str]]] = {}
        for o in before.values():
            for a in o["plan"]["allocations"]:
                cells.setdefault(a["foundry_code"], {}).setdefault(a["week"], set()).add(o["id"])
        # The member and four consecutive weeks holding allocations of both orders, if any, else of the most.
        member, first = max(
            ((code, week) for code, weeks in cells.items() for week in weeks),
            key=lambda cw: (len(set().union(*(cells[cw[0]].get(add_weeks(cw[1], k), set()) for k in range(4)))), cw),
        )
        last = add_weeks(first, 3)
        touched = set().union(*(cells[member].get(add_weeks(first, k), set()) for k in range(4)))
        drop = {"kind": "exception", "reason": "press_breakdown", "product_family": "BRAKE_BLOCK_COMPOSITE", "weekly_units": 0,
                "from_date": week_start(first).isoformat(), "to_date": week_end(last).isoformat()}  # fmt: skip
        change = await svc["capacity"].http.post(f"/v1/foundries/{member}/capacity-changes", json=drop)
        assert change.status_code == 201, change.text
        revoked = change.json()["revoked"]
        per_order: dict[str, int] = {}
        for r in revoked:
            per_order[r["order_id"]] = per_order.get(r["order_id"], 0) + 1
        assert max(per_order.values()) >= 2, "the drop should revoke several reservations of one order"
        assert set(per_order) <= touched

        after = {
            o["id"]: o
            for o in await eventually(lambda: all_accepted({i: before[i]["plan"]["version"] for i in touched}), timeout=60)
        }
        await asyncio.sleep(2.0)  # anything still to come would come now
        for order_id in ids:
            settled = await order(order_id)
            expected = before[order_id]["plan"]["version"] + (1 if order_id in touched else 0)
            assert settled["plan"]["version"] == expected, (order_id, settled["plan"]["reason"])
            assert settled["status"] == "accepted"
            assert not [a for a in settled["plan"]["allocations"] if a["foundry_code"] == member and first <= a["week"] <= last]
            assert sum(a["quantity"] for a in settled["plan"]["allocations"]) == sum(
                line["quantity"] for line in settled["lines"]
            )
        assert set(after) == set(ids)
