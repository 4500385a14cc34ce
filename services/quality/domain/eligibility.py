"""Eligibility: which foundries may make an item on a date (family, certificates, TKDN, quality status), and why
the others may not."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from shared.events.quality import CertificateKind, QualityStatus
from shared.weeks import local_date

from .certificates import Certificate
from .items import Item
from .specifications import figure


@dataclass(frozen=True)
class Candidate:
    foundry_code: str
    name: str
    product_families: tuple[str, ...]
    certificates: tuple[Certificate, ...]
    status: QualityStatus


@dataclass(frozen=True)
class Reason:
    rule: str  # product_family | certificate | tkdn | quality_status
    message: str


@dataclass(frozen=True)
class Verdict:
    foundry_code: str
    name: str
    eligible: bool
    reasons: tuple[Reason, ...]
    certificate_ids: tuple[str, ...]  # the valid certificates the verdict rests on
    tkdn_percent: float | None
    status: QualityStatus


def judge_eligibility(
    item: Item,
    on: date,
    candidates: Iterable[Candidate],
    required: Sequence[CertificateKind],
    min_tkdn_percent: float,
) -> list[Verdict]:
    """Which foundries may make the item on the date, and for the others every reason why not."""
    item_code = item.code
    verdicts: list[Verdict] = []
    for c in candidates:
        reasons: list[Reason] = []
        used: list[str] = []
        if item.product_family not in c.product_families:
            reasons.append(Reason("product_family", f"does not make {item.product_family}"))
        valid = [cert for cert in c.certificates if cert.is_valid_on(on)]
        for kind in dict.fromkeys(required):
            holding = [cert for cert in valid if cert.kind is kind and cert.covers(item_code)]
            if holding:
                used.append(max(holding, key=lambda cert: cert.valid_until).id)
            else:
                covering = f" covering {item_code}" if kind is CertificateKind.SNI else ""
                reasons.append(
                    Reason(
                        "certificate",
                        f"no {kind.value} certificate{covering} valid on {on.isoformat()}{_lapse_hint(c, kind, item_code, on)}",
                    )
                )
        tkdn = [cert for cert in valid if cert.kind is CertificateKind.TKDN]
        best = max(tkdn, key=lambda cert: cert.tkdn_percent or 0.0) if tkdn else None
        tkdn_percent = best.tkdn_percent if best else None
        if min_tkdn_percent > 0:
            if best is None:
                reasons.append(
                    Reason(
                        "tkdn",
                        f"no TKDN certificate valid on {on.isoformat()}; at least {figure(min_tkdn_percent)} % is required",
                    )
                )
            elif (best.tkdn_percent or 0.0) < min_tkdn_percent:
                reasons.append(
                    Reason(
                        "tkdn", f"TKDN {figure(best.tkdn_percent or 0.0)} % is below the required {figure(min_tkdn_percent)} %"
                    )
                )
            else:
                used.append(best.id)
        if c.status is QualityStatus.SUSPENDED:
            reasons.append(Reason("quality_status", "quality status is suspended"))
        verdicts.append(
            Verdict(c.foundry_code, c.name, not reasons, tuple(reasons), tuple(dict.fromkeys(used)), tkdn_percent, c.status)
        )
    return verdicts


def _lapse_hint(candidate: Candidate, kind: CertificateKind, item_code: str, on: date) -> str:
    """Says what happened to the certificate the foundry did hold, which is what a planner asks next."""
    held = [cert for cert in candidate.certificates if cert.kind is kind and cert.covers(item_code)]
    if not held:
        return ""
    latest = max(held, key=lambda cert: cert.valid_until)
    if latest.revoked_at is not None and local_date(latest.revoked_at) <= on:
        return f" ({latest.number} revoked: {latest.revoke_reason})"
    if latest.valid_until < on:
        return f" ({latest.number} expired {latest.valid_until.isoformat()})"
    if latest.valid_from > on:
        return f" ({latest.number} valid only from {latest.valid_from.isoformat()})"
    return ""
