"""Capacity reacting to orders' plans and cancellations and to quality's lots, and revoking what no longer fits,
on the real broker with SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.capacity import store
from shared.events import Envelope
from shared.events.orders import PurchaseOrderCancelled
from shared.events.quality import LotRegistered
from tests.integration.capacity_support import (
    CAST_IRON,
    COMPOSITE,
    NOW,
    allocation,
    applied,
    count_rows,
    events_named,
    foundry,
    ledger_matches_reservations,
    plan,
    publish,
    register,
    run_capacity,
    set_standard,
)
from tests.support import eventually


async def reservations_of(capacity, order_id: str) -> list[dict]:
    listed = await capacity.http.get("/v1/reservations", params={"order_id": order_id})
    assert listed.status_code == 200, listed.text
    return listed.json()["items"]


async def test_a_plan_reserves_what_fits_rejects_the_rest_whole_and_is_applied_once(make_settings):
    settings = make_settings()
    async with run_capacity(settings) as capacity:
        await register(capacity, foundry("IKM-001", COMPOSITE, presses=2), foundry("IKM-002", COMPOSITE))
        await set_standard(capacity, "IKM-001", 500)
        await set_standard(capacity, "IKM-002", 500)

        [planned] = await publish(
            settings,
            plan(
                "po_1", 1,
                allocation("a-1", "IKM-001", "2027-W10", 300),
                allocation("a-2", "IKM-001", "2027-W10", 300),  # only 200 left: refused whole
                allocation("a-3", "IKM-002", "2027-W11", 500),  # exactly what is free
                allocation("a-4", "IKM-404", "2027-W11", 10),
                allocation("a-5", "IKM-001", "2027-W12", 10, family=CAST_IRON),
                allocation("a-6", "IKM-002", "2026-W40", 10),
            ),
        )  # fmt: skip
        confirmed = await events_named(settings, "reservation_confirmed", 2)
        rejected = await events_named(settings, "reservation_rejected", 4)
        assert sorted((e.allocation_id, e.foundry_code, e.week, e.quantity, e.plan_version, e.due_date) for e in confirmed) == [
            ("a-1", "IKM-001", "2027-W10", 300, 1, date(2027, 4, 30)),
            ("a-3", "IKM-002", "2027-W11", 500, 1, date(2027, 4, 30)),
        ]
        assert {e.order_id for e in confirmed + rejected} == {"po_1"}
        assert sorted((e.allocation_id, e.requested_quantity, e.free_quantity, e.reason) for e in rejected) == [
            ("a-2", 300, 200, "insufficient_capacity"),
            ("a-4", 10, 0, "unknown_foundry"),
            ("a-5", 10, 0, "family_not_made"),
            ("a-6", 10, 0, "week_past"),
        ]
        reserved = {(r["allocation_id"], r["state"], r["quantity"], r["source"]) for r in await reservations_of(capacity, "po_1")}
        assert reserved == {("a-1", "confirmed", 300, "plan"), ("a-3", "confirmed", 500, "plan")}

        # The same event again, and another copy of the same version: applied once, nothing more published.
        await publish(settings, planned, plan("po_1", 1, allocation("a-9", "IKM-002", "2027-W12", 5)))
        await applied(capacity, 3)
        assert capacity.runtime.consumer.stats.duplicates == 1
        assert len(await reservations_of(capacity, "po_1")) == 2
        await events_named(settings, "reservation_confirmed", 2)
        await events_named(settings, "reservation_rejected", 4)

        week = (
            await capacity.http.get(
                "/v1/availability", params={"product_family": COMPOSITE, "from": "2027-W10", "to": "2027-W11"}
            )
        ).json()
        cells = {
            (f["foundry_code"], w): (f["capacity"][i], f["reserved"][i], f["free"][i])
            for f in week["foundries"]
            for i, w in enumerate(week["weeks"])
        }
        assert cells == {
            ("IKM-001", "2027-W10"): (500, 300, 200),
            ("IKM-001", "2027-W11"): (500, 0, 500),
            ("IKM-002", "2027-W10"): (500, 0, 500),
            ("IKM-002", "2027-W11"): (500, 500, 0),
        }
        await ledger_matches_reservations(capacity)


async def test_a_new_plan_version_replaces_the_previous_one_and_an_older_one_is_ignored(make_settings):
    settings = make_settings()
    async with run_capacity(settings) as capacity:
        await register(capacity, foundry("IKM-001"), foundry("IKM-002"))
        await set_standard(capacity, "IKM-001", 500)
        await set_standard(capacity, "IKM-002", 500)
        await publish(
            settings,
            plan("po_7", 1, allocation("a-1", "IKM-001", "2027-W10", 300), allocation("a-2", "IKM-001", "2027-W11", 200)),
        )
        await events_named(settings, "reservation_confirmed", 2)
        before = {r["allocation_id"]: r["id"] for r in await reservations_of(capacity, "po_7")}

        # v2: a-1 unchanged, a-2 moves a week later, a-3 is new. v1 arriving late afterwards changes nothing.
        await publish(
            settings,
            plan(
                "po_7", 2,
                allocation("a-1", "IKM-001", "2027-W10", 300),
                allocation("a-2", "IKM-001", "2027-W12", 200),
                allocation("a-3", "IKM-002", "2027-W10", 450),
            ),
            plan("po_7", 1, allocation("a-1", "IKM-001", "2027-W10", 300)),
        )  # fmt: skip
        confirmed = await events_named(settings, "reservation_confirmed", 4)
        [released] = await events_named(settings, "reservation_released", 1)
        await applied(capacity, 3)
        assert sorted((e.allocation_id, e.week, e.plan_version) for e in confirmed[2:]) == [
            ("a-2", "2027-W12", 2),
            ("a-3", "2027-W10", 2),
        ]
        assert (released.reservation_id, released.week, released.quantity, released.reason) == (
            before["a-2"],
            "2027-W11",
            200,
            "plan_changed",
        )
        open_now = {
            (r["allocation_id"], r["week"]): r for r in await reservations_of(capacity, "po_7") if r["state"] == "confirmed"
        }
        assert set(open_now) == {("a-1", "2027-W10"), ("a-2", "2027-W12"), ("a-3", "2027-W10")}
        assert open_now[("a-1", "2027-W10")]["id"] == before["a-1"], "an unchanged allocation keeps its reservation"

        # v3 plans nothing: everything is given back.
        await publish(settings, plan("po_7", 3))
        released = await events_named(settings, "reservation_released", 4)
        assert sorted(e.allocation_id for e in released[1:]) == ["a-1", "a-2", "a-3"]
        assert {r["state"] for r in await reservations_of(capacity, "po_7")} == {"released"}
        assert await ledger_matches_reservations(capacity) == {}


async def test_a_capacity_drop_revokes_exactly_the_excess_latest_due_date_first(make_settings):
    settings = make_settings()
    async with run_capacity(settings) as capacity:
        await register(capacity, foundry("IKM-001", presses=2))
        await set_standard(capacity, "IKM-001", 1000)
        await publish(
            settings,
            plan(
                "po_1", 1,
                allocation("a-march", "IKM-001", "2027-W10", 400, due=date(2027, 3, 31)),
                allocation("a-late", "IKM-001", "2027-W10", 300, due=date(2027, 4, 30)),
                allocation("a-mid", "IKM-001", "2027-W10", 200, due=date(2027, 4, 15)),
                allocation("a-other-week", "IKM-001", "2027-W11", 900, due=date(2027, 4, 30)),
            ),
        )  # fmt: skip
        await events_named(settings, "reservation_confirmed", 4)

        # A press breaks for the whole of W10: 500 a week instead of 1000, while 900 are reserved.
        drop = {"kind": "exception", "product_family": COMPOSITE, "weekly_units": 500, "from_date": "2027-03-08", "to_date": "2027-03-14",
                "reason": "press_breakdown", "reported_by": "IKM-001"}  # fmt: skip
        recorded = await capacity.http.post("/v1/foundries/IKM-001/capacity-changes", json=drop)
        assert recorded.status_code == 201, recorded.text
        body = recorded.json()
        assert body["weeks"] == [{"week": "2027-W10", "capacity": 500}]
        assert [(r["week"], r["revoked_quantity"], r["remaining_quantity"]) for r in body["revoked"]] == [
            ("2027-W10", 300, 0),
            ("2027-W10", 100, 100),
        ]

        changed = (await events_named(settings, "capacity_changed", 2))[1]
        assert (changed.change_id, changed.reason, changed.standard_weekly_units) == (body["change_id"], "press_breakdown", 1000)
        assert [(w.week, w.capacity) for w in changed.weeks] == [("2027-W10", 500)]
        revoked = await events_named(settings, "reservation_revoked", 2)
        assert sorted(
            (e.allocation_id, e.week, e.revoked_quantity, e.remaining_quantity, e.reason, e.plan_version) for e in revoked
        ) == [
            ("a-late", "2027-W10", 300, 0, "press_breakdown", 1),
            ("a-mid", "2027-W10", 100, 100, "press_breakdown", 1),
        ]
        states = {r["allocation_id"]: (r["state"], r["quantity"]) for r in await reservations_of(capacity, "po_1")}
        assert states == {
            "a-march": ("confirmed", 400), "a-late": ("revoked", 0), "a-mid": ("confirmed", 100), "a-other-week": ("confirmed", 900),
        }  # fmt: skip
        assert await ledger_matches_reservations(capacity) == {
            ("IKM-001", COMPOSITE, "2027-W10"): 500,
            ("IKM-001", COMPOSITE, "2027-W11"): 900,
        }

        # A lower standard figure from W11 on reaches every later week with reservations.
        lower = await capacity.http.post(
            "/v1/foundries/IKM-001/capacity-changes",
            json={
                "kind": "standard",
                "product_family": COMPOSITE,
                "weekly_units": 600,
                "from_week": "2027-W11",
                "reason": "shift_change",
            },
        )
        assert lower.status_code == 201, lower.text
        assert [(r["week"], r["revoked_quantity"], r["remaining_quantity"]) for r in lower.json()["revoked"]] == [
            ("2027-W11", 300, 600)
        ]
        await events_named(settings, "reservation_revoked", 3)

        # Withdrawing the breakdown gives capacity back but never revives what was revoked.
        withdrawn = await capacity.http.post(
            "/v1/foundries/IKM-001/capacity-changes",
            json={"kind": "withdrawal", "withdraws": body["change_id"], "reason": "repaired"},
        )
        assert withdrawn.status_code == 201 and withdrawn.json()["weeks"] == [{"week": "2027-W10", "capacity": 1000}]
        assert withdrawn.json()["revoked"] == []
        assert (await ledger_matches_reservations(capacity))[("IKM-001", COMPOSITE, "2027-W10")] == 500


async def test_a_cancelled_order_gives_back_everything_and_its_later_plans_are_ignored(make_settings):
    settings = make_settings()
    async with run_capacity(settings) as capacity:
        await register(capacity, foundry("IKM-001"))
        await set_standard(capacity, "IKM-001", 500)
        await publish(
            settings,
            plan("po_9", 1, allocation("a-1", "IKM-001", "2027-W10", 300), allocation("a-2", "IKM-001", "2027-W11", 300)),
        )
        await events_named(settings, "reservation_confirmed", 2)
        cancelled = PurchaseOrderCancelled(order_id="po_9", buyer_code="KAI", reason="budget withdrawn", cancelled_at=NOW)
        await publish(settings, cancelled, plan("po_9", 2, allocation("a-1", "IKM-001", "2027-W10", 300)))
        released = await events_named(settings, "reservation_released", 2)
        await applied(capacity, 3)
        assert {(e.allocation_id, e.quantity, e.reason) for e in released} == {
            ("a-1", 300, "order_cancelled"),
            ("a-2", 300, "order_cancelled"),
        }
        await events_named(settings, "reservation_confirmed", 2)
        assert {r["state"] for r in await reservations_of(capacity, "po_9")} == {"released"}
        assert await ledger_matches_reservations(capacity) == {}


async def test_a_registered_lot_consumes_its_reservation_once(make_settings):
    settings = make_settings()
    async with run_capacity(settings) as capacity:
        await register(capacity, foundry("IKM-001"))
        await set_standard(capacity, "IKM-001", 500)
        await publish(settings, plan("po_3", 1, allocation("a-1", "IKM-001", "2027-W10", 300)))
        [confirmed] = await events_named(settings, "reservation_confirmed", 1)

        def lot(code: str, quantity: int) -> LotRegistered:
            return LotRegistered(
                lot_code=code, foundry_code="IKM-001", item_code="BB-COMP-K", quantity=quantity, order_id="po_3", allocation_id="a-1",
                spec_version=1, registered_at=datetime(2027, 3, 12, tzinfo=UTC),
            )  # fmt: skip

        first = Envelope.of(lot("IKM-001-K-0001", 200))
        # The lot again (a redelivery, and a second announcement of the same lot), then a bigger lot than what is left.
        await publish(settings, first, first, lot("IKM-001-K-0001", 200), lot("IKM-001-K-0002", 250))
        consumed = await events_named(settings, "reservation_consumed", 2)
        await applied(capacity, 5)
        # Lots are keyed by their code, so the two may be applied in either order: the first consumes all it made,
        # the second what is left of the 300 reserved.
        made = {"IKM-001-K-0001": 200, "IKM-001-K-0002": 250}
        earlier, later = consumed
        assert {e.lot_code for e in consumed} == set(made)
        assert {(e.reservation_id, e.week) for e in consumed} == {(confirmed.reservation_id, "2027-W10")}
        assert (earlier.quantity, earlier.remaining_quantity) == (made[earlier.lot_code], 300 - made[earlier.lot_code])
        assert (later.quantity, later.remaining_quantity) == (300 - made[earlier.lot_code], 0)
        [reservation] = await reservations_of(capacity, "po_3")
        assert (reservation["state"], reservation["consumed_quantity"], reservation["quantity"]) == ("consumed", 300, 300)
        assert await count_rows(capacity, store.lot_consumptions) == (2,)
        # Made units keep using the week: the capacity they took is not free again.
        assert await ledger_matches_reservations(capacity) == {("IKM-001", COMPOSITE, "2027-W10"): 300}


async def test_a_member_that_stops_being_active_or_drops_a_family_loses_its_open_reservations(make_settings):
    settings = make_settings()
    async with run_capacity(settings) as capacity:
        await register(capacity, foundry("IKM-001", COMPOSITE, CAST_IRON), foundry("IKM-002", COMPOSITE))
        for code in ("IKM-001", "IKM-002"):
            await set_standard(capacity, code, 500)
        await set_standard(capacity, "IKM-001", 800, family=CAST_IRON)
        await publish(
            settings,
            plan(
                "po_5", 1,
                allocation("a-1", "IKM-001", "2027-W10", 100),
                allocation("a-2", "IKM-001", "2027-W10", 200, family=CAST_IRON),
                allocation("a-3", "IKM-002", "2027-W10", 300),
            ),
        )  # fmt: skip
        await events_named(settings, "reservation_confirmed", 3)

        dropped = await capacity.http.patch("/v1/foundries/IKM-001", json={"product_families": [CAST_IRON]})
        assert dropped.status_code == 200, dropped.text
        [revoked] = await events_named(settings, "reservation_revoked", 1)
        assert (revoked.allocation_id, revoked.revoked_quantity, revoked.reason) == ("a-1", 100, "family_dropped")

        suspended = await capacity.http.patch("/v1/foundries/IKM-002", json={"membership_status": "suspended"})
        assert suspended.status_code == 200 and suspended.json()["membership_status"] == "suspended"
        revoked = await events_named(settings, "reservation_revoked", 2)
        assert (revoked[1].allocation_id, revoked[1].revoked_quantity, revoked[1].reason) == ("a-3", 300, "foundry_not_active")
        updated = await events_named(settings, "foundry_updated", 2)
        assert updated[1].membership_status == "suspended"

        # Suspended members are not offered, and take no new work.
        offered = (
            await capacity.http.get(
                "/v1/availability", params={"product_family": COMPOSITE, "from": "2027-W10", "to": "2027-W10"}
            )
        ).json()
        assert offered["foundries"] == []
        await publish(
            settings,
            plan(
                "po_5",
                2,
                allocation("a-2", "IKM-001", "2027-W10", 200, family=CAST_IRON),
                allocation("a-4", "IKM-002", "2027-W11", 10),
            ),
        )
        [refused] = await events_named(settings, "reservation_rejected", 1)
        assert (refused.allocation_id, refused.reason) == ("a-4", "foundry_not_active")
        assert await ledger_matches_reservations(capacity) == {("IKM-001", CAST_IRON, "2027-W10"): 200}

        await eventually(lambda: _state_is(capacity, "po_5", {"a-1": "revoked", "a-2": "confirmed", "a-3": "revoked"}))


async def _state_is(capacity, order_id: str, expected: dict[str, str]) -> bool:
    return {r["allocation_id"]: r["state"] for r in await reservations_of(capacity, order_id)} == expected
