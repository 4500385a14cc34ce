"""Events owned by the quality service, on topic `ceper.quality.v1`, keyed by foundry code, lot code or item code."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from .fields import (
    INT32_MAX,
    AllocationId,
    CertificateId,
    DocumentNumber,
    FoundryCode,
    ItemCode,
    LotCode,
    OrderId,
    Percent,
    PositiveCount,
    ProductFamily,
)
from .registry import EventData, event


class CertificateKind(StrEnum):
    ISO9001 = "ISO9001"  # quality management system
    SNI = "SNI"  # SPPT-SNI product certificate: covers named items
    TKDN = "TKDN"  # local-content score, in percent
    SKKNI = "SKKNI"  # national work-competence standard: the foundry's certified workers


class QualityStatus(StrEnum):
    GOOD = "good"
    WATCH = "watch"
    SUSPENDED = "suspended"


@event("quality", "certificate_granted", key="foundry_code")
class CertificateGranted(EventData):
    """A foundry's certificate was recorded: from `valid_from` to `valid_until` (both inclusive) it counts."""

    certificate_id: CertificateId
    foundry_code: FoundryCode
    kind: CertificateKind
    number: DocumentNumber = Field(examples=["SPPT-SNI/0123/2026"])
    issuer: str = Field(max_length=200, examples=["LSPro B4T"])
    valid_from: date
    valid_until: date
    tkdn_percent: float | None = Field(default=None, ge=0, le=100, description="Local-content score of a TKDN certificate")
    certified_workers: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="Certified workers of an SKKNI certificate"
    )
    items: list[ItemCode] = Field(
        default_factory=list, description="Item codes an SNI product certificate covers; empty for other kinds"
    )
    granted_at: datetime


@event("quality", "certificate_revoked", key="foundry_code")
class CertificateRevoked(EventData):
    """A certificate no longer counts from `revoked_at` on, whatever its validity dates say."""

    certificate_id: CertificateId
    foundry_code: FoundryCode
    kind: CertificateKind
    reason: str = Field(max_length=500)
    revoked_at: datetime


@event("quality", "certification_expiring", key="foundry_code")
class CertificationExpiring(EventData):
    """A certificate lapses soon (published once per certificate, when it first comes within the warning period)."""

    certificate_id: CertificateId
    foundry_code: FoundryCode
    kind: CertificateKind
    valid_until: date
    days_left: int = Field(ge=0, le=INT32_MAX)


@event("quality", "certification_expired", key="foundry_code")
class CertificationExpired(EventData):
    """A certificate's validity ended: it no longer counts after `valid_until` (published once per certificate)."""

    certificate_id: CertificateId
    foundry_code: FoundryCode
    kind: CertificateKind
    valid_until: date


@event("quality", "lot_registered", key="lot_code")
class LotRegistered(EventData):
    """A produced lot was registered for testing against the specification version in force."""

    lot_code: LotCode
    foundry_code: FoundryCode
    item_code: ItemCode
    quantity: int = Field(gt=0, le=INT32_MAX, description="Units in the lot")
    order_id: OrderId | None = None
    allocation_id: AllocationId | None = Field(default=None, description="The order allocation this production serves")
    spec_version: PositiveCount
    registered_at: datetime


@event("quality", "lot_passed", key="lot_code")
class LotPassed(EventData):
    """A lot's test result met its sampling plan: the quantity may be shipped."""

    lot_code: LotCode
    foundry_code: FoundryCode
    item_code: ItemCode
    quantity: PositiveCount
    order_id: OrderId | None = None
    allocation_id: AllocationId | None = None
    report_number: DocumentNumber
    laboratory: str = Field(max_length=200, examples=["B4T Bandung"])
    decided_at: datetime


class LotFailureReason(BaseModel):
    parameter: str = Field(examples=["friction_coefficient"])
    rule: str = Field(examples=["0.25 ± 0.04"])
    observed: str = Field(description="The offending values as measured", examples=["0.19, 0.31"])
    message: str


@event("quality", "lot_failed", key="lot_code")
class LotFailed(EventData):
    """A lot's test result broke its sampling plan: the quantity may not be shipped and must be made again."""

    lot_code: LotCode
    foundry_code: FoundryCode
    item_code: ItemCode
    quantity: PositiveCount
    order_id: OrderId | None = None
    allocation_id: AllocationId | None = None
    report_number: DocumentNumber
    laboratory: str = Field(max_length=200)
    decided_at: datetime
    reasons: list[LotFailureReason] = Field(description="One entry per parameter with nonconforming samples")


@event("quality", "foundry_quality_status_changed", key="foundry_code")
class FoundryQualityStatusChanged(EventData):
    """A foundry's quality status moved, or a QA officer pinned or released it."""

    foundry_code: FoundryCode
    status: QualityStatus
    previous_status: QualityStatus
    pass_rate: float = Field(ge=0, le=1, description="Rolling pass rate of recent lots, with a prior")
    overridden: bool = Field(description="True while a QA officer's override decides the status")
    reason: str = Field(max_length=1000)
    changed_at: datetime


@event("quality", "item_published", key="item_code")
class ItemPublished(EventData):
    """A version of an item of the catalogue, whole (state transfer): what makes it, its unit, its minimum lot per
    foundry-week and what its makers must hold whatever an order says. A higher version replaces a lower one."""

    item_code: ItemCode
    version: PositiveCount
    name_id: str = Field(min_length=1, max_length=200, examples=["Blok rem komposit tipe K"], description="Name in Indonesian")
    name_en: str = Field(min_length=1, max_length=200, examples=["Composite brake block, type K"], description="Name in English")
    product_family: ProductFamily
    unit: str = Field(min_length=1, max_length=10, examples=["pcs"])
    min_lot: PositiveCount = Field(description="The fewest units worth making in one foundry-week")
    required_certificates: list[CertificateKind] = Field(default_factory=list, description="What every maker must hold")
    min_tkdn_percent: Percent | None = Field(default=None, description="The makers' TKDN minimum, if any")
    retired: bool = Field(default=False, description="True when the item is no longer ordered; earlier orders keep it")
    published_at: datetime
