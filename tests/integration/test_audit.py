"""The audit trail of orders, capacity and quality, on both databases: every change leaves one row saying who,
when, what (before and after) and through which request or event, in the change's own transaction; admins
read it at `GET /v1/audit`, nobody else."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import sqlalchemy as sa

from services.capacity import store as capacity_store
from services.orders import store as orders_store
from services.quality import store as quality_store
from shared.events.capacity import FoundryRegistered, FoundryUpdated
from tests.fixtures.tokens import ANONYMOUS, as_
from tests.integration.capacity_support import allocation, plan, publish, set_standard
from tests.support import RECEIVER_ON_LOOPBACK, RunningService, eventually, published, run_services

STORES = {"orders": orders_store, "capacity": capacity_store, "quality": quality_store}
FOUNDRY = {"code": "IKM-041", "name": "CV Logam Jaya", "village": "Batur", "product_families": ["BRAKE_BLOCK_COMPOSITE"]}


@pytest.fixture
def settings(make_settings):
    """Services that trust the suite's issuer (every client here calls as its admin unless told otherwise)."""
    return make_settings(**RECEIVER_ON_LOOPBACK)


async def trail(running: RunningService, service: str, **where: str) -> list[dict[str, Any]]:
    """The rows as stored, oldest first."""
    table = STORES[service].audit_log
    query = sa.select(table).order_by(table.c.id)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    async with running.runtime.sessions() as session:
        return [dict(row._mapping) for row in await session.execute(query)]


async def test_http_and_event_changes_leave_one_row_each_with_before_and_after(settings):
    admin = as_("admin", subject="admin-ayu")
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        capacity, quality, orders = svc["capacity"], svc["quality"], svc["orders"]

        # capacity, by HTTP: a register entry added, then changed.
        assert (await capacity.http.post("/v1/foundries", json=FOUNDRY, auth=admin)).status_code == 201
        renamed = await capacity.http.patch("/v1/foundries/IKM-041", json={"name": "CV Logam Jaya Abadi"}, auth=admin)
        assert renamed.status_code == 200, renamed.text
        [added, changed] = await trail(capacity, "capacity", entity_type="foundry")
        assert added["action"] == "foundry.added" and added["before"] is None and added["after"]["name"] == "CV Logam Jaya"
        assert changed["action"] == "foundry.changed" and changed["entity_id"] == "IKM-041"
        assert (changed["before"]["name"], changed["after"]["name"]) == ("CV Logam Jaya", "CV Logam Jaya Abadi")
        assert changed["request_id"] == renamed.headers["x-request-id"]
        assert (changed["actor_subject"], changed["actor_role"]) == ("admin-ayu", "admin")  # the token's subject and role

        # quality and orders, by event: their projections of the register, as capacity's events tell them.
        events = await eventually(lambda: _events_of(settings, "IKM-041", 2), timeout=60)
        for service, running in (("quality", quality), ("orders", orders)):

            async def projected(service=service, running=running):
                rows = await trail(running, service, entity_type="foundry_projection")
                return rows if len(rows) == 2 else None

            registered, updated = await eventually(projected, timeout=60)
            for row, event in zip((registered, updated), events, strict=True):
                assert (row["actor_subject"], row["actor_role"], row["request_id"]) == (event.type.source, "event", event.id)
            assert registered["before"] is None and registered["after"]["name"] == "CV Logam Jaya"
            assert (updated["before"]["name"], updated["after"]["name"]) == ("CV Logam Jaya", "CV Logam Jaya Abadi")

        # quality, by HTTP: a certificate granted, then revoked.
        granted = await quality.http.post("/v1/certificates", json=_iso9001("IKM-041"), auth=admin)
        assert granted.status_code == 201, granted.text
        certificate_id = granted.json()["id"]
        revoked = await quality.http.post(
            f"/v1/certificates/{certificate_id}/revoke", json={"reason": "Surveillance audit missed"}, auth=admin
        )
        assert revoked.status_code == 200, revoked.text
        rows = await trail(quality, "quality", entity_type="certificate", entity_id=certificate_id)
        assert [r["action"] for r in rows] == ["certificate.added", "certificate.changed"]
        assert rows[1]["before"]["revoked_at"] is None and rows[1]["after"]["revoke_reason"] == "Surveillance audit missed"
        assert rows[1]["request_id"] == revoked.headers["x-request-id"]

        # capacity, by event: orders' plan reserves capacity.
        await set_standard(capacity, "IKM-041", 500)
        [planned] = await publish(settings, plan("po_audit_1", 1, allocation("al-audit-1", "IKM-041", "2027-W10", 300)))

        async def reserved():
            rows = await trail(capacity, "capacity", entity_type="reservation")
            return rows or None

        [reservation] = await eventually(reserved, timeout=60)

        # orders, by event: its projection of the foundry's standard capacity, as capacity's event told it.
        async def capacity_projected():
            rows = await trail(orders, "orders", entity_type="standard_capacity_projection")
            return rows or None

        [standard] = await eventually(capacity_projected, timeout=60)
        assert standard["actor_role"] == "event" and standard["before"] is None
        assert standard["entity_id"].startswith("IKM-041/") and standard["after"]["foundry_code"] == "IKM-041"
        assert reservation["action"] == "reservation.added" and reservation["before"] is None
        assert reservation["after"]["quantity"] == 300 and reservation["after"]["order_id"] == "po_audit_1"
        assert (reservation["actor_subject"], reservation["actor_role"], reservation["request_id"]) == (
            planned.type.source,
            "event",
            planned.id,
        )

        # orders, by HTTP: the buyer's webhook endpoint, whose secret never enters the trail.
        put = await orders.http.put("/v1/buyers/KAI/webhook", json={"url": "http://127.0.0.1:9/hooks"}, auth=admin)
        assert put.status_code == 200, put.text
        [endpoint] = await trail(orders, "orders", entity_type="webhook_endpoint")
        assert endpoint["before"] is None and endpoint["after"]["url"] == "http://127.0.0.1:9/hooks"
        assert "secret" not in endpoint["after"] and put.json()["secret"] not in str(endpoint)


async def test_a_change_that_rolls_back_leaves_no_audit_row(settings):
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        assert (await svc["capacity"].http.post("/v1/foundries", json=FOUNDRY)).status_code == 201
        before = {name: await trail(running, name) for name, running in svc.items()}

        capacity = svc["capacity"]
        async with capacity.runtime.sessions() as session:
            foundry = await capacity_store.get_foundry(session, "IKM-041")
        with pytest.raises(RuntimeError):
            async with capacity.runtime.sessions.begin() as session:
                await capacity_store.save_foundry(session, dataclasses.replace(foundry, name="never saved"))
                assert len(await _rows_in(session, capacity_store.audit_log)) == len(before["capacity"]) + 1
                raise RuntimeError("the change fails after its audit row was written")

        quality = svc["quality"]

        async def quality_knows_the_member():  # from capacity's event: a certificate needs a member quality knows
            return any(f["code"] == "IKM-041" for f in (await quality.http.get("/v1/foundries")).json())

        await eventually(quality_knows_the_member, timeout=60)
        granted = await quality.http.post("/v1/certificates", json=_iso9001("IKM-041"))
        assert granted.status_code == 201, granted.text
        certificate_id = granted.json()["id"]
        before["quality"] = await trail(quality, "quality")
        with pytest.raises(RuntimeError):
            async with quality.runtime.sessions.begin() as session:
                certificate = await quality_store.get_certificate(session, certificate_id)
                await quality_store.save_revocation(session, dataclasses.replace(certificate, revoke_reason="x"))
                raise RuntimeError("rolled back")

        orders = svc["orders"]
        refused = await orders.http.put("/v1/buyers/KAI/webhook", json={"url": "http://10.0.0.9/hooks"})
        assert refused.status_code == 422

        assert await trail(capacity, "capacity") == before["capacity"]
        assert await trail(quality, "quality") == before["quality"]
        assert [r for r in await trail(orders, "orders") if r["entity_type"] == "webhook_endpoint"] == []
        async with capacity.runtime.sessions() as session:
            assert (await capacity_store.get_foundry(session, "IKM-041")).name == FOUNDRY["name"]


@pytest.mark.parametrize("service", ["orders", "capacity", "quality"])
async def test_only_admins_read_the_trail_paged_and_filtered(settings, service):
    async with run_services(settings, service) as svc:
        running = svc[service]
        http = running.http
        assert (await http.get("/v1/audit", auth=ANONYMOUS)).status_code == 401
        for caller in (as_("planner"), as_("qa_officer"), as_("buyer", "KAI"), as_("foundry", "IKM-041"), as_("lab")):
            refused = await http.get("/v1/audit", auth=caller)
            assert refused.status_code == 403, (caller.claims, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"

        from shared import audit

        async with running.runtime.sessions.begin() as session:
            for n in range(5):
                await audit.record_change(
                    session, STORES[service].audit_log, entity_type="probe", entity_id=f"p-{n % 2}", before=None, after={"n": n}
                )
        admin = as_("admin")
        page = (await http.get("/v1/audit", params={"entity": "probe", "limit": 2}, auth=admin)).json()
        assert page["total"] == 5 and page["limit"] == 2 and [e["after"]["n"] for e in page["items"]] == [4, 3]
        rest = (await http.get("/v1/audit", params={"entity": "probe", "limit": 2, "offset": 4}, auth=admin)).json()
        assert [e["after"]["n"] for e in rest["items"]] == [0]
        one = (await http.get("/v1/audit", params={"entity": "probe", "entity_id": "p-1"}, auth=admin)).json()
        assert one["total"] == 2 and {e["entity_id"] for e in one["items"]} == {"p-1"}
        bad = await http.get("/v1/audit", params={"limit": 0}, auth=admin)
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


async def _events_of(settings, code: str, count: int):
    events = [e for e in await published(settings, "capacity", code) if isinstance(e.data, FoundryRegistered | FoundryUpdated)]
    return events if len(events) >= count else None


async def _rows_in(session, table) -> list[Any]:
    return list((await session.execute(sa.select(table.c.id))).all())


def _iso9001(foundry_code: str) -> dict[str, str]:
    return {
        "foundry_code": foundry_code,
        "kind": "ISO9001",
        "number": "QMS-041-2026",
        "issuer": "PT Sucofindo (LSSM)",
        "valid_from": "2026-01-05",
        "valid_until": "2028-01-04",
    }
