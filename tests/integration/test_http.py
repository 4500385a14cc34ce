"""The HTTP contract of the services on SQLite and PostgreSQL: problem+json errors that change nothing,
idempotent purchase-order intake, and the operations endpoints."""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY as PROMETHEUS

from shared.settings import Settings
from tests.support import RunningService, run_services, staged

FOUNDRY = {"code": "IKM-001", "name": "CV Logam Batur", "village": "Batur", "product_families": ["BRAKE_BLOCK_COMPOSITE"]}


def purchase_order(po_number: str = "KAI/PO/2027/00042", **changes: Any) -> dict[str, Any]:
    due = (date.today() + timedelta(days=90)).isoformat()
    order: dict[str, Any] = {
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
    order.update(changes)
    return order


def with_line(**changes: Any) -> dict[str, Any]:
    order = purchase_order()
    order["lines"][0].update(changes)
    return order


def assert_problem(response: httpx.Response, status: int, *fields: str) -> dict[str, Any]:
    """An RFC 9457 problem with the given status; for 422, `errors` names each of `fields`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if status == 422:
        named = [error["field"] for error in body["errors"]]
        for field in fields:
            assert field in named, f"{field} not among {named}"
    return body


async def count(running: RunningService, table: sa.Table) -> int:
    assert running.runtime.sessions is not None
    async with running.runtime.sessions() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()


async def capacity_state(running: RunningService) -> tuple[int, int]:
    from services.capacity import store

    return await count(running, store.foundries), len(await staged(running))


async def orders_state(running: RunningService) -> tuple[int, int, int]:
    from services.orders import store

    # Only intake's own events: the planner publishes plans for accepted orders as it goes.
    received = [e for e in await staged(running) if e.type.name == "ceper.orders.purchase_order_received.v1"]
    return (await count(running, store.purchase_orders), await count(running, store.idempotency_keys.table), len(received))


# --- capacity: foundries ------------------------------------------------------------------------------------


async def test_foundry_errors_are_problems_and_change_nothing(make_settings):
    invalid = [
        ({**FOUNDRY, "code": "IKM-1"}, "body.code"),
        ({**FOUNDRY, "code": "ikm-001"}, "body.code"),
        ({**FOUNDRY, "code": "IKM-001\n"}, "body.code"),
        ({**FOUNDRY, "product_families": []}, "body.product_families"),
        ({**FOUNDRY, "product_families": ["RUBBER_SEALS"]}, "body.product_families.0"),
        ({**FOUNDRY, "furnace": "cupola"}, "body.furnace"),
        ({k: v for k, v in FOUNDRY.items() if k != "name"}, "body.name"),
        ({**FOUNDRY, "name": "   "}, "body.name"),
        ({**FOUNDRY, "village": " "}, "body.village"),
    ]
    async with run_services(make_settings(), "capacity") as svc:
        capacity = svc["capacity"]
        http = capacity.http
        assert await capacity_state(capacity) == (0, 0)

        assert_problem(await http.get("/v1/foundries/IKM-404"), 404)
        assert_problem(await http.patch("/v1/foundries/IKM-404", json={"name": "CV Baru"}), 404)
        for body, field in invalid:
            assert_problem(await http.post("/v1/foundries", json=body), 422, field)
        assert_problem(await http.post("/v1/foundries", content=b"{not json", headers={"content-type": "application/json"}), 422)
        assert await capacity_state(capacity) == (0, 0), "a refused request stored a foundry or staged an event"

        created = await http.post("/v1/foundries", json=FOUNDRY)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/v1/foundries/IKM-001"
        assert await capacity_state(capacity) == (1, 1)

        duplicate = await http.post("/v1/foundries", json={**FOUNDRY, "name": "CV Peniru"})
        assert "IKM-001" in assert_problem(duplicate, 409)["detail"]
        for patch, field in [
            ({"product_families": []}, "body.product_families"),
            ({"village": "  "}, "body.village"),
            ({"code": "IKM-002"}, "body.code"),
            ({"product_families": ["RUBBER_SEALS"]}, "body.product_families.0"),
        ]:
            assert_problem(await http.patch("/v1/foundries/IKM-001", json=patch), 422, field)
        # A change to the same values is no change: no revision, no event.
        unchanged = await http.patch("/v1/foundries/IKM-001", json={"name": "CV Logam Batur"})
        assert unchanged.status_code == 200 and unchanged.json()["revision"] == 0
        assert await capacity_state(capacity) == (1, 1)
        stored = (await http.get("/v1/foundries/IKM-001")).json()
        assert (stored["name"], stored["village"], stored["revision"]) == ("CV Logam Batur", "Batur", 0)


# --- orders: purchase orders --------------------------------------------------------------------------------


async def test_purchase_order_errors_are_problems_and_change_nothing(make_settings):
    past = (date.today() - timedelta(days=1)).isoformat()
    invalid = [
        (with_line(unit_price=203700.0), "body.lines.0.unit_price"),
        (with_line(unit_price="203700"), "body.lines.0.unit_price"),
        (with_line(quantity=1000), "body.lines.0.deliveries"),
        (purchase_order(buyer_code="PT ASING"), "body.buyer_code"),
        (
            with_line(deliveries=[{"due_date": past, "quantity": 1200, "site_code": "BY-YK"}]),
            "body.lines.0.deliveries.0.due_date",
        ),
        (purchase_order(currency="USD"), "body.currency"),
        (with_line(quantity=0), "body.lines.0.quantity"),
        (purchase_order(lines=[]), "body.lines"),
        (purchase_order(signed_by="Kepala Pengadaan"), "body.signed_by"),
    ]
    async with run_services(make_settings(), "orders") as svc:
        orders = svc["orders"]
        http = orders.http
        missing_key = await http.post("/v1/purchase-orders", json=purchase_order())
        assert_problem(missing_key, 422, "header.idempotency-key")
        for i, (body, field) in enumerate(invalid):
            refused = await http.post("/v1/purchase-orders", json=body, headers={"Idempotency-Key": f"bad-{i}"})
            assert_problem(refused, 422, field)
        assert_problem(await http.get("/v1/purchase-orders/po_nope"), 404)
        assert await orders_state(orders) == (0, 0, 0), "a refused request stored an order, a key or an event"

        # A key whose request was refused is not used up: the corrected request goes through.
        first = await http.post("/v1/purchase-orders", json=purchase_order(), headers={"Idempotency-Key": "bad-2"})
        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers
        order_id = first.json()["id"]
        assert first.headers["location"] == f"/v1/purchase-orders/{order_id}"
        assert first.json()["total_amount"] == 1200 * 203700
        assert await orders_state(orders) == (1, 1, 1)


async def test_purchase_order_intake_is_idempotent(make_settings):

    async with run_services(make_settings(), "orders") as svc:
        orders = svc["orders"]
        http = orders.http
        key = {"Idempotency-Key": "kai-2027-00042-a"}
        first = await http.post("/v1/purchase-orders", json=purchase_order(), headers=key)
        assert first.status_code == 201, first.text
        order_id = first.json()["id"]

        again = await http.post("/v1/purchase-orders", json=purchase_order(), headers=key)
        assert again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert await orders_state(orders) == (1, 1, 1), "a replay must not store or publish anything"

        changed = purchase_order()
        changed["lines"][0]["unit_price"] = 199_000
        other_body = await http.post("/v1/purchase-orders", json=changed, headers=key)
        assert "Idempotency-Key" in assert_problem(other_body, 409)["detail"]

        reused_po = await http.post("/v1/purchase-orders", json=purchase_order(), headers={"Idempotency-Key": "kai-2027-00042-b"})
        assert "KAI/PO/2027/00042" in assert_problem(reused_po, 409)["detail"]
        assert await orders_state(orders) == (1, 1, 1)

        # The PO number is unique per buyer: INKA may use the same number.
        inka_order = purchase_order(buyer_code="INKA")
        inka_order["lines"][0]["deliveries"][0]["site_code"] = "INKA-MN"
        inka = await http.post("/v1/purchase-orders", json=inka_order, headers={"Idempotency-Key": "kai-2027-00042-b"})
        assert inka.status_code == 201, inka.text
        assert inka.json()["id"] != order_id
        found = (await http.get("/v1/purchase-orders", params={"buyer_code": "KAI", "po_number": "KAI/PO/2027/00042"})).json()
        assert [o["id"] for o in found["items"]] == [order_id] and found["total"] == 1
        both = (await http.get("/v1/purchase-orders", params={"po_number": "KAI/PO/2027/00042"})).json()
        assert {o["buyer_code"] for o in both["items"]} == {"KAI", "INKA"}
        assert_problem(await http.get("/v1/purchase-orders", params={"status": "shipped"}), 422, "query.status")

        received = "ceper.orders.purchase_order_received.v1"  # the planner adds its own
        intake = [(e.type.name, e.key) for e in await staged(orders) if e.type.name == received]
        assert intake == [
            ("ceper.orders.purchase_order_received.v1", order_id),
            ("ceper.orders.purchase_order_received.v1", inka.json()["id"]),
        ]
        fetched = await http.get(f"/v1/purchase-orders/{order_id}")
        # The planner may already have moved the status on and attached its plan; lines gain their progress.
        detail = fetched.json()
        as_submitted = {
            k: v for k, v in detail.items() if k not in ("plan", "status", "status_reason", "local_content_percent", "lines")
        }
        assert fetched.status_code == 200 and as_submitted == {
            k: v for k, v in first.json().items() if k not in ("status", "lines")
        }
        assert [{k: line[k] for k in first.json()["lines"][0]} for line in detail["lines"]] == first.json()["lines"]
        assert detail["lines"][0]["requirements"] == {"certificates": [], "min_tkdn_percent": None}
        assert detail["lines"][0]["required"] == {"certificates": ["SNI", "ISO9001"], "min_tkdn_percent": 25.0}


# --- operations endpoints -----------------------------------------------------------------------------------


def _requests_total(service: str, method: str, route: str, status: str) -> float:
    labels = {"service": service, "method": method, "route": route, "status": status}
    return PROMETHEUS.get_sample_value("ceper_http_requests_total", labels) or 0.0


async def test_health_readiness_metrics_and_request_ids(make_settings):
    code = f"IKM-{uuid.uuid4().int % 9000 + 1000}"
    async with run_services(make_settings(), "capacity") as svc:
        http = svc["capacity"].http
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"

        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "consumer": "ok"}

        before = _requests_total("capacity", "GET", "/v1/foundries/{code}", "404")
        assert_problem(await http.get(f"/v1/foundries/{code}"), 404)
        assert _requests_total("capacity", "GET", "/v1/foundries/{code}", "404") == before + 1
        assert_problem(await http.get(f"/v2/nothing/{code}"), 404)

        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        lines = [metric_line for metric_line in metrics.text.splitlines() if metric_line.startswith("ceper_http_requests_total{")]
        assert any(
            'route="/v1/foundries/{code}"' in metric_line
            and 'service="capacity"' in metric_line
            and 'status="404"' in metric_line
            for metric_line in lines
        )
        assert any('route="unmatched"' in metric_line for metric_line in lines)
        assert code not in metrics.text, "raw paths in labels would give one time series per foundry"

        generated = (await http.get("/healthz")).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        echoed = await http.get("/healthz", headers={"x-request-id": "kai-req-42.7"})
        assert echoed.headers["x-request-id"] == "kai-req-42.7"
        problem = await http.get("/v1/foundries/IKM-404", headers={"x-request-id": "kai-req-43"})
        assert problem.headers["x-request-id"] == "kai-req-43" and problem.json()["request_id"] == "kai-req-43"
        # An id unsafe to log or echo (spaces, newlines, overlong) is replaced, not reflected.
        for unsafe in ("two words", "x" * 200):
            replaced = (await http.get("/healthz", headers={"x-request-id": unsafe})).headers["x-request-id"]
            assert replaced != unsafe and re.fullmatch(r"[0-9a-f]{32}", replaced)


@pytest.mark.parametrize("service", ["orders", "capacity", "quality", "console"])
async def test_openapi_documents_problem_json_for_every_operation(service: str):
    import importlib

    app = importlib.import_module(f"services.{service}.app").create_app(Settings(env="test"))
    # Served over HTTP as clients read it; no lifespan is needed for the document.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        document = (await client.get("/openapi.json")).json()
    operations = [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 4
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, method, operation in operations:
        errors = {status: r for status, r in operation["responses"].items() if status[0] in "45"}
        documented = [s for s, r in errors.items() if "application/problem+json" in r.get("content", {})]
        assert documented, f"{method.upper()} {path} documents no problem+json error"
        for status, response in errors.items():
            content = response.get("content", {})
            if path == "/readyz" and status == "503":
                continue  # readiness answers with its checks, not a problem
            assert content == {"application/problem+json": {"schema": problem}}, f"{method.upper()} {path} {status}: {content}"
    assert set(document["components"]["schemas"]["Problem"]["required"]) == {"title", "status"}
