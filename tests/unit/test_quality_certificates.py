"""Certificates, their expiry notices and eligibility: the pure quality domain."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from services.quality.domain import (
    Candidate,
    Certificate,
    CertificateState,
    Notice,
    Rejected,
    StateConflict,
    expiry_notices,
    grant_certificate,
    judge_eligibility,
    revoke_certificate,
)
from shared.events.quality import (
    CertificateGranted,
    CertificateKind,
    CertificateRevoked,
    CertificationExpired,
    CertificationExpiring,
    QualityStatus,
)
from tests.fixtures.catalogue import QUALITY_CATALOGUE as CATALOGUE

NOW = datetime(2027, 3, 1, 3, 0, tzinfo=UTC)
TODAY = date(2027, 3, 1)
COMPOSITE = ("BRAKE_BLOCK_COMPOSITE",)
K = CATALOGUE["BB-COMP-K"]


def certificate(
    kind: CertificateKind = CertificateKind.ISO9001, *, until: date = date(2028, 6, 30), foundry: str = "IKM-001", **extra
) -> Certificate:
    defaults = {
        CertificateKind.SNI: {"items": ["BB-COMP-K"]},
        CertificateKind.TKDN: {"tkdn_percent": 42.5},
        CertificateKind.SKKNI: {"certified_workers": 12},
    }.get(kind, {})
    cert, _ = grant_certificate(
        f"cert_{kind.value.lower()}_{foundry}",
        foundry,
        kind,
        f"{kind.value}/{foundry}",
        "LSPro B4T",
        until - timedelta(days=700),
        until,
        NOW,
        **{**defaults, **extra},
        catalogue=CATALOGUE,
    )
    return cert


def violations(exc: pytest.ExceptionInfo[Rejected]) -> dict[str, str]:
    return {v.field: v.message for v in exc.value.violations}


# --- granting and revoking --------------------------------------------------------------------------------------


def test_granting_returns_the_certificate_and_its_event():
    cert, event = grant_certificate(
        "cert_1",
        "IKM-001",
        CertificateKind.SNI,
        " SPPT-SNI/0123 ",
        "LSPro B4T",
        date(2026, 3, 1),
        date(2030, 2, 28),
        NOW,
        items=["BB-COMP-K", "BB-COMP-LL", "BB-COMP-K"],
        catalogue=CATALOGUE,
    )
    assert cert.items == ("BB-COMP-K", "BB-COMP-LL") and cert.number == "SPPT-SNI/0123"
    assert event == CertificateGranted(
        certificate_id="cert_1",
        foundry_code="IKM-001",
        kind=CertificateKind.SNI,
        number="SPPT-SNI/0123",
        issuer="LSPro B4T",
        valid_from=date(2026, 3, 1),
        valid_until=date(2030, 2, 28),
        tkdn_percent=None,
        certified_workers=None,
        items=["BB-COMP-K", "BB-COMP-LL"],
        granted_at=NOW,
    )


@pytest.mark.parametrize(
    "kind, changes, field, message",
    [
        (CertificateKind.TKDN, {}, "tkdn_percent", "states its local-content percentage"),
        (CertificateKind.TKDN, {"tkdn_percent": 140.0}, "tkdn_percent", "between 0 and 100"),
        (CertificateKind.ISO9001, {"tkdn_percent": 40.0}, "tkdn_percent", "only a TKDN"),
        (CertificateKind.SKKNI, {}, "certified_workers", "how many workers"),
        (CertificateKind.SKKNI, {"certified_workers": 0}, "certified_workers", "at least 1"),
        (CertificateKind.SNI, {}, "items", "names the items"),
        (CertificateKind.SNI, {"items": ["BB-RUBBER"]}, "items.0", "unknown item"),
        (CertificateKind.ISO9001, {"items": ["BB-CI"]}, "items", "only an SNI"),
        (CertificateKind.ISO9001, {"valid_until": date(2025, 1, 1)}, "valid_until", "not be before valid_from"),
        (CertificateKind.ISO9001, {"valid_until": date(2029, 3, 2)}, "valid_until", "at most 3 years"),
        (CertificateKind.ISO9001, {"foundry_code": "IKM-1"}, "foundry_code", "look like IKM-001"),
        (CertificateKind.ISO9001, {"number": "  "}, "number", "must not be empty"),
    ],
)
def test_granting_refuses_what_a_certificate_cannot_be(kind, changes, field, message):
    args = {"foundry_code": "IKM-001", "number": "N-1", "valid_until": date(2029, 3, 1), **changes}
    with pytest.raises(Rejected) as refused:
        grant_certificate(
            "cert_1",
            args.pop("foundry_code"),
            kind,
            args.pop("number"),
            "Issuer",
            date(2026, 3, 1),
            args.pop("valid_until"),
            NOW,
            **args,
            catalogue=CATALOGUE,
        )
    assert message in violations(refused)[field]


def test_revoking_states_the_reason_and_happens_once():
    cert = certificate()
    later = NOW + timedelta(days=10)
    revoked, event = revoke_certificate(cert, " Surveillance audit missed ", later)
    assert event == CertificateRevoked(
        certificate_id=cert.id,
        foundry_code="IKM-001",
        kind=CertificateKind.ISO9001,
        reason="Surveillance audit missed",
        revoked_at=later,
    )
    with pytest.raises(StateConflict, match="already revoked"):
        revoke_certificate(revoked, "again", later)
    with pytest.raises(Rejected):
        revoke_certificate(cert, "  ", later)


def test_validity_counts_both_end_days_and_stops_at_revocation():
    cert = certificate(until=date(2027, 3, 31))
    assert cert.is_valid_on(cert.valid_from) and cert.is_valid_on(date(2027, 3, 31))
    assert not cert.is_valid_on(date(2027, 4, 1)) and not cert.is_valid_on(cert.valid_from - timedelta(days=1))
    revoked, _ = revoke_certificate(cert, "fraud", datetime(2027, 3, 10, 2, 0, tzinfo=UTC))
    assert revoked.is_valid_on(date(2027, 3, 9)) and not revoked.is_valid_on(date(2027, 3, 10))
    # Revoked at 20:00 UTC is the next morning in Ceper.
    late, _ = revoke_certificate(cert, "fraud", datetime(2027, 3, 10, 20, 0, tzinfo=UTC))
    assert late.is_valid_on(date(2027, 3, 10)) and not late.is_valid_on(date(2027, 3, 11))


def test_state_today():
    cert = certificate(until=date(2027, 3, 31))
    assert cert.state_on(date(2027, 1, 1)) is CertificateState.VALID
    assert cert.state_on(date(2027, 3, 1)) is CertificateState.EXPIRING
    assert cert.state_on(date(2027, 4, 1)) is CertificateState.EXPIRED
    assert cert.state_on(cert.valid_from - timedelta(days=1)) is CertificateState.PENDING
    revoked, _ = revoke_certificate(cert, "fraud", NOW)
    assert revoked.state_on(TODAY) is CertificateState.REVOKED


# --- expiry notices ---------------------------------------------------------------------------------------------


def test_expiry_notices_come_once_each_at_their_time():
    cert = certificate(CertificateKind.SNI, until=date(2027, 3, 31))
    given: set[Notice] = set()
    assert expiry_notices(cert, given, date(2027, 2, 28)) == []  # 31 days left
    [(notice, warning)] = expiry_notices(cert, given, date(2027, 3, 1))
    assert notice is Notice.EXPIRING
    assert warning == CertificationExpiring(
        certificate_id=cert.id, foundry_code="IKM-001", kind=CertificateKind.SNI, valid_until=date(2027, 3, 31), days_left=30
    )
    given.add(notice)
    assert expiry_notices(cert, given, date(2027, 3, 2)) == []
    assert expiry_notices(cert, given, date(2027, 3, 31)) == []  # the last valid day
    [(notice, expired)] = expiry_notices(cert, given, date(2027, 4, 1))
    assert notice is Notice.EXPIRED
    assert expired == CertificationExpired(
        certificate_id=cert.id, foundry_code="IKM-001", kind=CertificateKind.SNI, valid_until=date(2027, 3, 31)
    )
    given.add(notice)
    assert expiry_notices(cert, given, date(2027, 4, 2)) == []
    assert expiry_notices(cert, given, date(2030, 1, 1)) == []


def test_a_certificate_first_seen_lapsed_gets_only_its_expiry():
    cert = certificate(until=date(2027, 1, 15))
    assert [n for n, _ in expiry_notices(cert, set(), TODAY)] == [Notice.EXPIRED]
    # One that enters the warning period on its last day is warned with no days left.
    last_day = certificate(until=TODAY)
    [(notice, event)] = expiry_notices(last_day, set(), TODAY)
    assert notice is Notice.EXPIRING and event.days_left == 0


def test_a_revoked_certificate_gets_no_expiry_notices():
    cert, _ = revoke_certificate(certificate(until=date(2027, 3, 10)), "fraud", NOW)
    assert expiry_notices(cert, set(), TODAY) == [] and expiry_notices(cert, set(), date(2027, 5, 1)) == []


def test_the_warning_period_is_configurable():
    cert = certificate(until=date(2027, 3, 15))
    assert expiry_notices(cert, set(), TODAY, warning_days=7) == []
    assert [n for n, _ in expiry_notices(cert, set(), TODAY, warning_days=14)] == [Notice.EXPIRING]


# --- eligibility ------------------------------------------------------------------------------------------------


def candidate(code: str = "IKM-001", *certs: Certificate, families=COMPOSITE, status=QualityStatus.GOOD) -> Candidate:
    return Candidate(code, f"CV {code}", tuple(families), tuple(certs), status)


def full_set(code: str = "IKM-001", tkdn: float = 42.5, until: date = date(2028, 6, 30)) -> tuple[Certificate, ...]:
    return (
        certificate(CertificateKind.SNI, foundry=code, until=until, items=["BB-COMP-K"]),
        certificate(CertificateKind.ISO9001, foundry=code, until=until),
        certificate(CertificateKind.TKDN, foundry=code, until=until, tkdn_percent=tkdn),
    )


REQUIRED = (CertificateKind.SNI, CertificateKind.ISO9001)


def test_a_foundry_with_valid_certificates_and_enough_tkdn_is_eligible():
    certs = full_set()
    [verdict] = judge_eligibility(K, TODAY, [candidate("IKM-001", *certs)], REQUIRED, 25)
    assert verdict.eligible and verdict.reasons == ()
    assert verdict.certificate_ids == tuple(c.id for c in certs) and verdict.tkdn_percent == 42.5


def test_every_reason_why_not_is_given():
    sni_for_cast_iron = certificate(CertificateKind.SNI, foundry="IKM-002", items=["BB-CI"])
    lapsed_iso = certificate(CertificateKind.ISO9001, foundry="IKM-002", until=date(2027, 2, 1))
    low_tkdn = certificate(CertificateKind.TKDN, foundry="IKM-002", tkdn_percent=21.0)
    [verdict] = judge_eligibility(
        K,
        TODAY,
        [
            candidate(
                "IKM-002",
                sni_for_cast_iron,
                lapsed_iso,
                low_tkdn,
                families=("BRAKE_BLOCK_CAST_IRON",),
                status=QualityStatus.SUSPENDED,
            )
        ],
        REQUIRED,
        25,
    )
    assert not verdict.eligible
    assert [(r.rule, r.message) for r in verdict.reasons] == [
        ("product_family", "does not make BRAKE_BLOCK_COMPOSITE"),
        ("certificate", "no SNI certificate covering BB-COMP-K valid on 2027-03-01"),
        ("certificate", f"no ISO9001 certificate valid on 2027-03-01 ({lapsed_iso.number} expired 2027-02-01)"),
        ("tkdn", "TKDN 21 % is below the required 25 %"),
        ("quality_status", "quality status is suspended"),
    ]


def test_eligibility_is_judged_on_the_date_asked():
    certs = full_set(until=date(2027, 3, 31))
    revoked_sni, _ = revoke_certificate(certs[0], "product failed surveillance", datetime(2027, 3, 20, 3, 0, tzinfo=UTC))
    members = [candidate("IKM-001", revoked_sni, *certs[1:])]
    assert judge_eligibility(K, date(2027, 3, 19), members, REQUIRED, 25)[0].eligible
    later = judge_eligibility(K, date(2027, 3, 20), members, REQUIRED, 25)[0]
    assert [r.message for r in later.reasons] == [
        f"no SNI certificate covering BB-COMP-K valid on 2027-03-20 ({revoked_sni.number} revoked: product failed surveillance)"
    ]
    after_expiry = judge_eligibility(K, date(2027, 4, 1), [candidate("IKM-001", *certs)], REQUIRED, 25)[0]
    assert {r.rule for r in after_expiry.reasons} == {"certificate", "tkdn"}


def test_requirements_are_data_the_asker_may_change():
    certs = full_set(tkdn=30)
    members = [candidate("IKM-001", *certs[:2])]  # no TKDN certificate at all
    assert [r.rule for r in judge_eligibility(K, TODAY, members, REQUIRED, 25)[0].reasons] == ["tkdn"]
    assert judge_eligibility(K, TODAY, members, REQUIRED, 0)[0].eligible
    with_tkdn = [candidate("IKM-001", *certs)]
    assert not judge_eligibility(K, TODAY, with_tkdn, REQUIRED, 40)[0].eligible
    needs_workers = judge_eligibility(K, TODAY, with_tkdn, (*REQUIRED, CertificateKind.SKKNI), 25)[0]
    assert [r.message for r in needs_workers.reasons] == ["no SKKNI certificate valid on 2027-03-01"]
    skkni = certificate(CertificateKind.SKKNI)
    assert judge_eligibility(K, TODAY, [candidate("IKM-001", *certs, skkni)], (*REQUIRED, CertificateKind.SKKNI), 25)[0].eligible


def test_watch_status_does_not_stop_a_foundry():
    verdict = judge_eligibility(K, TODAY, [candidate("IKM-001", *full_set(), status=QualityStatus.WATCH)], REQUIRED, 25)[0]
    assert verdict.eligible and verdict.status is QualityStatus.WATCH


def test_a_certificate_valid_only_later_is_named():
    future = replace(certificate(CertificateKind.ISO9001), valid_from=date(2027, 6, 1))
    [verdict] = judge_eligibility(K, TODAY, [candidate("IKM-001", full_set()[0], future, full_set()[2])], REQUIRED, 25)
    assert verdict.reasons[0].message.endswith(f"({future.number} valid only from 2027-06-01)")
