"""Quality's item catalogue on the real broker with SQLite and PostgreSQL: a QA officer adds an item and versions it,
orders and capacity learn it from `item_published`, and orders plans and requires by the version it knows."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from services.capacity import store as capacity_store
from services.orders import projections
from services.orders import store as orders_store
from services.quality import handlers as quality_handlers
from services.quality import store as quality_store
from shared.db import create_engine, migrate, session_factory
from shared.events.orders import AllocationPlanned
from shared.weeks import iso_week
from tests.fixtures.tokens import as_
from tests.integration.quality_helpers import events_named, outbox_drained, quality_events
from tests.integration.test_http import assert_problem
from tests.support import RunningService, eventually, published, run_services

QA = as_("qa_officer")
RAILWAY = "RAILWAY_PARTS"
KNUCKLE = {
    "code": "KA-KNUCKLE",
    "name_id": "Knuckle coupler kereta besi cor baja",
    "name_en": "Coupler knuckle, cast steel",
    "product_family": RAILWAY,
    "unit": "pcs",
    "min_lot": 20,
    "required_certificates": ["ISO9001"],
    "sampling": {"inspection_level": "II", "aql": 1.0},
}
SEEDED = 8  # the items quality's migration writes and announces at start


async def register_member(svc: dict[str, RunningService], code: str, family: str, *, iso: bool, tkdn: float | None) -> None:
    body = {"code": code, "name": f"CV {code}", "village": "Batur", "product_families": [family]}
    assert (await svc["capacity"].http.post("/v1/foundries", json=body)).status_code == 201
    change = {"kind": "standard", "reason": "declared", "product_family": family, "weekly_units": 120}
    assert (await svc["capacity"].http.post(f"/v1/foundries/{code}/capacity-changes", json=change)).status_code == 201

    async def known() -> bool:
        return code in {f["code"] for f in (await svc["quality"].http.get("/v1/foundries")).json()}

    await eventually(known, timeout=60)
    today = date.today()
    validity = {"valid_from": (today - timedelta(days=10)).isoformat(), "valid_until": (today + timedelta(days=900)).isoformat()}
    certificates: list[dict[str, Any]] = []
    if iso:
        certificates.append({"kind": "ISO9001", "number": f"ISO-{code}", "issuer": "TÜV"})
    if tkdn is not None:
        certificates.append({"kind": "TKDN", "number": f"TKDN-{code}", "issuer": "Kemenperin", "tkdn_percent": tkdn})
    for certificate in certificates:
        response = await svc["quality"].http.post("/v1/certificates", json={"foundry_code": code, **certificate, **validity})
        assert response.status_code == 201, response.text


async def item_published(settings: Any, item_code: str, version: int) -> Any:
    """The `item_published` data of one version of an item, once it is on quality's topic."""

    async def arrived() -> Any:
        found = [
            e.data
            for e in await quality_events(settings)
            if e.type.event == "item_published" and e.subject == item_code and e.data.version == version
        ]
        return found[0] if found else None

    return await eventually(arrived, timeout=30, interval=0.3)


async def orders_knows(svc: dict[str, RunningService], item_code: str, version: int) -> None:
    async def projected() -> bool:
        async with svc["orders"].runtime.sessions() as session:  # type: ignore[union-attr]
            item = (await orders_store.catalogue(session)).get(item_code)
        return item is not None and item.version == version

    await eventually(projected, timeout=60)


async def members_ready(svc: dict[str, RunningService], expected: dict[str, set[str]]) -> None:
    """Waits until orders has each member's railway capacity and certificates (kinds) projected."""
    today = date.today()

    async def ready() -> bool:
        async with svc["orders"].runtime.sessions() as session:  # type: ignore[union-attr]
            standing = await projections.standing(session, today)
            free = await projections.free_capacity(session, RAILWAY, iso_week(today), iso_week(today + timedelta(days=90)))
        return all(
            code in standing and {c["kind"] for c in standing[code]["certificates"]} == kinds and any(free.get(code, {}).values())
            for code, kinds in expected.items()
        )

    await eventually(ready, timeout=60)


def knuckle_order(po_number: str, quantity: int) -> dict[str, Any]:
    today = date.today()
    return {
        "buyer_code": "KAI",
        "po_number": po_number,
        "issued_on": today.isoformat(),
        "lines": [
            {
                "line_no": 1,
                "item_code": "KA-KNUCKLE",
                "quantity": quantity,
                "unit_price": 1_850_000,
                "deliveries": [
                    {"due_date": (today + timedelta(days=75)).isoformat(), "quantity": quantity, "site_code": "BY-YK"}
                ],
            }
        ],
    }


async def planned(orders: RunningService, body: dict[str, Any]) -> dict[str, Any]:
    posted = await orders.http.post("/v1/purchase-orders", json=body, headers={"Idempotency-Key": body["po_number"]})
    assert posted.status_code == 201, posted.text
    order_id = posted.json()["id"]

    async def with_plan() -> dict[str, Any] | None:
        order = (await orders.http.get(f"/v1/purchase-orders/{order_id}")).json()
        return order if order["plan"] is not None and order["status"] != "received" else None

    return await eventually(with_plan, timeout=60)  # type: ignore[no-any-return]


async def test_a_new_item_is_learnt_by_orders_and_capacity_and_planned_on_the_members_of_its_family(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity", "quality", "orders") as svc:
        quality, orders = svc["quality"], svc["orders"]
        # The seeded catalogue was announced once, at start.
        assert len(await events_named(settings, "item_published", SEEDED)) == SEEDED
        for member, family, iso, tkdn in [
            ("IKM-301", RAILWAY, True, 40.0),
            ("IKM-302", RAILWAY, True, 20.0),
            ("IKM-303", RAILWAY, True, None),
            ("IKM-304", RAILWAY, False, 40.0),  # no ISO 9001, which the item requires
            ("IKM-305", "BRAKE_BLOCK_CAST_IRON", True, 40.0),  # certified, but does not cast railway parts
        ]:
            await register_member(svc, member, family, iso=iso, tkdn=tkdn)

        created = await quality.http.post("/v1/items", json=KNUCKLE, headers={"Idempotency-Key": "knuckle-1"}, auth=QA)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/v1/items/KA-KNUCKLE"
        item = created.json()
        assert (item["version"], item["product_family"], item["min_lot"], item["retired"]) == (1, RAILWAY, 20, False)
        again = await quality.http.post("/v1/items", json=KNUCKLE, headers={"Idempotency-Key": "knuckle-1"}, auth=QA)
        assert again.status_code == 201 and again.json() == item
        # Its first specification starts from the general inspection with the item's sampling rule.
        spec = (await quality.http.get("/v1/specifications/KA-KNUCKLE")).json()
        assert spec["version"] == 1 and spec["sampling"] == {"inspection_level": "II", "aql": 1.0}

        await orders_knows(svc, "KA-KNUCKLE", 1)

        async def capacity_knows() -> bool:
            async with svc["capacity"].runtime.sessions() as session:  # type: ignore[union-attr]
                table = capacity_store.item_projection
                row = (await session.execute(sa.select(table).where(table.c.item_code == "KA-KNUCKLE"))).first()
            return row is not None and row.product_family == RAILWAY

        await eventually(capacity_knows, timeout=60)
        announced = await item_published(settings, "KA-KNUCKLE", 1)
        assert announced.min_lot == 20 and announced.required_certificates == ["ISO9001"]

        await members_ready(
            svc, {"IKM-301": {"ISO9001", "TKDN"}, "IKM-302": {"ISO9001", "TKDN"}, "IKM-303": {"ISO9001"}, "IKM-304": {"TKDN"}}
        )
        first = await planned(orders, knuckle_order("KAI/PO/2027/00301", 300))
        members = {a["foundry_code"] for a in first["plan"]["allocations"]}
        assert members == {"IKM-301", "IKM-302", "IKM-303"}, first["plan"]
        [plan] = [e.data for e in await published(settings, "orders", first["id"]) if isinstance(e.data, AllocationPlanned)]
        assert {a.product_family for a in plan.allocations} == {RAILWAY} and {a.item_code for a in plan.allocations} == {
            "KA-KNUCKLE"
        }
        assert all(a["quantity"] >= 20 for a in first["plan"]["allocations"])
        assert first["lines"][0]["required"] == {"certificates": ["ISO9001"], "min_tkdn_percent": None}

        # A new version raises the TKDN minimum: new orders follow it.
        raised = {k: v for k, v in KNUCKLE.items() if k != "code"} | {"min_tkdn_percent": 30}
        versioned = await quality.http.post("/v1/items/KA-KNUCKLE/versions", json=raised, auth=QA)
        assert versioned.status_code == 201, versioned.text
        assert (versioned.json()["version"], versioned.json()["min_tkdn_percent"]) == (2, 30)
        await orders_knows(svc, "KA-KNUCKLE", 2)
        second = await planned(orders, knuckle_order("KAI/PO/2027/00302", 100))
        assert second["lines"][0]["required"] == {"certificates": ["ISO9001"], "min_tkdn_percent": 30}
        assert {a["foundry_code"] for a in second["plan"]["allocations"]} == {"IKM-301"}, second["plan"]

        detail = (await quality.http.get("/v1/items/KA-KNUCKLE")).json()
        assert detail["version"] == 2 and [v["min_tkdn_percent"] for v in detail["versions"]] == [None, 30]


async def state(quality: RunningService) -> dict[str, int]:
    tables = [quality_store.items, quality_store.specifications, quality_store.backbone.outbox, quality_store.audit_log]
    async with quality.runtime.sessions() as session:  # type: ignore[union-attr]
        return {t.name: (await session.execute(sa.select(sa.func.count()).select_from(t))).scalar_one() for t in tables}


async def test_bad_items_are_refused_with_a_problem_and_only_qa_officers_write(make_settings):
    settings = make_settings()
    async with run_services(settings, "quality") as svc:
        quality = svc["quality"]
        await outbox_drained(quality)
        before = await state(quality)
        assert before["items"] == SEEDED
        for body, field in [
            ({**KNUCKLE, "product_family": "railway parts"}, "body.product_family"),
            ({**KNUCKLE, "min_lot": 0}, "body.min_lot"),
            ({**KNUCKLE, "unit": "dozen"}, "body.unit"),
            ({**KNUCKLE, "code": "ka knuckle"}, "body.code"),
            ({**KNUCKLE, "min_tkdn_percent": 101}, "body.min_tkdn_percent"),
            ({**KNUCKLE, "required_certificates": ["HALAL"]}, "body.required_certificates.0"),
            ({**KNUCKLE, "required_certificates": ["SNI", "SNI"]}, "body.required_certificates.1"),
            ({**KNUCKLE, "sampling": {"aql": 3.0}}, "body.sampling.aql"),
            ({**KNUCKLE, "colour": "grey"}, "body.colour"),
        ]:
            assert_problem(await quality.http.post("/v1/items", json=body, auth=QA), 422, field)
        assert_problem(await quality.http.post("/v1/items", json={**KNUCKLE, "code": "BB-CI"}, auth=QA), 409)
        terms = {k: v for k, v in KNUCKLE.items() if k != "code"}
        assert_problem(await quality.http.post("/v1/items/NO-SUCH/versions", json=terms, auth=QA), 404)
        assert_problem(
            await quality.http.post("/v1/items/BB-CI/versions", json={**terms, "min_lot": -5}, auth=QA), 422, "body.min_lot"
        )
        for role, tenant in [("planner", None), ("lab", None), ("foundry", "IKM-001"), ("buyer", "KAI")]:
            caller = as_(role, tenant)
            assert_problem(await quality.http.post("/v1/items", json=KNUCKLE, auth=caller), 403)
            assert_problem(await quality.http.post("/v1/items/BB-CI/versions", json=terms, auth=caller), 403)
            assert_problem(await quality.http.delete("/v1/items/BB-CI", auth=caller), 403)
        assert_problem(await quality.http.get("/v1/items", auth=as_("buyer", "KAI")), 403)
        assert await state(quality) == before  # no item, specification, event or audit entry

        # Any staff reads; a retired item leaves the list, not the record, and takes no second retirement.
        assert len((await quality.http.get("/v1/items", auth=as_("planner"))).json()) == SEEDED
        retired = await quality.http.delete("/v1/items/BB-CI", auth=QA)
        assert retired.status_code == 200 and (retired.json()["version"], retired.json()["retired"]) == (2, True)
        assert_problem(await quality.http.delete("/v1/items/BB-CI", auth=QA), 409)
        listed = (await quality.http.get("/v1/items", auth=as_("lab"))).json()
        assert "BB-CI" not in {i["code"] for i in listed}
        assert "BB-CI" in {i["code"] for i in (await quality.http.get("/v1/items", params={"retired": "true"})).json()}
        [entry] = (await quality.http.get("/v1/audit", params={"entity_type": "item", "entity_id": "BB-CI"})).json()["items"]
        assert entry["action"] == "item.retired" and entry["actor_role"] == "qa_officer"
        assert (await item_published(settings, "BB-CI", 2)).retired


async def test_two_replicas_starting_together_announce_each_seeded_item_once(make_settings):
    settings = make_settings()
    migrations = Path(quality_handlers.__file__).parent / "migrations"
    engines = [create_engine(settings.database_url("quality")) for _ in range(2)]
    try:
        await migrate(engines[0], migrations)
        first, second = await asyncio.gather(*(quality_handlers.announce_items(session_factory(e)) for e in engines))
        assert not {i.code for i in first} & {i.code for i in second}
        assert len(first) + len(second) == SEEDED
        assert await quality_handlers.announce_items(session_factory(engines[1])) == []  # and never again
        async with session_factory(engines[0])() as session:
            outbox = quality_store.backbone.outbox
            rows = (await session.execute(sa.select(outbox.c.event_type, outbox.c.key))).all()
        assert sorted(key for kind, key in rows if kind == "ceper.quality.item_published.v1") == sorted(
            i.code for i in first + second
        )
    finally:
        for engine in engines:
            await engine.dispose()
