"""Lots through the real broker on SQLite and PostgreSQL: registration, lab results deciding them (lot_passed,
lot_failed with reasons), the foundry's quality status moving with them, traceability and metrics."""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client import REGISTRY as PROMETHEUS

from services.quality import store
from tests.fixtures.tokens import as_
from tests.integration.quality_helpers import (
    COMPOSITE_FOUNDRY,
    events_named,
    good_composite_sample,
    register_foundries,
    run_quality,
)
from tests.support import run_services, staged


def lots_decided(outcome: str, item: str) -> float:
    return PROMETHEUS.get_sample_value("ceper_quality_lots_total", {"outcome": outcome, "item": item}) or 0.0


async def test_a_failing_result_publishes_lot_failed_with_reasons_and_moves_the_status(make_settings):
    settings = make_settings()
    failed_before = lots_decided("failed", "BB-COMP-K")
    async with run_services(settings, "capacity") as svc, run_quality(settings) as quality:
        await register_foundries(svc["capacity"], quality, COMPOSITE_FOUNDRY)
        http = quality.http
        sni = await http.post(
            "/v1/certificates",
            json={
                "foundry_code": "IKM-001",
                "kind": "SNI",
                "number": "SPPT-SNI/B4T/001/2026",
                "issuer": "LSPro B4T",
                "valid_from": "2026-01-05",
                "valid_until": "2029-12-31",
                "items": ["BB-COMP-K"],
            },
        )
        assert sni.status_code == 201, sni.text

        lot = await http.post(
            "/v1/lots",
            json={
                "lot_code": "IKM-001-K-0001",
                "foundry_code": "IKM-001",
                "item_code": "BB-COMP-K",
                "quantity": 200,
                "order_id": "po_42",
                "allocation_id": "al_42_1",
            },
        )
        assert lot.status_code == 201, lot.text
        assert lot.headers["location"] == "/v1/lots/IKM-001-K-0001"
        plan = lot.json()["sampling_plan"]
        assert (plan["code_letter"], plan["sample_size"], plan["acceptance_number"], plan["rejection_number"]) == ("G", 32, 2, 3)
        assert lot.json()["spec_version"] == 1 and lot.json()["status"] == "registered"

        passing = [good_composite_sample() for _ in range(32)]
        passing[3]["density"] = 2.55  # one nonconforming sample is within Ac 2
        passed = await http.post(
            "/v1/lots/IKM-001-K-0001/results",
            json={"report_number": "B4T/LHU/0001", "laboratory": "B4T Bandung", "samples": passing},
        )
        assert passed.status_code == 201, passed.text
        assert passed.json()["status"] == "passed" and passed.json()["result"]["nonconforming"] == 1
        assert passed.json()["reasons"] == []

        for n in (2, 3):
            code = f"IKM-001-K-000{n}"
            assert (
                await http.post(
                    "/v1/lots", json={"lot_code": code, "foundry_code": "IKM-001", "item_code": "BB-COMP-K", "quantity": 200}
                )
            ).status_code == 201
            failing = [good_composite_sample() for _ in range(32)]
            failing[0]["friction_coefficient"] = 0.19
            failing[5]["friction_coefficient"] = 0.33
            failing[9]["back_plate_bond"] = "fail"
            failed = await http.post(
                f"/v1/lots/{code}/results",
                json={"report_number": f"B4T/LHU/000{n}", "laboratory": "B4T Bandung", "samples": failing},
            )
            assert failed.status_code == 201, failed.text
            assert failed.json()["status"] == "failed"
            reasons = {r["parameter"]: r for r in failed.json()["reasons"]}
            assert set(reasons) == {"friction_coefficient", "back_plate_bond"}
            assert reasons["friction_coefficient"]["observed"] == "0.19, 0.33"

        # The lot's own events, on the real broker, in the contract's shape.
        [registered] = [e for e in await events_named(settings, "lot_registered", 3) if e.key == "IKM-001-K-0001"]
        assert registered.data.model_dump(mode="json", exclude={"registered_at"}) == {
            "lot_code": "IKM-001-K-0001",
            "foundry_code": "IKM-001",
            "item_code": "BB-COMP-K",
            "quantity": 200,
            "order_id": "po_42",
            "allocation_id": "al_42_1",
            "spec_version": 1,
        }
        [lot_passed] = await events_named(settings, "lot_passed")
        assert (lot_passed.key, lot_passed.data.report_number, lot_passed.data.laboratory, lot_passed.data.allocation_id) == (
            "IKM-001-K-0001",
            "B4T/LHU/0001",
            "B4T Bandung",
            "al_42_1",
        )
        lot_failed = await events_named(settings, "lot_failed", 2)
        assert sorted(e.key for e in lot_failed) == ["IKM-001-K-0002", "IKM-001-K-0003"]
        reasons = {r.parameter: r for r in lot_failed[0].data.reasons}
        assert reasons["friction_coefficient"].rule == "0.25 ± 0.04"
        assert reasons["friction_coefficient"].message.startswith("2 of 32 samples outside 0.25 ± 0.04 (samples 1, 6)")
        assert "Re 3" in reasons["friction_coefficient"].message
        assert (reasons["back_plate_bond"].rule, reasons["back_plate_bond"].observed) == ("pass", "fail")

        # Passed, failed, failed: with the prior the foundry moves from good to watch, once.
        [moved] = await events_named(settings, "foundry_quality_status_changed")
        assert (moved.key, moved.data.status, moved.data.previous_status, moved.data.overridden) == (
            "IKM-001",
            "watch",
            "good",
            False,
        )
        assert moved.data.pass_rate == round(10 / 13, 4)
        status = (await http.get("/v1/foundries/IKM-001/quality-status")).json()
        assert (status["status"], status["lots_considered"], status["lots_passed"]) == ("watch", 3, 1)

        # Traceability: foundry, spec version, plan, report and the certificates valid when it was tested.
        trace = (await http.get("/v1/lots/IKM-001-K-0002/trace")).json()
        assert trace["foundry"] == {"code": "IKM-001", "name": "CV Logam Batur", "village": "Batur"}
        assert trace["specification"]["version"] == 1 and trace["specification"]["item_code"] == "BB-COMP-K"
        assert trace["sampling_plan"]["sample_size"] == 32
        assert trace["test_report"]["report_number"] == "B4T/LHU/0002" and trace["test_report"]["nonconforming"] == 3
        assert [c["id"] for c in trace["certificates_valid_when_tested"]] == [sni.json()["id"]]
        listed = (await http.get("/v1/lots", params={"foundry_code": "IKM-001", "status": "failed"})).json()
        assert listed["total"] == 2 and {lot["lot_code"] for lot in listed["items"]} == {"IKM-001-K-0002", "IKM-001-K-0003"}

        metrics = (await http.get("/metrics")).text
        assert lots_decided("failed", "BB-COMP-K") == failed_before + 2
        assert 'ceper_quality_pass_rate{item="BB-COMP-K"} 0.333' in metrics
        assert 'ceper_quality_foundries{status="watch"} 1.0' in metrics


async def test_a_revised_specification_applies_to_lots_registered_after_it(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity") as svc, run_quality(settings) as quality:
        await register_foundries(svc["capacity"], quality, COMPOSITE_FOUNDRY)
        http = quality.http
        assert (
            await http.post(
                "/v1/lots", json={"lot_code": "OLD-1", "foundry_code": "IKM-001", "item_code": "BB-COMP-K", "quantity": 200}
            )
        ).status_code == 201

        current = (await http.get("/v1/specifications/BB-COMP-K")).json()
        parameters = [{k: v for k, v in p.items() if k != "acceptance"} for p in current["parameters"]]
        parameters[0]["tolerance"] = 0.03
        revised = await http.post(
            "/v1/specifications/BB-COMP-K/versions",
            json={"parameters": parameters, "sampling": {"inspection_level": "II", "aql": 1.0}, "note": "KAI: tighter μ"},
        )
        assert revised.status_code == 201, revised.text
        assert revised.json()["version"] == 2 and revised.json()["parameters"][0]["acceptance"] == "0.25 ± 0.03"
        assert revised.headers["location"] == "/v1/specifications/BB-COMP-K?version=2"

        new = await http.post(
            "/v1/lots", json={"lot_code": "NEW-1", "foundry_code": "IKM-001", "item_code": "BB-COMP-K", "quantity": 200}
        )
        assert new.json()["spec_version"] == 2
        # AQL 1.0 for 200 units: G points down to H, 50 samples with Ac 1.
        plan = new.json()["sampling_plan"]
        assert (plan["code_letter"], plan["plan_letter"], plan["sample_size"], plan["acceptance_number"]) == ("G", "H", 50, 1)

        # μ 0.215 passes the old band but not the new one: each lot is judged by its own version and plan.
        old_rows = [good_composite_sample(friction_coefficient=0.215) for _ in range(32)]
        new_rows = [good_composite_sample(friction_coefficient=0.215) for _ in range(50)]
        old_result = await http.post(
            "/v1/lots/OLD-1/results", json={"report_number": "R-1", "laboratory": "QA", "samples": old_rows}
        )
        new_result = await http.post(
            "/v1/lots/NEW-1/results", json={"report_number": "R-2", "laboratory": "QA", "samples": new_rows}
        )
        assert (old_result.json()["status"], new_result.json()["status"]) == ("passed", "failed")
        versions = (await http.get("/v1/specifications/BB-COMP-K/versions")).json()
        assert [v["version"] for v in versions] == [1, 2]
        assert (await http.get("/v1/specifications/BB-COMP-K", params={"version": 1})).json()["parameters"][0][
            "acceptance"
        ] == "0.25 ± 0.04"
        assert (await http.get("/v1/lots/OLD-1/trace")).json()["specification"]["version"] == 1
        assert len(await events_named(settings, "lot_registered", 2)) == 2

        from services.quality import store

        async with quality.runtime.sessions() as session:  # type: ignore[union-attr]
            stored = (
                await session.execute(sa.select(store.lots.c.lot_code, store.lots.c.spec_version).order_by(store.lots.c.lot_code))
            ).all()
        assert [tuple(r) for r in stored] == [("NEW-1", 2), ("OLD-1", 1)]


async def test_a_result_and_an_override_sent_twice_with_one_idempotency_key_act_once(make_settings):
    settings = make_settings()
    async with run_services(settings, "capacity") as svc, run_quality(settings) as quality:
        await register_foundries(svc["capacity"], quality, COMPOSITE_FOUNDRY)
        http = quality.http
        lot = {"lot_code": "IKM-001-K-0101", "foundry_code": "IKM-001", "item_code": "BB-COMP-K", "quantity": 200}
        assert (await http.post("/v1/lots", json=lot)).status_code == 201
        body = {"report_number": "B4T/LHU/0101", "laboratory": "B4T Bandung", "samples": [good_composite_sample()] * 32}
        key = {"idempotency-key": "results-form-1"}
        first = await http.post("/v1/lots/IKM-001-K-0101/results", json=body, headers=key)
        again = await http.post("/v1/lots/IKM-001-K-0101/results", json=body, headers=key)
        assert first.status_code == again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
        assert again.json()["status"] == first.json()["status"] == "passed"
        assert again.json()["result"] == first.json()["result"]
        other_body = await http.post("/v1/lots/IKM-001-K-0101/results", json={**body, "report_number": "B4T/9"}, headers=key)
        assert other_body.status_code == 409  # one key, one request
        without_key = await http.post("/v1/lots/IKM-001-K-0101/results", json=body)
        assert without_key.status_code == 409  # a result is recorded once

        path = "/v1/foundries/IKM-001/quality-status/override"
        pin = {"status": "watch", "reason": "ISO audit finding"}
        qa = as_("qa_officer")  # only a QA officer pins or releases a quality status
        pinned = [await http.put(path, json=pin, headers={"idempotency-key": "pin-1"}, auth=qa) for _ in range(2)]
        assert [r.status_code for r in pinned] == [200, 200] and pinned[1].headers["idempotent-replayed"] == "true"
        release = {"idempotency-key": "release-1"}
        released = [await http.delete(path, params={"reason": "fixed"}, headers=release, auth=qa) for _ in range(2)]
        assert [r.status_code for r in released] == [200, 200], released[1].text  # the second would be a 409 without the key
        assert not released[1].json()["overridden"]

        changes = store.quality_status_changes
        async with quality.runtime.sessions() as session:  # type: ignore[union-attr]
            pins = await session.scalar(
                sa.select(sa.func.count()).select_from(changes).where(changes.c.foundry_code == "IKM-001", changes.c.overridden)
            )
        decided = [e for e in await staged(quality) if "lot_passed" in e.type.name]
        assert pins == 1 and len(decided) == 1
