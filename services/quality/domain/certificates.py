"""Certificates of member foundries (ISO 9001, SNI, TKDN, SKKNI) with their validity, and the notices of their expiry."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum

from shared.events.quality import (
    CertificateGranted,
    CertificateKind,
    CertificateRevoked,
    CertificationExpired,
    CertificationExpiring,
)
from shared.weeks import local_date

from .errors import Rejected, StateConflict, Violation
from .items import Catalogue, unknown_item

FOUNDRY_CODE = re.compile(r"^IKM-\d{3,4}$")


class CertificateState(StrEnum):
    PENDING = "pending"  # not yet valid
    VALID = "valid"
    EXPIRING = "expiring"  # valid, but lapses within the warning period
    EXPIRED = "expired"
    REVOKED = "revoked"


# Longest validity each kind is issued for (ISO 9001 3 years, SPPT-SNI 4, TKDN 5, SKKNI 5): longer is a typo.
MAX_VALIDITY_YEARS: dict[CertificateKind, int] = {
    CertificateKind.ISO9001: 3,
    CertificateKind.SNI: 4,
    CertificateKind.TKDN: 5,
    CertificateKind.SKKNI: 5,
}
EXPIRY_WARNING_DAYS = 30


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


@dataclass(frozen=True)
class Certificate:
    id: str
    foundry_code: str
    kind: CertificateKind
    number: str
    issuer: str
    valid_from: date
    valid_until: date  # inclusive: the certificate still counts on this day
    tkdn_percent: float | None
    certified_workers: int | None
    items: tuple[str, ...]
    granted_at: datetime
    revoked_at: datetime | None = None
    revoke_reason: str | None = None

    def is_valid_on(self, day: date) -> bool:
        if not self.valid_from <= day <= self.valid_until:
            return False
        # A revoked certificate still counted before the day it was revoked.
        return self.revoked_at is None or day < local_date(self.revoked_at)

    def state_on(self, today: date, warning_days: int = EXPIRY_WARNING_DAYS) -> CertificateState:
        if self.revoked_at is not None and today >= local_date(self.revoked_at):
            return CertificateState.REVOKED
        if today < self.valid_from:
            return CertificateState.PENDING
        if today > self.valid_until:
            return CertificateState.EXPIRED
        if (self.valid_until - today).days <= warning_days:
            return CertificateState.EXPIRING
        return CertificateState.VALID

    def covers(self, item_code: str) -> bool:
        return self.kind is not CertificateKind.SNI or item_code in self.items


def grant_certificate(
    certificate_id: str,
    foundry_code: str,
    kind: CertificateKind,
    number: str,
    issuer: str,
    valid_from: date,
    valid_until: date,
    now: datetime,
    *,
    tkdn_percent: float | None = None,
    certified_workers: int | None = None,
    items: Sequence[str] = (),
    catalogue: Catalogue | None = None,
) -> tuple[Certificate, CertificateGranted]:
    """`catalogue`: the items an SNI certificate may cover (needed only for SNI)."""
    found: list[Violation] = []
    if not FOUNDRY_CODE.fullmatch(foundry_code):
        found.append(Violation("foundry_code", f"foundry code {foundry_code!r} must look like IKM-001"))
    if not number.strip():
        found.append(Violation("number", "must not be empty"))
    if not issuer.strip():
        found.append(Violation("issuer", "must not be empty"))
    if valid_until < valid_from:
        found.append(Violation("valid_until", "must not be before valid_from"))
    elif valid_until > _add_years(valid_from, MAX_VALIDITY_YEARS[kind]):
        found.append(
            Violation("valid_until", f"a {kind.value} certificate is valid for at most {MAX_VALIDITY_YEARS[kind]} years")
        )
    if kind is CertificateKind.TKDN:
        if tkdn_percent is None:
            found.append(Violation("tkdn_percent", "a TKDN certificate states its local-content percentage"))
        elif not (math.isfinite(tkdn_percent) and 0 <= tkdn_percent <= 100):
            found.append(Violation("tkdn_percent", "must be between 0 and 100"))
    elif tkdn_percent is not None:
        found.append(Violation("tkdn_percent", "only a TKDN certificate has a percentage"))
    if kind is CertificateKind.SKKNI:
        if certified_workers is None:
            found.append(Violation("certified_workers", "an SKKNI certificate states how many workers are certified"))
        elif certified_workers < 1:
            found.append(Violation("certified_workers", "must be at least 1"))
    elif certified_workers is not None:
        found.append(Violation("certified_workers", "only an SKKNI certificate counts certified workers"))
    if kind is CertificateKind.SNI:
        if not items:
            found.append(Violation("items", "an SNI product certificate names the items it covers"))
        for i, item in enumerate(items):
            if item not in (catalogue or {}):
                found.append(Violation(f"items.{i}", unknown_item(item, catalogue or {})))
    elif items:
        found.append(Violation("items", "only an SNI product certificate covers items"))
    if found:
        raise Rejected(found)
    certificate = Certificate(
        id=certificate_id,
        foundry_code=foundry_code,
        kind=kind,
        number=number.strip(),
        issuer=issuer.strip(),
        valid_from=valid_from,
        valid_until=valid_until,
        tkdn_percent=tkdn_percent,
        certified_workers=certified_workers,
        items=tuple(dict.fromkeys(items)),
        granted_at=now,
    )
    return certificate, CertificateGranted(
        certificate_id=certificate.id,
        foundry_code=certificate.foundry_code,
        kind=certificate.kind,
        number=certificate.number,
        issuer=certificate.issuer,
        valid_from=certificate.valid_from,
        valid_until=certificate.valid_until,
        tkdn_percent=certificate.tkdn_percent,
        certified_workers=certificate.certified_workers,
        items=list(certificate.items),
        granted_at=now,
    )


def revoke_certificate(certificate: Certificate, reason: str, now: datetime) -> tuple[Certificate, CertificateRevoked]:
    if not reason.strip():
        raise Rejected([Violation("reason", "say why the certificate is revoked")])
    if certificate.revoked_at is not None:
        raise StateConflict(f"certificate {certificate.id} was already revoked at {certificate.revoked_at.isoformat()}")
    revoked = replace(certificate, revoked_at=now, revoke_reason=reason.strip())
    return revoked, CertificateRevoked(
        certificate_id=certificate.id,
        foundry_code=certificate.foundry_code,
        kind=certificate.kind,
        reason=reason.strip(),
        revoked_at=now,
    )


class Notice(StrEnum):
    EXPIRING = "expiring"
    EXPIRED = "expired"


def expiry_notices(
    certificate: Certificate, already: set[Notice], today: date, warning_days: int = EXPIRY_WARNING_DAYS
) -> list[tuple[Notice, CertificationExpiring | CertificationExpired]]:
    """The notices a certificate is due today and has not had yet; each is given at most once in its life."""
    if certificate.revoked_at is not None:
        return []  # revocation was announced; an expiry of a revoked certificate tells nobody anything
    if today > certificate.valid_until:
        if Notice.EXPIRED in already:
            return []
        # A certificate first seen already lapsed gets only the expiry: a warning after the fact is noise.
        return [
            (
                Notice.EXPIRED,
                CertificationExpired(
                    certificate_id=certificate.id,
                    foundry_code=certificate.foundry_code,
                    kind=certificate.kind,
                    valid_until=certificate.valid_until,
                ),
            )
        ]
    days_left = (certificate.valid_until - today).days
    if days_left <= warning_days and Notice.EXPIRING not in already and Notice.EXPIRED not in already:
        return [
            (
                Notice.EXPIRING,
                CertificationExpiring(
                    certificate_id=certificate.id,
                    foundry_code=certificate.foundry_code,
                    kind=certificate.kind,
                    valid_until=certificate.valid_until,
                    days_left=days_left,
                ),
            )
        ]
    return []
