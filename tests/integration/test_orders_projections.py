"""Orders keeps its own picture of capacity and quality from their events: what the planner plans from."""

from __future__ import annotations

from datetime import date, timedelta

from services.orders import projections
from shared.weeks import iso_week
from tests.support import eventually, run_services

FOUNDRY = {
    "code": "IKM-021",
    "name": "CV Komposit Batur",
    "village": "Batur",
    "product_families": ["BRAKE_BLOCK_COMPOSITE"],
    "presses": 4,
    "furnaces": [{"kind": "induction", "tonnes_per_day": 1.0}],
}


async def test_orders_projects_capacity_reservations_certificates_and_status(make_settings):
    settings = make_settings()
    today = date.today()
    week = iso_week(today + timedelta(days=21))
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        assert (await svc["capacity"].http.post("/v1/foundries", json=FOUNDRY)).status_code == 201
        change = await svc["capacity"].http.post(
            "/v1/foundries/IKM-021/capacity-changes",
            json={"kind": "standard", "reason": "declared", "product_family": "BRAKE_BLOCK_COMPOSITE", "weekly_units": 600},
        )
        assert change.status_code == 201, change.text

        async def known_in_quality():
            return [f for f in (await svc["quality"].http.get("/v1/foundries")).json() if f["code"] == "IKM-021"]

        [member] = await eventually(known_in_quality)
        # Quality shows its foundries in the same view as orders does.
        assert {k: member[k] for k in ("name", "village", "product_families", "revision", "membership_status")} == {
            "name": "CV Komposit Batur", "village": "Batur", "product_families": ["BRAKE_BLOCK_COMPOSITE"], "revision": 0,
            "membership_status": "active",
        }  # fmt: skip
        certificate = await svc["quality"].http.post(
            "/v1/certificates",
            json={
                "foundry_code": "IKM-021",
                "kind": "SNI",
                "number": "SPPT-SNI/0021/2026",
                "issuer": "LSPro B4T",
                "valid_from": (today - timedelta(days=30)).isoformat(),
                "valid_until": (today + timedelta(days=700)).isoformat(),
                "items": ["BB-COMP-K"],
            },
        )
        assert certificate.status_code == 201, certificate.text
        hold = await svc["capacity"].http.post(
            "/v1/reservations",
            json={"foundry_code": "IKM-021", "product_family": "BRAKE_BLOCK_COMPOSITE", "week": week, "quantity": 250},
        )
        assert hold.status_code == 201, hold.text
        confirmed = await svc["capacity"].http.post(f"/v1/reservations/{hold.json()['id']}/confirm")
        assert confirmed.status_code == 200, confirmed.text

        sessions = svc["orders"].runtime.sessions

        async def free_after_the_reservation():
            async with sessions() as session:
                free = await projections.free_capacity(session, "BRAKE_BLOCK_COMPOSITE", week, week)
            return free.get("IKM-021", {}).get(week) == 350

        await eventually(free_after_the_reservation)

        # The standard change lists a year of weeks; the weeks after it follow the standard figure.
        far = iso_week(today + timedelta(days=500))
        async with sessions() as session:
            beyond = await projections.free_capacity(session, "BRAKE_BLOCK_COMPOSITE", far, far)
        assert beyond == {"IKM-021": {far: 600}}

        async def certified():
            async with sessions() as session:
                standing = await projections.standing(session, today)
            entry = standing.get("IKM-021")
            return entry and [c["kind"] for c in entry["certificates"]] == ["SNI"] and entry["membership_status"] == "active"

        await eventually(certified)

        revoked = await svc["quality"].http.post(
            f"/v1/certificates/{certificate.json()['id']}/revoke", json={"reason": "surveillance audit missed"}
        )
        assert revoked.status_code == 200, revoked.text

        async def no_longer_certified():
            async with sessions() as session:
                return (await projections.standing(session, today))["IKM-021"]["certificates"] == []

        await eventually(no_longer_certified)
