"""Certificates through the real broker on SQLite and PostgreSQL: the clock-driven expiry job giving each notice
exactly once across restarts, eligibility on a date, and the QA officer's status override."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from shared.clock import FixedClock
from tests.fixtures.tokens import as_
from tests.integration.quality_helpers import (
    COMPOSITE_FOUNDRY,
    events_named,
    foundry,
    outbox_drained,
    quality_events,
    register_foundries,
    run_quality,
)
from tests.support import run_services

START = datetime(2027, 3, 1, 3, 0, tzinfo=UTC)  # 10:00 in Ceper


def iso9001(foundry_code: str, number: str, valid_from: str, valid_until: str) -> dict:
    return {
        "foundry_code": foundry_code,
        "kind": "ISO9001",
        "number": number,
        "issuer": "PT Sucofindo (LSSM)",
        "valid_from": valid_from,
        "valid_until": valid_until,
    }


async def test_expiry_notices_fire_exactly_once_across_restarts(make_settings):
    from services.quality import store

    settings = make_settings()
    clock = FixedClock(START)
    async with run_services(settings, "capacity") as svc:
        async with run_quality(settings, clock) as quality:
            await register_foundries(svc["capacity"], quality, COMPOSITE_FOUNDRY)
            granted = await quality.http.post(
                "/v1/certificates", json=iso9001("IKM-001", "QMS-001-2024", "2024-04-16", "2027-04-15")
            )
            assert granted.status_code == 201, granted.text
            assert granted.json()["state"] == "valid"  # 45 days left
            cert_id = granted.json()["id"]
            # Granted already lapsed: announced as expired with the grant, and never again.
            lapsed = await quality.http.post(
                "/v1/certificates", json=iso9001("IKM-001", "QMS-001-2021", "2021-02-01", "2024-01-31")
            )
            assert lapsed.json()["state"] == "expired"

            run = await quality.http.post("/internal/jobs/certificate-expiry")
            assert run.status_code == 200 and run.json() == {"on": "2027-03-01", "expiring": [], "expired": []}

            clock.advance(timedelta(days=17))  # 2027-03-18: 28 days left
            assert (await quality.http.post("/internal/jobs/certificate-expiry")).json()["expiring"] == [cert_id]
            assert (await quality.http.post("/internal/jobs/certificate-expiry")).json()["expiring"] == []
            assert (await quality.http.get(f"/v1/certificates/{cert_id}")).json()["state"] == "expiring"
            metrics = (await quality.http.get("/metrics")).text
            assert 'ceper_quality_certificates_expiring{kind="ISO9001"} 1.0' in metrics
            await outbox_drained(quality)

        # A restart runs the job at start: it finds nothing new to announce.
        async with run_quality(settings, clock) as quality:
            assert (await quality.http.post("/internal/jobs/certificate-expiry")).json() == {
                "on": "2027-03-18",
                "expiring": [],
                "expired": [],
            }
            clock.set(datetime(2027, 4, 15, 16, 59, tzinfo=UTC))  # 23:59 on the last valid day in Ceper
            assert (await quality.http.post("/internal/jobs/certificate-expiry")).json()["expired"] == []
            clock.advance(timedelta(minutes=1))
            assert (await quality.http.post("/internal/jobs/certificate-expiry")).json()["expired"] == [cert_id]
            await outbox_drained(quality)

        clock.advance(timedelta(days=40))
        async with run_quality(settings, clock) as quality:
            assert (await quality.http.post("/internal/jobs/certificate-expiry")).json() == {
                "on": "2027-05-26",
                "expiring": [],
                "expired": [],
            }
            assert (await quality.http.get(f"/v1/certificates/{cert_id}")).json()["state"] == "expired"
            async with quality.runtime.sessions() as session:  # type: ignore[union-attr]
                notices = (
                    await session.execute(
                        sa.select(
                            store.certificate_notices.c.certificate_id,
                            store.certificate_notices.c.notice,
                            store.certificate_notices.c.given_on,
                        )
                    )
                ).all()
            assert sorted(tuple(n) for n in notices) == sorted(
                [
                    (cert_id, "expiring", date(2027, 3, 18)),
                    (cert_id, "expired", date(2027, 4, 16)),
                    (lapsed.json()["id"], "expired", date(2027, 3, 1)),
                ]
            )

    events = await quality_events(settings)
    expiring = [e for e in events if e.type.name == "ceper.quality.certification_expiring.v1"]
    expired = [e for e in events if e.type.name == "ceper.quality.certification_expired.v1"]
    assert [(e.key, e.data.certificate_id, e.data.days_left, e.data.valid_until) for e in expiring] == [
        ("IKM-001", cert_id, 28, date(2027, 4, 15))
    ]
    assert sorted(e.data.certificate_id for e in expired) == sorted([cert_id, lapsed.json()["id"]])
    assert all(e.data.kind == "ISO9001" and e.key == "IKM-001" for e in expired)


async def test_eligibility_on_a_date_with_certificates_tkdn_and_status(make_settings):
    settings = make_settings()
    clock = FixedClock(START)
    async with run_services(settings, "capacity") as svc, run_quality(settings, clock) as quality:
        await register_foundries(
            svc["capacity"],
            quality,
            foundry("IKM-001", "BRAKE_BLOCK_COMPOSITE", name="CV Logam Batur"),
            foundry("IKM-002", "BRAKE_BLOCK_COMPOSITE"),
            foundry("IKM-003", "BRAKE_BLOCK_CAST_IRON"),
        )
        http = quality.http

        async def grant(code: str, kind: str, **extra) -> str:
            body = {
                "foundry_code": code,
                "kind": kind,
                "number": f"{kind}/{code}",
                "issuer": "Issuer",
                "valid_from": "2026-01-01",
                "valid_until": "2028-12-31",
                **extra,
            }
            answer = await http.post("/v1/certificates", json=body)
            assert answer.status_code == 201, answer.text
            return answer.json()["id"]

        sni_1 = await grant("IKM-001", "SNI", items=["BB-COMP-K", "BB-COMP-LL"])
        iso_1 = await grant("IKM-001", "ISO9001")
        tkdn_1 = await grant("IKM-001", "TKDN", tkdn_percent=47.5)
        await grant("IKM-002", "SNI", items=["BB-COMP-K"])
        await grant("IKM-002", "ISO9001")
        await grant("IKM-002", "TKDN", tkdn_percent=21.0)
        await grant("IKM-003", "SNI", items=["BB-CI"])
        await grant("IKM-003", "ISO9001")

        def verdicts(body: dict) -> dict:
            return {f["foundry_code"]: f for f in body["foundries"]}

        answer = await http.get("/v1/eligibility", params={"item": "BB-COMP-K"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["on"], body["required_certificates"], body["min_tkdn_percent"], body["eligible_count"]) == (
            "2027-03-01",
            ["SNI", "ISO9001"],
            25.0,
            1,
        )
        found = verdicts(body)
        assert found["IKM-001"]["eligible"] and found["IKM-001"]["certificate_ids"] == [sni_1, iso_1, tkdn_1]
        assert [r["message"] for r in found["IKM-002"]["reasons"]] == ["TKDN 21 % is below the required 25 %"]
        assert [r["rule"] for r in found["IKM-003"]["reasons"]] == ["product_family", "certificate", "tkdn"]
        relaxed = verdicts((await http.get("/v1/eligibility", params={"item": "BB-COMP-K", "min_tkdn": 0})).json())
        assert relaxed["IKM-002"]["eligible"] and not relaxed["IKM-003"]["eligible"]
        cast_iron = (await http.get("/v1/eligibility", params={"item": "BB-CI", "min_tkdn": 0, "eligible_only": True})).json()
        assert [f["foundry_code"] for f in cast_iron["foundries"]] == ["IKM-003"]
        with_workers = verdicts(
            (
                await http.get(
                    "/v1/eligibility", params=[("item", "BB-COMP-K"), ("certificates", "SNI"), ("certificates", "SKKNI")]
                )
            ).json()
        )
        assert [r["message"] for r in with_workers["IKM-001"]["reasons"]] == ["no SKKNI certificate valid on 2027-03-01"]

        # A revoked SNI stops IKM-001 from the day of revocation, not before.
        clock.advance(timedelta(days=10))
        revoked = await http.post(f"/v1/certificates/{sni_1}/revoke", json={"reason": "Product failed surveillance at B4T"})
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
        today = verdicts((await http.get("/v1/eligibility", params={"item": "BB-COMP-K"})).json())["IKM-001"]
        assert not today["eligible"] and "revoked: Product failed surveillance at B4T" in today["reasons"][0]["message"]
        assert verdicts((await http.get("/v1/eligibility", params={"item": "BB-COMP-K", "on": "2027-03-10"})).json())["IKM-001"][
            "eligible"
        ]
        assert verdicts((await http.get("/v1/eligibility", params={"item": "BB-COMP-K", "on": "2029-01-01"})).json())["IKM-001"][
            "reasons"
        ]

        # The QA officer suspends IKM-002: it drops out from today; the day before it was not suspended.
        pinned = await http.put(
            "/v1/foundries/IKM-002/quality-status/override",
            json={"status": "suspended", "reason": "Pressing without post-cure"},
            auth=as_("qa_officer"),
        )
        assert pinned.status_code == 200, pinned.text
        assert (pinned.json()["status"], pinned.json()["computed_status"], pinned.json()["overridden"]) == (
            "suspended",
            "good",
            True,
        )
        now_ = verdicts((await http.get("/v1/eligibility", params={"item": "BB-COMP-K", "min_tkdn": 0})).json())["IKM-002"]
        assert [r["rule"] for r in now_["reasons"]] == ["quality_status"] and now_["quality_status"] == "suspended"
        before = verdicts(
            (await http.get("/v1/eligibility", params={"item": "BB-COMP-K", "min_tkdn": 0, "on": "2027-03-10"})).json()
        )
        assert before["IKM-002"]["eligible"]
        assert [q["foundry_code"] for q in (await http.get("/v1/quality-status", params={"status": "suspended"})).json()] == [
            "IKM-002"
        ]
        released = await http.delete(
            "/v1/foundries/IKM-002/quality-status/override", params={"reason": "Post-cure oven installed"}, auth=as_("qa_officer")
        )
        assert released.status_code == 200 and (released.json()["status"], released.json()["overridden"]) == ("good", False)

        certificates = (await http.get("/v1/certificates", params={"foundry_code": "IKM-001"})).json()
        assert {c["kind"]: c["state"] for c in certificates} == {"SNI": "revoked", "ISO9001": "valid", "TKDN": "valid"}
        assert [c["id"] for c in (await http.get("/v1/certificates", params={"state": "revoked"})).json()] == [sni_1]
        await outbox_drained(quality)

    granted = await events_named(settings, "certificate_granted", 8)
    tkdn = [e.data for e in granted if e.data.kind == "TKDN" and e.key == "IKM-001"]
    assert tkdn[0].tkdn_percent == 47.5 and tkdn[0].items == [] and tkdn[0].certified_workers is None
    [revocation] = await events_named(settings, "certificate_revoked")
    assert (revocation.key, revocation.data.certificate_id, revocation.data.reason) == (
        "IKM-001",
        sni_1,
        "Product failed surveillance at B4T",
    )
    changes = await events_named(settings, "foundry_quality_status_changed", 2)
    assert [(e.key, e.data.status, e.data.previous_status, e.data.overridden) for e in changes] == [
        ("IKM-002", "suspended", "good", True),
        ("IKM-002", "good", "suspended", False),
    ]
    assert changes[0].data.reason == "QA officer: Pressing without post-cure"
