"""Capacity's HTTP API on SQLite and PostgreSQL: foundry details, capacity changes, availability and holds;
every refused request is a problem+json naming its fields and changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY as PROMETHEUS

from services.capacity import store
from shared.clock import FixedClock
from tests.integration.capacity_support import (
    CAST_IRON,
    COMPOSITE,
    NOW,
    count_rows,
    foundry,
    ledger_matches_reservations,
    register,
    run_capacity,
    set_standard,
    staged_types,
)
from tests.integration.test_http import assert_problem
from tests.support import staged

STATE_TABLES = (store.foundries, store.capacity_changes, store.reservations, store.idempotency_keys.table)


async def state(capacity) -> tuple[int, ...]:
    """The rows of each table a request may write, and the events staged so far."""
    return (*await count_rows(capacity, *STATE_TABLES), len(await staged(capacity)))


# --- the register ----------------------------------------------------------------------------------------------


async def test_foundry_details_are_validated_stored_and_filtered(make_settings):
    async with run_capacity(make_settings()) as capacity:
        http = capacity.http
        full = foundry(
            "IKM-010", COMPOSITE, CAST_IRON, owner="Agus Purwanto", npwp="01.234.567.8-525.000",
            furnaces=[{"kind": "cupola", "tonnes_per_day": 4.5}, {"kind": "induction", "tonnes_per_day": 1.5}], presses=2,
        )  # fmt: skip
        for body, field in [
            ({**full, "npwp": "12.345.678"}, "body.npwp"),
            ({**full, "npwp": "33100123456789"}, "body.npwp"),
            ({**full, "furnaces": [{"kind": "cupola", "tonnes_per_day": 0}]}, "body.furnaces.0.tonnes_per_day"),
            ({**full, "furnaces": [{"kind": "cupola", "tonnes_per_day": 250}]}, "body.furnaces.0.tonnes_per_day"),
            ({**full, "furnaces": [{"kind": "blast", "tonnes_per_day": 2}]}, "body.furnaces.0.kind"),
            ({**full, "presses": -1}, "body.presses"),
            ({**full, "presses": 99}, "body.presses"),
            ({**full, "membership_status": "honorary"}, "body.membership_status"),
        ]:
            assert_problem(await http.post("/v1/foundries", json=body), 422, field)
        assert await state(capacity) == (0, 0, 0, 0, 0)

        created = await http.post("/v1/foundries", json=full)
        assert created.status_code == 201, created.text
        stored = created.json()
        assert (stored["owner"], stored["npwp"], stored["presses"], stored["membership_status"]) == (
            "Agus Purwanto", "01.234.567.8-525.000", 2, "active",
        )  # fmt: skip
        assert stored["furnaces"] == [{"kind": "cupola", "tonnes_per_day": 4.5}, {"kind": "induction", "tonnes_per_day": 1.5}]
        await register(
            capacity,
            foundry("IKM-011", CAST_IRON, village="Tegalrejo"),
            foundry("IKM-012", CAST_IRON, membership_status="resigned"),
        )

        assert_problem(await http.patch("/v1/foundries/IKM-010", json={"npwp": "123"}), 422, "body.npwp")
        patched = await http.patch("/v1/foundries/IKM-010", json={"npwp": "3310012345678901", "presses": 3})
        assert patched.status_code == 200 and (patched.json()["npwp"], patched.json()["presses"], patched.json()["revision"]) == (
            "3310012345678901", 3, 1,
        )  # fmt: skip

        async def codes(**filters) -> tuple[list[str], int]:
            page = (await http.get("/v1/foundries", params=filters)).json()
            return [f["code"] for f in page["items"]], page["total"]

        assert await codes(product_family=CAST_IRON) == (["IKM-010", "IKM-011", "IKM-012"], 3)
        assert await codes(product_family=CAST_IRON, membership_status="active", limit=1, offset=1) == (["IKM-011"], 2)
        assert await codes(village="Tegalrejo") == (["IKM-011"], 1)
        assert_problem(await http.get("/v1/foundries", params={"membership_status": "gone"}), 422, "query.membership_status")
        assert await staged_types(capacity) == ["ceper.capacity.foundry_registered.v1"] * 3 + [
            "ceper.capacity.foundry_updated.v1"
        ]


# --- capacity changes -------------------------------------------------------------------------------------------------


async def test_capacity_change_errors_are_problems_and_change_nothing(make_settings):
    async with run_capacity(make_settings()) as capacity:
        http = capacity.http
        await register(capacity, foundry("IKM-001", COMPOSITE, CAST_IRON, presses=1))
        await set_standard(capacity, "IKM-001", 500)
        closure = {"kind": "exception", "product_family": COMPOSITE, "weekly_units": 0, "from_date": "2027-03-08",
                   "to_date": "2027-03-14", "reason": "lebaran_closure"}  # fmt: skip
        recorded = await http.post("/v1/foundries/IKM-001/capacity-changes", json=closure)
        assert recorded.status_code == 201, recorded.text
        before = await state(capacity)

        standard = {
            "kind": "standard",
            "product_family": COMPOSITE,
            "weekly_units": 500,
            "from_week": "2027-W01",
            "reason": "declared",
        }
        assert_problem(await http.post("/v1/foundries/IKM-404/capacity-changes", json=standard), 404)
        for body, status, field in [
            ({**standard, "weekly_units": -10}, 422, "body.weekly_units"),
            ({**standard, "weekly_units": 500_000}, 422, "body.weekly_units"),
            ({**standard, "weekly_units": 1500}, 422, "body.weekly_units"),  # one press makes at most 1008 a week
            ({**standard, "weekly_units": 12.5}, 422, "body.weekly_units"),
            ({**standard, "product_family": "SHIP_PARTS"}, 422, "body.product_family"),
            ({**standard, "product_family": "RUBBER_SEALS"}, 422, "body.product_family"),
            ({**standard, "from_week": "2027-W53"}, 422, "body.from_week"),
            ({**standard, "reason": "felt_like_it"}, 422, "body.reason"),
            ({k: v for k, v in standard.items() if k != "product_family"}, 422, "body.product_family"),
            ({**closure, "to_date": "2027-03-01"}, 422, "body.to_date"),
            (
                {**closure, "weekly_units": 250, "from_date": "2027-03-12", "to_date": "2027-03-20", "reason": "press_breakdown"},
                409,
                "body.from_date",
            ),
            ({"kind": "withdrawal", "withdraws": "chg_nope", "reason": "repaired"}, 422, "body.withdraws"),
            (
                {
                    "kind": "withdrawal",
                    "withdraws": recorded.json()["change_id"],
                    "product_family": CAST_IRON,
                    "reason": "repaired",
                },
                422,
                "body.product_family",
            ),
        ]:
            problem = assert_problem(await http.post("/v1/foundries/IKM-001/capacity-changes", json=body), status)
            assert field in [e["field"] for e in problem["errors"]], (body, problem)
            if status == 409:
                assert recorded.json()["change_id"] in problem["detail"]
        assert await state(capacity) == before, "a refused change stored something or published an event"

        # The same change again is applied once: 200 with the recorded change, no event.
        again = await http.post("/v1/foundries/IKM-001/capacity-changes", json=closure)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["change_id"] == recorded.json()["change_id"]
        assert await state(capacity) == before

        # An Idempotency-Key answers a retry the same way, and refuses another body under the same key.
        key = {"Idempotency-Key": "ikm-001-power-1"}
        cut = {**closure, "weekly_units": 0, "from_date": "2027-05-04", "to_date": "2027-05-04", "reason": "power_cut"}
        first = await http.post("/v1/foundries/IKM-001/capacity-changes", json=cut, headers=key)
        retry = await http.post("/v1/foundries/IKM-001/capacity-changes", json=cut, headers=key)
        assert first.status_code == 201 and retry.status_code == 200 and retry.json()["change_id"] == first.json()["change_id"]
        assert first.json()["weeks"] == [{"week": "2027-W18", "capacity": 416}]
        other = await http.post("/v1/foundries/IKM-001/capacity-changes", json={**cut, "to_date": "2027-05-05"}, headers=key)
        assert "Idempotency-Key" in assert_problem(other, 409)["detail"]

        history = (await http.get("/v1/foundries/IKM-001/capacity-changes")).json()
        assert [(c["kind"], c["reason"]) for c in history["items"]] == [
            ("standard", "declared"),
            ("exception", "lebaran_closure"),
            ("exception", "power_cut"),
        ]
        assert_problem(await http.get("/v1/foundries/IKM-404/capacity-changes"), 404)
        types = await staged_types(capacity)
        assert types.count("ceper.capacity.capacity_changed.v1") == 3


# --- availability -------------------------------------------------------------------------------------------------------


async def test_availability_lists_active_members_week_by_week(make_settings):
    async with run_capacity(make_settings()) as capacity:
        http = capacity.http
        await register(
            capacity, foundry("IKM-001"), foundry("IKM-002", village="Ngawonggo"), foundry("IKM-003", CAST_IRON),
            foundry("IKM-004", membership_status="suspended"),
        )  # fmt: skip
        await set_standard(capacity, "IKM-001", 500)
        await set_standard(capacity, "IKM-002", 300, from_week="2027-W11")
        await set_standard(capacity, "IKM-004", 900)
        held = await http.post(
            "/v1/reservations", json={"foundry_code": "IKM-001", "product_family": COMPOSITE, "week": "2027-W10", "quantity": 120}
        )
        assert held.status_code == 201, held.text

        found = await http.get("/v1/availability", params={"product_family": COMPOSITE, "from": "2027-03-08", "to": "2027-W11"})
        assert found.status_code == 200, found.text
        body = found.json()
        assert (body["product_family"], body["from_week"], body["to_week"]) == (COMPOSITE, "2027-W10", "2027-W11")
        assert [(f["foundry_code"], f["name"], f["village"]) for f in body["foundries"]] == [
            ("IKM-001", "CV Cor 001", "Batur"), ("IKM-002", "CV Cor 002", "Ngawonggo"),
        ]  # fmt: skip
        assert body["weeks"] == ["2027-W10", "2027-W11"]
        assert {k: body["foundries"][0][k] for k in ("capacity", "reserved", "free")} == {
            "capacity": [500, 500], "reserved": [120, 0], "free": [380, 500],
        }  # fmt: skip
        assert {k: body["foundries"][1][k] for k in ("capacity", "reserved", "free")} == {
            "capacity": [0, 300], "reserved": [0, 0], "free": [0, 300],
        }  # fmt: skip
        assert body["totals"] == {"capacity": [500, 800], "reserved": [120, 0], "free": [380, 800]}
        only = (await http.get("/v1/availability", params={"product_family": COMPOSITE, "village": "Ngawonggo"})).json()
        assert [f["foundry_code"] for f in only["foundries"]] == ["IKM-002"]
        assert (only["from_week"], only["to_week"]) == ("2026-W48", "2027-W06"), (
            "defaults: this week and the next eleven (2026 has 53)"
        )

        # What is read between requests follows every change, also one made through another replica.
        async with run_capacity(capacity.runtime.settings) as replica:
            await replica.http.post(
                "/v1/foundries/IKM-002/capacity-changes",
                json={"kind": "exception", "product_family": COMPOSITE, "weekly_units": 0, "from_date": "2027-03-15",
                      "to_date": "2027-03-21", "reason": "furnace_breakdown"},
            )  # fmt: skip
            assert (await replica.http.patch("/v1/foundries/IKM-004", json={"membership_status": "active"})).status_code == 200
            assert (await replica.http.patch("/v1/foundries/IKM-001", json={"name": "CV Cor Satu"})).status_code == 200
        again = (
            await http.get("/v1/availability", params={"product_family": COMPOSITE, "from": "2027-W10", "to": "2027-W11"})
        ).json()
        assert [(f["foundry_code"], f["name"], f["capacity"]) for f in again["foundries"]] == [
            ("IKM-001", "CV Cor Satu", [500, 500]), ("IKM-002", "CV Cor 002", [0, 0]), ("IKM-004", "CV Cor 004", [900, 900]),
        ]  # fmt: skip

        for params, field in [
            ({"from": "2027-W10"}, "query.product_family"),
            ({"product_family": "RUBBER_SEALS"}, "query.product_family"),
            ({"product_family": COMPOSITE, "from": "2027-W12", "to": "2027-W10"}, "query.to"),
            ({"product_family": COMPOSITE, "from": "2027-W01", "to": "2029-W01"}, "query.to"),
            ({"product_family": COMPOSITE, "from": "next week"}, "query.from"),
            ({"product_family": COMPOSITE, "from": "2027-W53"}, "query.from"),
            ({"product_family": COMPOSITE, "foundry_code": "ikm-1"}, "query.foundry_code"),
        ]:
            assert_problem(await http.get("/v1/availability", params=params), 422, field)


# --- holds over the API ---------------------------------------------------------------------------------------------------


async def test_a_hold_is_confirmed_or_released_and_refusals_change_nothing(make_settings):
    async with run_capacity(make_settings()) as capacity:
        http = capacity.http
        await register(capacity, foundry("IKM-001"))
        await set_standard(capacity, "IKM-001", 500)
        ask = {
            "foundry_code": "IKM-001",
            "product_family": COMPOSITE,
            "week": "2027-W10",
            "quantity": 300,
            "due_date": "2027-04-30",
        }
        key = {"Idempotency-Key": "inka-hold-1"}
        held = await http.post("/v1/reservations", json=ask, headers=key)
        assert held.status_code == 201, held.text
        hold = held.json()
        assert (hold["state"], hold["source"], hold["quantity"]) == ("hold", "request", 300)
        assert hold["hold_expires_at"] == (NOW + timedelta(minutes=60)).isoformat().replace("+00:00", "Z")
        assert held.headers["location"] == f"/v1/reservations/{hold['id']}"
        retried = await http.post("/v1/reservations", json=ask, headers=key)
        assert (
            retried.status_code == 201 and retried.headers["idempotent-replayed"] == "true" and retried.json()["id"] == hold["id"]
        )
        before = await state(capacity)

        too_much = assert_problem(await http.post("/v1/reservations", json={**ask, "quantity": 201}), 409)
        assert "200 of 500" in too_much["detail"] and too_much["errors"][0]["field"] == "body.quantity"
        assert too_much["errors"][0]["type"] == "insufficient_capacity"
        for body, field in [
            ({**ask, "foundry_code": "IKM-404"}, "body.foundry_code"),
            ({**ask, "product_family": CAST_IRON}, "body.product_family"),
            ({**ask, "week": "2026-W40"}, "body.week"),
            ({**ask, "week": "2027-W53"}, "body.week"),
            ({**ask, "quantity": 0}, "body.quantity"),
            ({**ask, "quantity": 10.5}, "body.quantity"),
        ]:
            assert_problem(await http.post("/v1/reservations", json=body), 422, field)
        assert_problem(await http.post("/v1/reservations", json={**ask, "quantity": 7}, headers=key), 409)
        assert_problem(await http.post("/v1/reservations/res_nope/confirm"), 404)
        assert await state(capacity) == before
        assert (await http.get(f"/v1/reservations/{hold['id']}")).json() == hold

        confirmed = await http.post(f"/v1/reservations/{hold['id']}/confirm")
        assert (
            confirmed.status_code == 200
            and confirmed.json()["state"] == "confirmed"
            and confirmed.json()["hold_expires_at"] is None
        )
        assert (await http.post(f"/v1/reservations/{hold['id']}/confirm")).json()["state"] == "confirmed"
        released = await http.post(f"/v1/reservations/{hold['id']}/release", json={"reason": "INKA moved the order"})
        assert released.status_code == 200 and (released.json()["state"], released.json()["reason"]) == (
            "released",
            "INKA moved the order",
        )
        assert (await http.post(f"/v1/reservations/{hold['id']}/release")).status_code == 200
        assert_problem(await http.post(f"/v1/reservations/{hold['id']}/confirm"), 409)
        types = await staged_types(capacity)
        assert (
            types.count("ceper.capacity.reservation_confirmed.v1") == 1
            and types.count("ceper.capacity.reservation_released.v1") == 1
        )
        assert await ledger_matches_reservations(capacity) == {}


async def test_an_unconfirmed_hold_expires_on_the_service_clock(make_settings):
    clock = FixedClock(NOW)
    async with run_capacity(make_settings(capacity_hold_minutes=30), clock) as capacity:
        http = capacity.http
        await register(capacity, foundry("IKM-001"))
        await set_standard(capacity, "IKM-001", 500)
        ask = {"foundry_code": "IKM-001", "product_family": COMPOSITE, "week": "2027-W10", "quantity": 400}
        first = (await http.post("/v1/reservations", json=ask)).json()
        clock.advance(timedelta(minutes=20))
        second = (await http.post("/v1/reservations", json={**ask, "quantity": 100})).json()
        assert_problem(await http.post("/v1/reservations", json={**ask, "quantity": 1}), 409)

        clock.advance(timedelta(minutes=10))  # the first hold's 30 minutes are up, the second's are not
        assert_problem(await http.post(f"/v1/reservations/{first['id']}/confirm"), 409)
        run = await http.post("/internal/jobs/hold-expiry")
        assert run.status_code == 200 and run.json() == {"expired": [first["id"]]}
        assert (await http.post("/internal/jobs/hold-expiry")).json() == {"expired": []}
        assert (await http.get(f"/v1/reservations/{first['id']}")).json()["state"] == "expired"
        assert (await http.post(f"/v1/reservations/{second['id']}/confirm")).json()["state"] == "confirmed"
        assert await ledger_matches_reservations(capacity) == {("IKM-001", COMPOSITE, "2027-W10"): 100}
        assert (await staged_types(capacity)).count("ceper.capacity.reservation_expired.v1") == 1

        await http.post("/internal/jobs/hold-expiry")  # refreshes the gauges
        metrics = (await http.get("/metrics")).text
        assert f'ceper_capacity_utilisation_ratio{{product_family="{COMPOSITE}",week="2026-W48"}} 0.0' in metrics
        assert 'ceper_capacity_reservations{state="expired"} 1.0' in metrics
        assert 'ceper_capacity_reservations{state="confirmed"} 1.0' in metrics
        assert (PROMETHEUS.get_sample_value("ceper_capacity_changes_total", {"reason": "declared"}) or 0) >= 1


@pytest.mark.parametrize("path", ["/v1/reservations/res_nope", "/v1/reservations/res_nope/release"])
async def test_unknown_reservations_are_not_found(make_settings, path: str):
    async with run_capacity(make_settings()) as capacity:
        method = capacity.http.get if path.endswith("nope") else capacity.http.post
        assert_problem(await method(path), 404)
