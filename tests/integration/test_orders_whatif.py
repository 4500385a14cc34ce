"""What-if on both databases, through orders' HTTP API: the answer a planner gets for a capacity drop, a suspension
and new orders, and that asking changes nothing (no plan version, no outbox row, no reservation, no webhook)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from services.orders import store
from shared import clock
from shared.clock import FixedClock
from tests.integration.orders_support import (
    FAMILY,
    FIRST_DUE,
    MEMBERS,
    NOW,
    SECOND_DUE,
    Sessions,
    kai_order,
    know_members,
    orders_api,
    orders_database,
    plan_of,
    receive,
)


@pytest.fixture(autouse=True)
def fixed_clock() -> FixedClock:
    at = FixedClock(NOW)
    clock.use(at)
    return at


async def footprint(sessions: Sessions) -> dict[str, Any]:
    """Everything a what-if must leave as it was."""
    counted = (
        store.plans,
        store.allocations,
        store.backbone.outbox,
        store.reservation_projection,
        store.webhook_deliveries,
        store.refused_cells,
        store.capacity_projection,
    )
    async with sessions() as session:
        out: dict[str, Any] = {
            table.name: (await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one() for table in counted
        }
        out["statuses"] = await store.count_orders_by_status(session)
    return out


def new_order(po_number: str, quantity: int, due: str) -> dict[str, Any]:
    return {
        "buyer_code": "INKA",
        "po_number": po_number,
        "issued_on": NOW.date().isoformat(),
        "lines": [
            {
                "line_no": 1,
                "item_code": "BB-COMP-LL",
                "quantity": quantity,
                "unit_price": 215_000,
                "deliveries": [{"due_date": due, "quantity": quantity, "site_code": "INKA-MN"}],
            }
        ],
    }


async def test_a_capacity_drop_moves_the_members_work_and_changes_nothing(request, backend, tmp_path, token_mint):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        plan = await plan_of(sessions)
        units: dict[str, int] = {}
        for held in plan.allocations:
            units[held.allocation.foundry_code] = units.get(held.allocation.foundry_code, 0) + held.allocation.quantity
        busiest = max(sorted(units), key=lambda code: units[code])
        before = await footprint(sessions)
        body = {
            "capacity_changes": [
                {"foundry_code": busiest, "product_family": FAMILY, "from_date": NOW.date().isoformat(),
                 "to_date": SECOND_DUE.isoformat(), "weekly_units": 0}
            ],
            "new_orders": [new_order("INKA/SPK/2027/0007", 300, "2027-03-31"), new_order("INKA/SPK/2027/0008", 60_000, "2027-01-29")],
        }  # fmt: skip
        async with orders_api(sessions, token_mint, tmp_path) as client:
            response = await client.post("/v1/what-if", json=body, headers=token_mint.headers(roles=["planner"]))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert await footprint(sessions) == before
        assert (await plan_of(sessions)).version == plan.version

        (order,) = answer["orders"]
        assert order["order_id"] == "po_1" and order["replanned"] and busiest in order["reason"]
        (line,) = order["lines"]
        assert line["moved_units"] == units[busiest]
        shifts = {m["foundry_code"]: (m["units_before"], m["units_after"]) for m in line["members"]}
        assert shifts[busiest] == (units[busiest], 0)
        assert sum(after - was for code, (was, after) in shifts.items() if code != busiest) == units[busiest]
        assert busiest not in {a["foundry_code"] for a in line["plan"]["allocations"]}
        by_due: dict[str, int] = {}
        for a in line["plan"]["allocations"]:
            by_due[a["due_date"]] = by_due.get(a["due_date"], 0) + a["quantity"]
        assert not line["at_risk"] and by_due == {FIRST_DUE.isoformat(): 1000, SECOND_DUE.isoformat(): 1000}
        drop = next(u for u in answer["utilisation"] if u["foundry_code"] == busiest)
        assert drop["after"] is None or drop["after"] < (drop["before"] or 0)

        small, large = answer["new_orders"]
        assert small["acceptable_in_full"] and small["complete_by"] == "2027-03-31"
        assert sum(a["quantity"] for a in small["lines"][0]["plan"]["allocations"]) == 300
        assert not large["acceptable_in_full"] and large["lines"][0]["at_risk"] and large["lines"][0]["late_units"] > 0
        late = large["lines"][0]
        assert late["late_due_dates"] == ["2027-01-29"]
        assert late["late"] == [{"due_date": "2027-01-29", "units": late["late_units"]}]
        assert line["late"] == [] and small["lines"][0]["late"] == []


async def test_a_suspension_moves_what_the_member_would_have_made_after_it(request, backend, tmp_path, token_mint):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        plan = await plan_of(sessions)
        member = plan.allocations[0].allocation.foundry_code
        async with orders_api(sessions, token_mint, tmp_path) as client:
            headers = token_mint.headers(roles=["admin"])
            untouched = await client.post(
                "/v1/what-if", json={"suspensions": [{"foundry_code": member, "from_date": "2027-06-01"}]}, headers=headers
            )
            suspended = await client.post("/v1/what-if", json={"suspensions": [{"foundry_code": member, "from_date": "2026-11-24"}]}, headers=headers)  # fmt: skip
        assert untouched.status_code == 200 and suspended.status_code == 200
        (same,) = untouched.json()["orders"]
        assert not same["replanned"] and same["lines"][0]["moved_units"] == 0 and same["lines"][0]["members"] == []
        (moved,) = suspended.json()["orders"]
        assert moved["replanned"] and moved["lines"][0]["moved_units"] > 0
        assert member not in {a["foundry_code"] for a in moved["lines"][0]["plan"]["allocations"]}


async def test_bad_questions_are_refused_and_only_planners_may_ask(request, backend, tmp_path, token_mint):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        before = await footprint(sessions)
        async with orders_api(sessions, token_mint, tmp_path) as client:
            planner = token_mint.headers(roles=["planner"])
            bad = {
                "capacity_changes": [
                    {"foundry_code": "IKM-999", "product_family": "SPACESHIPS", "from_date": "2027-03-31",
                     "to_date": "2027-03-01", "weekly_units": 0}
                ],
                "suspensions": [{"foundry_code": "IKM-001", "from_date": "9999-12-31"}],
                "new_orders": [new_order("X/1", 100, "2026-11-01")],
            }  # fmt: skip
            refused = await client.post("/v1/what-if", json=bad, headers=planner)
            malformed = await client.post("/v1/what-if", json={"suspensions": [{"foundry_code": "IKM-001"}]}, headers=planner)
            anonymous = await client.post("/v1/what-if", json={})
            buyer = await client.post("/v1/what-if", json={}, headers=token_mint.headers(roles=["buyer"], buyer_code="KAI"))
        assert refused.status_code == 422 and refused.headers["content-type"].startswith("application/problem+json")
        fields = {e["field"] for e in refused.json()["errors"]}
        assert {
            "body.capacity_changes.0.foundry_code",
            "body.capacity_changes.0.product_family",
            "body.capacity_changes.0.to_date",
            "body.new_orders.0.lines.0.deliveries.0.due_date",
            "body.suspensions.0.from_date",
        } <= fields
        assert malformed.status_code == 422 and malformed.headers["content-type"].startswith("application/problem+json")
        assert anonymous.status_code == 401 and buyer.status_code == 403
        assert await footprint(sessions) == before
