"""Buyers and delivery sites as orders' data, on both databases through orders' HTTP API: the ones orders knew are
there after migration; an admin adds a buyer and a site and their purchase order is received; an inactive site or
buyer takes no new order and nothing is stored, nor does a delivery to another buyer's site; only admins change them."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from services.orders import store
from shared import clock
from shared.clock import FixedClock
from shared.http import PROBLEM_JSON
from tests.integration.orders_support import NOW, Sessions, kai_order, orders_api, orders_database, receive

SITES = {
    "BY-YK": "Balai Yasa Yogyakarta",
    "BY-MRI": "Balai Yasa Manggarai",
    "BY-TGL": "Balai Yasa Tegal",
    "BY-SGU": "Balai Yasa Surabaya Gubeng",
    "BY-KAC": "Balai Yasa Kiaracondong",
    "BY-CN": "Balai Yasa Cirebon Prujakan",
    "BY-LT": "Balai Yasa Lahat",
    "BY-PUB": "Balai Yasa Pulubrayan",
    "INKA-MN": "PT INKA Madiun",
    "INKA-BWI": "PT INKA Banyuwangi",
    "TMMIN-SNT": "PT TMMIN Sunter II, Jakarta",
}
PELNI = {"code": "PELNI", "legal_name": "PT Pelayaran Nasional Indonesia (Persero)", "npwp": "0010001234093000"}
TANJUNG_PRIOK = {"code": "PELNI-TPK", "name": "Galangan Tanjung Priok", "buyer_code": "PELNI", "city": "Jakarta"}


@pytest.fixture(autouse=True)
def fixed_clock() -> FixedClock:
    at = FixedClock(NOW)
    clock.use(at)
    return at


def purchase_order(buyer: str, po_number: str, site: str, due: str = "2027-03-26") -> dict[str, Any]:
    return {
        "buyer_code": buyer,
        "po_number": po_number,
        "issued_on": NOW.date().isoformat(),
        "lines": [
            {"line_no": 1, "item_code": "BB-COMP-K", "quantity": 300, "unit_price": 203_700,
             "deliveries": [{"due_date": due, "quantity": 300, "site_code": site}]}
        ],
    }  # fmt: skip


async def stored(sessions: Sessions) -> dict[str, int]:
    """What a refused order must leave as it was."""
    async with sessions() as session:
        return {
            table.name: (await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
            for table in (store.purchase_orders, store.backbone.outbox, store.idempotency_keys.table)
        }


async def test_the_buyers_and_sites_orders_knew_are_there_after_migration(request, backend, tmp_path, token_mint):
    async with orders_database(request, backend, tmp_path) as sessions, orders_api(sessions, token_mint, tmp_path) as client:
        planner = token_mint.headers(roles=["planner"])
        buyers = (await client.get("/v1/buyers", headers=planner)).json()
        assert [(b["code"], b["legal_name"], b["active"]) for b in buyers] == [
            ("INKA", "PT Industri Kereta Api (Persero)", True),
            ("KAI", "PT Kereta Api Indonesia (Persero)", True),
            ("TMMIN", "PT Toyota Motor Manufacturing Indonesia", True),
        ]
        sites = (await client.get("/v1/sites", headers=planner)).json()
        assert {s["code"]: s["name"] for s in sites} == SITES
        assert {s["code"] for s in sites if s["buyer_code"] == "KAI"} == {code for code in SITES if code.startswith("BY-")}
        madiun = (await client.get("/v1/sites/INKA-MN", headers=token_mint.headers(roles=["qa_officer"]))).json()
        assert madiun == {
            "code": "INKA-MN", "name": "PT INKA Madiun", "buyer_code": "INKA", "city": "Madiun",
            "address": "Jl. Yos Sudarso 71", "active": True,
        }  # fmt: skip
        inka_sites = (await client.get("/v1/sites", params={"buyer_code": "INKA"}, headers=planner)).json()
        assert [s["code"] for s in inka_sites] == ["INKA-BWI", "INKA-MN"]
        missing = await client.get("/v1/buyers/PELNI", headers=planner)
        assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM_JSON


async def test_an_admin_adds_a_buyer_and_a_site_and_their_order_is_received(request, backend, tmp_path, token_mint):
    async with orders_database(request, backend, tmp_path) as sessions, orders_api(sessions, token_mint, tmp_path) as client:
        admin = token_mint.headers(roles=["admin"], subject="admin-ani")
        added = await client.post("/v1/buyers", json=PELNI, headers={**admin, "Idempotency-Key": "pelni-1"})
        assert added.status_code == 201, added.text
        assert added.json() == {**PELNI, "active": True} and added.headers["location"] == "/v1/buyers/PELNI"
        again = await client.post("/v1/buyers", json=PELNI, headers={**admin, "Idempotency-Key": "pelni-1"})
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true" and again.json() == added.json()
        twice = await client.post("/v1/buyers", json=PELNI, headers=admin)
        assert twice.status_code == 409 and twice.headers["content-type"] == PROBLEM_JSON
        site = await client.post("/v1/sites", json=TANJUNG_PRIOK, headers={**admin, "Idempotency-Key": "tpk-1"})
        assert site.status_code == 201, site.text
        assert site.json() == {**TANJUNG_PRIOK, "address": None, "active": True}

        # The NPWP is the admins' to see, and the audit trail says only that one is on file.
        seen = (await client.get("/v1/buyers/PELNI", headers=token_mint.headers(roles=["planner"]))).json()
        assert seen["npwp"] is None and seen["legal_name"] == PELNI["legal_name"]
        trail = (await client.get("/v1/audit", params={"entity": "buyer"}, headers=admin)).json()["items"]
        assert [(e["action"], e["entity_id"], e["actor_subject"]) for e in trail] == [("buyer.added", "PELNI", "admin-ani")]
        assert trail[0]["after"]["npwp_on_file"] is True and PELNI["npwp"] not in str(trail)
        sites_trail = (await client.get("/v1/audit", params={"entity": "delivery_site"}, headers=admin)).json()["items"]
        assert [e["entity_id"] for e in sites_trail] == ["PELNI-TPK"]

        pelni = token_mint.headers(roles=["buyer"], buyer_code="PELNI")
        order = await client.post(
            "/v1/purchase-orders",
            json=purchase_order("PELNI", "PELNI/PO/2027/7", "PELNI-TPK"),
            headers={**pelni, "Idempotency-Key": "pelni-po-7"},
        )
        assert order.status_code == 201, order.text
        assert order.json()["buyer_code"] == "PELNI" and order.json()["status"] == "received"
        webhook = await client.put("/v1/buyers/PELNI/webhook", json={"url": "https://93.184.216.34/pelni/hooks"}, headers=pelni)
        assert webhook.status_code == 200, webhook.text

        # A site of a buyer orders does not know is refused, naming the field.
        stray = await client.post("/v1/sites", json={**TANJUNG_PRIOK, "code": "X-1", "buyer_code": "NOBODY"}, headers=admin)
        assert stray.status_code == 422 and [e["field"] for e in stray.json()["errors"]] == ["body.buyer_code"]


async def test_an_inactive_site_or_buyer_takes_no_new_order_and_nothing_is_stored(request, backend, tmp_path, token_mint):
    async with orders_database(request, backend, tmp_path) as sessions:
        await receive(sessions, kai_order())  # delivers to BY-YK and BY-MRI
        async with orders_api(sessions, token_mint, tmp_path) as client:
            admin, kai = token_mint.headers(roles=["admin"]), token_mint.headers(roles=["buyer"], buyer_code="KAI")
            closed = await client.patch("/v1/sites/BY-MRI", json={"active": False}, headers={**admin, "Idempotency-Key": "c-1"})
            assert closed.status_code == 200 and closed.json()["active"] is False and closed.json()["name"] == SITES["BY-MRI"]
            retried = await client.patch("/v1/sites/BY-MRI", json={"active": False}, headers={**admin, "Idempotency-Key": "c-1"})
            assert retried.status_code == 200 and retried.headers["idempotent-replayed"] == "true"
            reused = await client.patch("/v1/sites/BY-MRI", json={"active": True}, headers={**admin, "Idempotency-Key": "c-1"})
            assert reused.status_code == 409
            before = await stored(sessions)
            refused = await client.post(
                "/v1/purchase-orders", json=purchase_order("KAI", "KAI/PO/9", "BY-MRI"), headers={**kai, "Idempotency-Key": "k-9"}
            )
            assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM_JSON
            assert refused.json()["errors"] == [
                {"field": "body.lines.0.deliveries.0.site_code", "message": "site BY-MRI is inactive: it takes no new deliveries"}
            ]
            far = await client.post(
                "/v1/purchase-orders",
                json=purchase_order("KAI", "KAI/PO/10", "BY-YK", due="2031-01-31"),
                headers={**kai, "Idempotency-Key": "k-10"},
            )
            assert far.status_code == 422 and [e["field"] for e in far.json()["errors"]] == ["body.lines.0.deliveries.0.due_date"]
            assert await stored(sessions) == before
            # The order received before goes on, to the site it names.
            existing = await client.get("/v1/purchase-orders/po_1", headers=kai)
            assert existing.status_code == 200 and "BY-MRI" in {d["site_code"] for d in existing.json()["lines"][0]["deliveries"]}

            retired = await client.patch("/v1/buyers/INKA", json={"active": False}, headers=admin)
            assert retired.status_code == 200 and retired.json()["active"] is False
            inka = token_mint.headers(roles=["buyer"], buyer_code="INKA")
            refused = await client.post(
                "/v1/purchase-orders",
                json=purchase_order("INKA", "INKA/PO/1", "INKA-MN"),
                headers={**inka, "Idempotency-Key": "i-1"},
            )
            assert refused.status_code == 422 and [e["field"] for e in refused.json()["errors"]] == ["body.buyer_code"]
            assert await stored(sessions) == before
            # Its webhooks keep working, and an admin may take it back.
            assert (
                await client.put("/v1/buyers/INKA/webhook", json={"url": "https://93.184.216.34/inka/hooks"}, headers=inka)
            ).status_code == 200
            back = await client.patch("/v1/buyers/INKA", json={"active": True}, headers=admin)
            assert back.json()["active"] is True
            accepted = await client.post(
                "/v1/purchase-orders",
                json=purchase_order("INKA", "INKA/PO/1", "INKA-MN"),
                headers={**inka, "Idempotency-Key": "i-1"},
            )
            assert accepted.status_code == 201, accepted.text


async def test_an_order_delivers_only_to_its_buyers_sites_and_a_refused_one_stores_nothing(
    request, backend, tmp_path, token_mint
):
    async with orders_database(request, backend, tmp_path) as sessions, orders_api(sessions, token_mint, tmp_path) as client:
        inka = token_mint.headers(roles=["buyer"], buyer_code="INKA")
        before = await stored(sessions)
        refused = await client.post(
            "/v1/purchase-orders", json=purchase_order("INKA", "INKA/PO/2", "BY-YK"), headers={**inka, "Idempotency-Key": "i-2"}
        )
        assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM_JSON
        assert refused.json()["errors"] == [
            {
                "field": "body.lines.0.deliveries.0.site_code",
                "message": "site BY-YK is KAI's, not INKA's; INKA's sites: INKA-BWI, INKA-MN",
            }
        ]
        # A planner's what-if asks the same of the orders it imagines.
        imagined = await client.post(
            "/v1/what-if",
            json={"new_orders": [purchase_order("TMMIN", "TMMIN/PO/9", "INKA-MN")]},
            headers=token_mint.headers(roles=["planner"]),
        )
        assert imagined.status_code == 422 and imagined.headers["content-type"] == PROBLEM_JSON
        assert [e["field"] for e in imagined.json()["errors"]] == ["body.new_orders.0.lines.0.deliveries.0.site_code"]
        assert await stored(sessions) == before

        # To its own site the same order is received; so is a TMMIN order to Sunter.
        accepted = await client.post(
            "/v1/purchase-orders",
            json=purchase_order("INKA", "INKA/PO/2", "INKA-BWI"),
            headers={**inka, "Idempotency-Key": "i-3"},
        )
        assert accepted.status_code == 201, accepted.text
        tmmin = token_mint.headers(roles=["buyer"], buyer_code="TMMIN")
        sunter = purchase_order("TMMIN", "TMMIN/PO/9", "TMMIN-SNT")
        received = await client.post("/v1/purchase-orders", json=sunter, headers={**tmmin, "Idempotency-Key": "t-9"})
        assert received.status_code == 201, received.text


async def test_only_admins_change_buyers_and_sites(request, backend, tmp_path, token_mint):
    async with orders_database(request, backend, tmp_path) as sessions, orders_api(sessions, token_mint, tmp_path) as client:
        changes = [
            ("POST", "/v1/buyers", PELNI),
            ("PATCH", "/v1/buyers/KAI", {"legal_name": "PT Lain"}),
            ("POST", "/v1/sites", {**TANJUNG_PRIOK, "buyer_code": "KAI"}),
            ("PATCH", "/v1/sites/BY-YK", {"active": False}),
        ]
        callers = {
            "planner": (token_mint.headers(roles=["planner"]), 403),
            "foundry": (token_mint.headers(roles=["foundry"], foundry_code="IKM-001"), 403),
            "buyer": (token_mint.headers(roles=["buyer"], buyer_code="KAI"), 403),
            "anonymous": ({}, 401),
        }
        for method, path, body in changes:
            for who, (headers, status) in callers.items():
                answer = await client.request(method, path, json=body, headers=headers)
                assert answer.status_code == status, f"{method} {path} as {who}: {answer.status_code}"
                assert answer.headers["content-type"] == PROBLEM_JSON
        for who in ("foundry", "buyer"):
            assert (await client.get("/v1/sites", headers=callers[who][0])).status_code == 403
        planner = token_mint.headers(roles=["planner"])
        assert [b["code"] for b in (await client.get("/v1/buyers", headers=planner)).json()] == ["INKA", "KAI", "TMMIN"]
        kai = (await client.get("/v1/buyers/KAI", headers=planner)).json()
        assert kai["legal_name"] == "PT Kereta Api Indonesia (Persero)"
        assert (await client.get("/v1/sites/BY-YK", headers=planner)).json()["active"] is True
        async with sessions() as session:
            trail = store.audit_log
            changed = sa.select(sa.func.count()).where(trail.c.entity_type.in_(("buyer", "delivery_site")))
            assert (await session.execute(changed)).scalar_one() == 0
