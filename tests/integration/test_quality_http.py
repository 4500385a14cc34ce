"""Quality's HTTP contract on SQLite and PostgreSQL: bad input is refused with a problem naming the field, and a
refused request changes nothing: no row, no event."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from tests.fixtures.tokens import as_
from tests.integration.quality_helpers import foundry, good_composite_sample, register_foundries, run_quality
from tests.integration.test_http import assert_problem
from tests.support import RunningService, run_services, staged

QA = as_("qa_officer")
ITEMS = 8  # the catalogue quality's migration seeds

LOT = {"lot_code": "IKM-001-K-0001", "foundry_code": "IKM-001", "item_code": "BB-COMP-K", "quantity": 200}
SNI = {
    "foundry_code": "IKM-001",
    "kind": "SNI",
    "number": "SPPT-SNI/001",
    "issuer": "LSPro B4T",
    "valid_from": "2026-01-01",
    "valid_until": "2029-12-31",
    "items": ["BB-COMP-K"],
}


async def state(quality: RunningService) -> dict[str, int]:
    from services.quality import store

    tables = [
        store.lots,
        store.lot_results,
        store.certificates,
        store.certificate_notices,
        store.specifications,
        store.foundry_quality,
        store.quality_status_changes,
    ]
    async with quality.runtime.sessions() as session:  # type: ignore[union-attr]
        counts = {t.name: (await session.execute(sa.select(sa.func.count()).select_from(t))).scalar_one() for t in tables}
    return counts | {"staged": len(await staged(quality))}


def result(samples: list[dict], **changes) -> dict:
    return {"report_number": "B4T/LHU/0001", "laboratory": "B4T Bandung", "samples": samples, **changes}


async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity") as svc, run_quality(settings) as quality:
        await register_foundries(
            svc["capacity"], quality, foundry("IKM-001", "BRAKE_BLOCK_COMPOSITE"), foundry("IKM-003", "BRAKE_BLOCK_CAST_IRON")
        )
        http = quality.http
        assert (await http.post("/v1/lots", json=LOT)).status_code == 201
        assert (await http.post("/v1/certificates", json=SNI)).status_code == 201
        sni_id = (await http.get("/v1/certificates")).json()[0]["id"]
        before = await state(quality)
        assert (
            before["lots"] == 1
            and before["certificates"] == 1
            and before["specifications"] == ITEMS  # one for every item of the catalogue
            and before["staged"] == ITEMS + 2  # each item announced once, the lot and the certificate
        )

        # Lots.
        for body, field in [
            ({**LOT, "lot_code": "IKM-001-K-0002", "foundry_code": "IKM-999"}, "body.foundry_code"),
            ({**LOT, "foundry_code": "IKM-1"}, "body.foundry_code"),
            ({**LOT, "lot_code": "IKM-001-K-0002", "item_code": "BB-RUBBER"}, "body.item_code"),
            ({**LOT, "lot_code": "IKM-003-K-0001", "foundry_code": "IKM-003"}, "body.item_code"),
            ({**LOT, "quantity": 0}, "body.quantity"),
            ({**LOT, "quantity": "200"}, "body.quantity"),
            ({**LOT, "quantity": 200.5}, "body.quantity"),
            ({**LOT, "lot_code": "lot 1"}, "body.lot_code"),
            ({**LOT, "lot_code": "IKM-001-K-0002", "allocation_id": "al_1"}, "body.order_id"),
            ({**LOT, "colour": "grey"}, "body.colour"),
            ({k: v for k, v in LOT.items() if k != "item_code"}, "body.item_code"),
        ]:
            assert_problem(await http.post("/v1/lots", json=body), 422, field)
        problem = assert_problem(
            await http.post("/v1/lots", json={**LOT, "lot_code": "IKM-003-K-0001", "foundry_code": "IKM-003"}), 422
        )
        assert problem["errors"][0]["message"] == "IKM-003 does not make BRAKE_BLOCK_COMPOSITE (capacity's register)"
        assert "IKM-001-K-0001" in assert_problem(await http.post("/v1/lots", json=LOT), 409)["detail"]
        assert_problem(await http.get("/v1/lots/NOPE-1"), 404)
        assert_problem(await http.get("/v1/lots/NOPE-1/trace"), 404)

        # Results: the plan calls for 32 samples.
        rows = [good_composite_sample() for _ in range(32)]
        wrong = await http.post("/v1/lots/IKM-001-K-0001/results", json=result(rows[:30]))
        assert "calls for 32 samples" in assert_problem(wrong, 422, "body.samples")["detail"]
        bad_rows = [dict(r) for r in rows]
        bad_rows[0]["colour"] = "grey"
        del bad_rows[1]["density"]
        bad_rows[2]["density"] = -2.1
        bad_rows[3]["hardness"] = "hard"
        bad_rows[4]["back_plate_bond"] = 1
        refused = await http.post("/v1/lots/IKM-001-K-0001/results", json=result(bad_rows))
        body = assert_problem(
            refused,
            422,
            "body.samples.0.colour",
            "body.samples.1.density",
            "body.samples.2.density",
            "body.samples.3.hardness",
            "body.samples.4.back_plate_bond",
        )
        assert "impossible" in {e["field"]: e["message"] for e in body["errors"]}["body.samples.2.density"]
        tomorrow = (date.today() + timedelta(days=2)).isoformat()
        assert_problem(
            await http.post("/v1/lots/IKM-001-K-0001/results", json=result(rows, tested_on=tomorrow)), 422, "body.tested_on"
        )
        assert_problem(
            await http.post("/v1/lots/IKM-001-K-0001/results", json=result(rows, report_number="")), 422, "body.report_number"
        )
        assert_problem(
            await http.post("/v1/lots/IKM-001-K-0001/results", json={"laboratory": "B4T", "samples": rows}),
            422,
            "body.report_number",
        )
        assert_problem(
            await http.post("/v1/lots/IKM-001-K-0001/results", content=b"{oops", headers={"content-type": "application/json"}),
            422,
        )
        assert_problem(await http.post("/v1/lots/NOPE-1/results", json=result(rows)), 404)

        # Certificates.
        for body, field in [
            ({**SNI, "number": "X-1", "foundry_code": "IKM-999"}, "body.foundry_code"),
            ({**SNI, "number": "X-2", "items": ["BB-RUBBER"]}, "body.items.0"),
            ({**SNI, "number": "X-3", "items": []}, "body.items"),
            ({**SNI, "number": "X-4", "kind": "TKDN", "items": []}, "body.tkdn_percent"),
            ({**SNI, "number": "X-5", "kind": "TKDN", "items": [], "tkdn_percent": 140}, "body.tkdn_percent"),
            ({**SNI, "number": "X-6", "kind": "SKKNI", "items": [], "certified_workers": 2.5}, "body.certified_workers"),
            ({**SNI, "number": "X-7", "valid_until": "2025-12-31"}, "body.valid_until"),
            ({**SNI, "number": "X-8", "valid_until": "2035-12-31"}, "body.valid_until"),
            ({**SNI, "number": "X-9", "kind": "ISO14001"}, "body.kind"),
            ({**SNI, "number": "X-10", "valid_from": "1 Maret 2026"}, "body.valid_from"),
        ]:
            assert_problem(await http.post("/v1/certificates", json=body), 422, field)
        assert sni_id in assert_problem(await http.post("/v1/certificates", json=SNI), 409)["detail"]
        assert_problem(await http.get("/v1/certificates/cert_nope"), 404)
        assert_problem(await http.post("/v1/certificates/cert_nope/revoke", json={"reason": "x"}), 404)
        assert_problem(await http.post(f"/v1/certificates/{sni_id}/revoke", json={"reason": ""}), 422, "body.reason")
        assert_problem(await http.post(f"/v1/certificates/{sni_id}/revoke", json={"reason": "   "}), 422, "body.reason")

        # Specifications and sampling.
        current = (await http.get("/v1/specifications/BB-COMP-K")).json()
        parameters = [{k: v for k, v in p.items() if k != "acceptance"} for p in current["parameters"]]
        assert_problem(await http.post("/v1/specifications/BB-RUBBER/versions", json={"parameters": parameters}), 404)
        inverted = [dict(parameters[1], minimum=2.4, maximum=1.7), *parameters[2:]]
        assert_problem(
            await http.post("/v1/specifications/BB-COMP-K/versions", json={"parameters": inverted}),
            422,
            "body.parameters.0.maximum",
        )
        assert_problem(
            await http.post("/v1/specifications/BB-COMP-K/versions", json={"parameters": parameters, "sampling": {"aql": 3.0}}),
            422,
            "body.sampling.aql",
        )
        assert_problem(
            await http.post(
                "/v1/specifications/BB-COMP-K/versions", json={"parameters": parameters, "sampling": {"inspection_level": "IV"}}
            ),
            422,
            "body.sampling.inspection_level",
        )
        assert_problem(await http.post("/v1/specifications/BB-COMP-K/versions", json={"parameters": []}), 422, "body.parameters")
        assert_problem(await http.get("/v1/specifications/BB-COMP-K", params={"version": 9}), 404)
        assert_problem(await http.get("/v1/sampling-plan", params={"lot_size": 1000, "aql": 3}), 422, "query.aql")
        assert_problem(await http.get("/v1/sampling-plan", params={"lot_size": 0}), 422, "query.lot_size")

        # Quality status and eligibility.
        assert_problem(
            await http.put("/v1/foundries/IKM-999/quality-status/override", json={"status": "watch", "reason": "x"}, auth=QA), 404
        )
        assert_problem(
            await http.put("/v1/foundries/IKM-001/quality-status/override", json={"status": "banned", "reason": "x"}, auth=QA),
            422,
            "body.status",
        )
        assert_problem(
            await http.put("/v1/foundries/IKM-001/quality-status/override", json={"status": "watch"}, auth=QA), 422, "body.reason"
        )
        assert (
            "not overridden"
            in assert_problem(await http.delete("/v1/foundries/IKM-001/quality-status/override", auth=QA), 409)["detail"]
        )
        assert_problem(await http.get("/v1/foundries/IKM-999/quality-status"), 404)
        assert_problem(await http.get("/v1/eligibility", params={"item": "BB-RUBBER"}), 422, "query.item")
        assert_problem(await http.get("/v1/eligibility"), 422, "query.item")
        assert_problem(await http.get("/v1/eligibility", params={"item": "BB-COMP-K", "min_tkdn": 120}), 422, "query.min_tkdn")
        assert_problem(await http.get("/v1/eligibility", params={"item": "BB-COMP-K", "on": "kemarin"}), 422, "query.on")
        assert_problem(
            await http.get("/v1/eligibility", params={"item": "BB-COMP-K", "certificates": "ISO14001"}),
            422,
            "query.certificates.0",
        )

        assert await state(quality) == before, "a refused request stored something or staged an event"

        # The corrected requests go through; a second result for a decided lot is refused.
        assert (await http.post("/v1/lots/IKM-001-K-0001/results", json=result(rows))).status_code == 201
        again = await http.post("/v1/lots/IKM-001-K-0001/results", json=result(rows, report_number="B4T/LHU/0002"))
        assert "already decided" in assert_problem(again, 409)["detail"]
        assert (await http.post("/v1/lots", json={**LOT, "lot_code": "IKM-001-K-0002"})).status_code == 201
        reused = await http.post("/v1/lots/IKM-001-K-0002/results", json=result(rows))
        assert "IKM-001-K-0001" in assert_problem(reused, 409)["detail"]
        assert (await http.post(f"/v1/certificates/{sni_id}/revoke", json={"reason": "audit missed"})).status_code == 200
        assert (
            "already revoked"
            in assert_problem(await http.post(f"/v1/certificates/{sni_id}/revoke", json={"reason": "again"}), 409)["detail"]
        )
        after = await state(quality)
        assert (after["lots"], after["lot_results"], after["staged"]) == (2, 1, before["staged"] + 1 + 1 + 1)


async def test_a_generated_lot_code_and_the_sampling_plan_endpoint(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity") as svc, run_quality(settings) as quality:
        await register_foundries(svc["capacity"], quality, foundry("IKM-007", "BRAKE_BLOCK_CAST_IRON"))
        created = await quality.http.post("/v1/lots", json={"foundry_code": "IKM-007", "item_code": "BB-CI", "quantity": 1000})
        assert created.status_code == 201, created.text
        assert created.json()["lot_code"].startswith("IKM-007-")
        assert created.json()["sampling_plan"]["sample_size"] == 80
        plan = (await quality.http.get("/v1/sampling-plan", params={"lot_size": 5000, "aql": 2.5})).json()
        assert (plan["code_letter"], plan["sample_size"], plan["acceptance_number"], plan["rejection_number"]) == (
            "L",
            200,
            10,
            11,
        )
        specs = (await quality.http.get("/v1/specifications")).json()
        assert [s["item_code"] for s in specs] == [
            "BB-CI",
            "BB-COMP-K",
            "BB-COMP-LL",
            "KA-KLEM-REL",
            "KPL-BOLDER-FCD450",
            "MSN-RUMAH-GIR",
            "PMP-IMP-FC200",
            "TMMIN-PRT",
        ]
        assert all(s["version"] == 1 for s in specs)
