"""Quality's business metrics on `/metrics`: lots by outcome, pass rate, expiring certificates, foundry statuses.

Counters move when a decision commits; gauges are recomputed from the database (after decisions and
certificate changes, and by the periodic expiry job), so every replica reports the same figures.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.quality import CertificateKind, QualityStatus

from . import store
from .domain import LotStatus

LOTS = Counter("ceper_quality_lots", "Lots decided, by outcome (passed/failed) and item", ["outcome", "item"])
PASS_RATE = Gauge("ceper_quality_pass_rate", "Share of lots decided in the last 90 days that passed", ["item"])
CERTIFICATES_EXPIRING = Gauge(
    "ceper_quality_certificates_expiring",
    "Valid certificates that lapse within the warning period (CEPER_QUALITY_EXPIRY_WARNING_DAYS, 30 by default)",
    ["kind"],
)
FOUNDRIES = Gauge("ceper_quality_foundries", "Member foundries by quality status", ["status"])

PASS_RATE_WINDOW = timedelta(days=90)


def lot_decided(item_code: str, status: LotStatus) -> None:
    LOTS.labels(status.value, item_code).inc()


async def refresh(session: AsyncSession, now: datetime, today: date, warning_days: int, default_status: QualityStatus) -> None:
    """`default_status` is the status of a foundry with no quality record yet."""
    decided = await store.decided_lots_by_item(session, now - PASS_RATE_WINDOW)
    for item in sorted({code for code, _ in decided}):
        passed = decided.get((item, LotStatus.PASSED.value), 0)
        failed = decided.get((item, LotStatus.FAILED.value), 0)
        if passed + failed:
            PASS_RATE.labels(item).set(passed / (passed + failed))
    expiring = await store.expiring_by_kind(session, today, today + timedelta(days=warning_days))
    for kind in CertificateKind:
        CERTIFICATES_EXPIRING.labels(kind.value).set(expiring.get(kind.value, 0))
    known, by_status = await store.status_counts(session)
    without_record = max(0, known - sum(by_status.values()))
    for status in QualityStatus:
        count = by_status.get(status.value, 0) + (without_record if status is default_status else 0)
        FOUNDRIES.labels(status.value).set(count)
