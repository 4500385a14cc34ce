"""Quality's HTTP API: the item catalogue, specifications, certificates, lots and results, quality status, eligibility, traceability.

Each route names who may call it. A laboratory records results and reads what it needs to test; a member foundry
registers and sees only its own lots, certificates and status (another member's answers 404); only QA officers
pin a quality status.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from shared import clock
from shared.audit_api import trail_router
from shared.auth import Forbidden, Principal, require
from shared.events.quality import CertificateKind, QualityStatus
from shared.http import FieldError, NotFound, Unprocessable, problem_responses
from shared.idempotency import Command, OptionalIdempotencyKey, mark_replayed
from shared.paging import Page, Paging, paging_query
from shared.projections import FoundryView, list_foundries
from shared.roles import Role
from shared.service import Runtime, Sessions

from . import handlers, store
from .domain import (
    UNITS,
    Catalogue,
    Certificate,
    CertificateState,
    Evaluation,
    Finding,
    FoundryQuality,
    Item,
    ItemTerms,
    Lot,
    LotStatus,
    Parameter,
    RuleKind,
    SamplingRule,
    Specification,
    Verdict,
)
from .sampling import AQLS, INSPECTION_LEVELS, SamplingError, SamplingPlan, single_sampling_plan

router = APIRouter(prefix="/v1")
internal = APIRouter(prefix="/internal", tags=["operations"], dependencies=[Depends(require(Role.ADMIN))])

# Who may call: staff see every member; a foundry itself; a laboratory what it tests.
StaffReader = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER, Role.QA_OFFICER))]
MemberReader = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER, Role.QA_OFFICER, Role.FOUNDRY))]
TestReader = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER, Role.QA_OFFICER, Role.LAB, Role.FOUNDRY))]
QualityOfficer = Annotated[Principal, Depends(require(Role.ADMIN, Role.QA_OFFICER))]
LotRegistrar = Annotated[Principal, Depends(require(Role.ADMIN, Role.QA_OFFICER, Role.FOUNDRY))]
ResultRecorder = Annotated[Principal, Depends(require(Role.ADMIN, Role.QA_OFFICER, Role.LAB))]
StatusOverrider = Annotated[Principal, Depends(require(Role.QA_OFFICER))]
AUTH_ERRORS = (401, 403)


def _for_foundry(caller: Principal, code: str, missing: str) -> None:
    """404 when a foundry asks about another member, worded as for a thing that does not exist."""
    if Role.FOUNDRY in caller.roles and not caller.acts_for_foundry(code):
        raise NotFound(missing)


def _scoped(caller: Principal, requested: str | None) -> tuple[bool, str | None]:
    """The member a list is narrowed to: a foundry sees only itself. False when it asked for another member."""
    if Role.FOUNDRY not in caller.roles or caller.has_any((Role.ADMIN, Role.PLANNER, Role.QA_OFFICER, Role.LAB)):
        return True, requested
    if requested is not None and requested != caller.foundry_code:
        return False, None
    return True, caller.foundry_code


FoundryCode = Annotated[str, Field(pattern=r"^IKM-\d{3,4}$", examples=["IKM-001"])]
InspectionLevel = Literal["S-1", "S-2", "S-3", "S-4", "I", "II", "III"]
assert set(INSPECTION_LEVELS) == set(InspectionLevel.__args__)  # type: ignore[attr-defined]


# --- projections -------------------------------------------------------------------------------------------


@router.get(
    "/foundries",
    response_model=list[FoundryView],
    tags=["projections"],
    summary="Member foundries as quality knows them (from capacity's events)",
    responses=problem_responses(*AUTH_ERRORS),
)
async def list_known_foundries(caller: StaffReader, sessions: Sessions) -> list[FoundryView]:
    async with sessions() as session:
        return await list_foundries(session, store.foundry_projection)


# --- specifications and sampling ----------------------------------------------------------------------------


class ParameterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(examples=["friction_coefficient"], description="lower_snake_case; the key of this parameter in result rows")
    name: str = Field(min_length=1, max_length=200, examples=["Friction coefficient μ (mean)"])
    unit: str = Field(default="", max_length=20, examples=["g/cm³"])
    rule: RuleKind
    minimum: float | None = None
    maximum: float | None = None
    target: float | None = None
    tolerance: float | None = None
    possible_min: float | None = Field(
        default=None, description="Below this a measurement is impossible and the report is refused"
    )
    possible_max: float | None = Field(
        default=None, description="Above this a measurement is impossible and the report is refused"
    )

    def to_domain(self) -> Parameter:
        return Parameter(**self.model_dump())


class ParameterOut(ParameterIn):
    acceptance: str = Field(description="The rule as people read it", examples=["0.25 ± 0.04"])

    @classmethod
    def of(cls, p: Parameter) -> ParameterOut:
        return cls(
            code=p.code,
            name=p.name,
            unit=p.unit,
            rule=p.rule,
            minimum=p.minimum,
            maximum=p.maximum,
            target=p.target,
            tolerance=p.tolerance,
            possible_min=p.possible_min,
            possible_max=p.possible_max,
            acceptance=p.describe(),
        )


class SamplingRuleIO(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inspection_level: InspectionLevel = Field(default="II", description="ISO 2859-1 inspection level")
    aql: float = Field(
        default=2.5, examples=[2.5], description=f"Acceptance quality limit; one of {', '.join(f'{a:g}' for a in AQLS)}"
    )


class SpecificationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "parameters": [
                        {
                            "code": "friction_coefficient",
                            "name": "Friction coefficient μ (mean)",
                            "unit": "",
                            "rule": "target",
                            "target": 0.25,
                            "tolerance": 0.03,
                            "possible_min": 0,
                            "possible_max": 1.5,
                        },
                        {
                            "code": "density",
                            "name": "Density",
                            "unit": "g/cm³",
                            "rule": "range",
                            "minimum": 1.7,
                            "maximum": 2.4,
                            "possible_min": 0.1,
                            "possible_max": 25,
                        },
                        {"code": "back_plate_bond", "name": "Back-plate bond", "rule": "pass_fail"},
                    ],
                    "sampling": {"inspection_level": "II", "aql": 1.0},
                    "note": "KAI asked for a tighter friction band",
                }
            ]
        },
    )

    parameters: list[ParameterIn] = Field(min_length=1, max_length=50)
    sampling: SamplingRuleIO = Field(default_factory=SamplingRuleIO)
    note: str = Field(default="", max_length=500)


class SpecificationOut(BaseModel):
    item_code: str
    description: str
    product_family: str
    version: int
    parameters: list[ParameterOut]
    sampling: SamplingRuleIO
    note: str
    effective_from: datetime

    @classmethod
    def of(cls, spec: Specification, catalogue: Catalogue) -> SpecificationOut:
        item = catalogue[spec.item_code]
        return cls(
            item_code=spec.item_code,
            description=item.terms.name_id,
            product_family=item.product_family,
            version=spec.version,
            parameters=[ParameterOut.of(p) for p in spec.parameters],
            sampling=SamplingRuleIO(inspection_level=spec.sampling.inspection_level, aql=spec.sampling.aql),  # type: ignore[arg-type]
            note=spec.note,
            effective_from=spec.effective_from,
        )


class SamplingPlanOut(BaseModel):
    lot_size: int
    inspection_level: str
    aql: float
    code_letter: str = Field(description="Sample size code letter from ISO 2859-1 Table 1")
    plan_letter: str = Field(description="The row of Table 2-A whose plan is used, after following its arrows")
    sample_size: int = Field(description="Samples the laboratory tests; equals the lot size when every unit is inspected")
    acceptance_number: int = Field(description="Ac: the lot passes with at most this many nonconforming samples")
    rejection_number: int = Field(description="Re: the lot fails with this many or more")
    description: str

    @classmethod
    def of(cls, plan: SamplingPlan) -> SamplingPlanOut:
        return cls(
            lot_size=plan.lot_size,
            inspection_level=plan.inspection_level,
            aql=plan.aql,
            code_letter=plan.code_letter,
            plan_letter=plan.plan_letter,
            sample_size=plan.sample_size,
            acceptance_number=plan.acceptance_number,
            rejection_number=plan.rejection_number,
            description=plan.describe(),
        )


@router.get(
    "/specifications",
    response_model=list[SpecificationOut],
    tags=["specifications"],
    summary="The specification in force for every item",
    responses=problem_responses(*AUTH_ERRORS),
)
async def list_specifications(caller: TestReader, sessions: Sessions) -> list[SpecificationOut]:
    async with sessions() as session:
        catalogue = await store.catalogue(session)
        specs = [await store.get_specification(session, item) for item in catalogue]
    return [SpecificationOut.of(s, catalogue) for s in specs if s is not None]


@router.get(
    "/specifications/{item_code}",
    response_model=SpecificationOut,
    tags=["specifications"],
    summary="An item's specification: the version in force, or the one asked for",
    responses=problem_responses(*AUTH_ERRORS, 404, 422),
)
async def get_specification(
    item_code: str,
    caller: TestReader,
    sessions: Sessions,
    version: Annotated[int | None, Query(ge=1, le=1_000_000, description="A past version")] = None,
) -> SpecificationOut:
    async with sessions() as session:
        spec = await store.get_specification(session, item_code, version)
        catalogue = await store.catalogue(session)
    if spec is None:
        raise NotFound(f"no specification for {item_code}" + (f" version {version}" if version else ""))
    return SpecificationOut.of(spec, catalogue)


@router.get(
    "/specifications/{item_code}/versions",
    response_model=list[SpecificationOut],
    tags=["specifications"],
    summary="Every version of an item's specification, oldest first",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def list_specification_versions(item_code: str, caller: TestReader, sessions: Sessions) -> list[SpecificationOut]:
    async with sessions() as session:
        versions = await store.specification_versions(session, item_code)
        catalogue = await store.catalogue(session)
    if not versions:
        raise NotFound(f"no specification for {item_code}")
    return [SpecificationOut.of(s, catalogue) for s in versions]


@router.post(
    "/specifications/{item_code}/versions",
    status_code=201,
    response_model=SpecificationOut,
    tags=["specifications"],
    summary="Put a new version of an item's specification in force (QA officer)",
    description="Lots registered from now on are judged against the new version; lots registered earlier keep theirs.",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def revise_specification(
    item_code: str, body: SpecificationIn, caller: QualityOfficer, sessions: Sessions, response: Response
) -> SpecificationOut:
    spec = await handlers.revise(
        sessions,
        item_code,
        [p.to_domain() for p in body.parameters],
        SamplingRule(body.sampling.inspection_level, body.sampling.aql),
        body.note,
    )
    response.headers["Location"] = f"/v1/specifications/{item_code}?version={spec.version}"
    return SpecificationOut.of(spec, await _catalogue(sessions))


@router.get(
    "/sampling-plan",
    response_model=SamplingPlanOut,
    tags=["specifications"],
    summary="The ISO 2859-1 single sampling plan (normal inspection) for a lot size",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def sampling_plan(
    caller: TestReader,
    lot_size: Annotated[int, Query(ge=1, le=10_000_000)],
    aql: Annotated[float, Query(gt=0, examples=[2.5])] = 2.5,
    inspection_level: Annotated[InspectionLevel, Query()] = "II",
) -> SamplingPlanOut:
    try:
        return SamplingPlanOut.of(single_sampling_plan(lot_size, aql, inspection_level))
    except SamplingError as exc:
        raise Unprocessable(str(exc), errors=[FieldError(field="query.aql", message=str(exc))]) from exc


# --- the item catalogue ----------------------------------------------------------------------------------------


async def _catalogue(sessions: Any) -> Catalogue:
    async with sessions() as session:
        return await store.catalogue(session)


ItemCode = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,19}$", examples=["PMP-IMP-FC200"])]


class ItemTermsIO(BaseModel):
    """What a QA officer states about an item; every version repeats all of it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name_id": "Impeler pompa sentrifugal besi cor FC200",
                    "name_en": "Centrifugal pump impeller, grey iron FC200",
                    "product_family": "PUMP_PARTS",
                    "unit": "pcs",
                    "min_lot": 20,
                    "required_certificates": ["ISO9001"],
                    "min_tkdn_percent": None,
                    "sampling": {"inspection_level": "II", "aql": 2.5},
                }
            ]
        },
    )

    name_id: str = Field(min_length=1, max_length=200, description="Name in Indonesian")
    name_en: str = Field(min_length=1, max_length=200, description="Name in English")
    product_family: str = Field(max_length=40, description="Capacity's product family that makes it", examples=["PUMP_PARTS"])
    unit: str = Field(default="pcs", max_length=10, description=f"One of {', '.join(UNITS)}")
    min_lot: int = Field(default=1, ge=1, le=1_000_000, description="The fewest units worth making in a foundry-week")
    required_certificates: list[CertificateKind] = Field(
        default_factory=list, max_length=len(CertificateKind), description="What every maker must hold, whatever an order says"
    )
    min_tkdn_percent: float | None = Field(default=None, gt=0, le=100, description="The makers' TKDN minimum; none when left out")
    sampling: SamplingRuleIO = Field(
        default_factory=SamplingRuleIO, description="The sampling rule the item's first specification starts from"
    )

    def to_domain(self) -> ItemTerms:
        return ItemTerms(
            name_id=self.name_id,
            name_en=self.name_en,
            product_family=self.product_family,
            unit=self.unit,
            min_lot=self.min_lot,
            required_certificates=tuple(self.required_certificates),
            min_tkdn_percent=self.min_tkdn_percent,
            sampling=SamplingRule(self.sampling.inspection_level, self.sampling.aql),
        )

    @classmethod
    def of(cls, terms: ItemTerms) -> ItemTermsIO:
        return cls(
            name_id=terms.name_id,
            name_en=terms.name_en,
            product_family=terms.product_family,
            unit=terms.unit,
            min_lot=terms.min_lot,
            required_certificates=list(terms.required_certificates),
            min_tkdn_percent=terms.min_tkdn_percent,
            sampling=SamplingRuleIO(inspection_level=terms.sampling.inspection_level, aql=terms.sampling.aql),  # type: ignore[arg-type]
        )


class ItemIn(ItemTermsIO):
    code: ItemCode


class ItemOut(ItemTermsIO):
    model_config = ConfigDict(extra="ignore")

    code: str
    version: int
    retired: bool = Field(description="Retired items are no longer ordered; orders and lots that name them keep them")
    published_at: datetime

    @classmethod
    def of_item(cls, item: Item) -> ItemOut:
        return cls(
            **ItemTermsIO.of(item.terms).model_dump(),
            code=item.code,
            version=item.version,
            retired=item.retired,
            published_at=item.published_at,
        )


class ItemWithVersions(ItemOut):
    versions: list[ItemOut] = Field(description="Every version, oldest first; the last is the one in force")


@router.get(
    "/items",
    response_model=list[ItemOut],
    tags=["items"],
    summary="The item catalogue: every item's version in force",
    responses=problem_responses(*AUTH_ERRORS),
)
async def list_items(
    caller: TestReader,
    sessions: Sessions,
    retired: Annotated[bool, Query(description="Include retired items")] = False,
) -> list[ItemOut]:
    async with sessions() as session:
        catalogue = await store.catalogue(session, retired=retired)
    return [ItemOut.of_item(item) for item in catalogue.values()]


@router.get(
    "/items/{item_code}",
    response_model=ItemWithVersions,
    tags=["items"],
    summary="An item's version in force, with every version it had",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_item(item_code: str, caller: TestReader, sessions: Sessions) -> ItemWithVersions:
    async with sessions() as session:
        versions = await store.item_versions(session, item_code)
    if not versions:
        raise NotFound(f"no item {item_code}")
    return ItemWithVersions(**ItemOut.of_item(versions[-1]).model_dump(), versions=[ItemOut.of_item(item) for item in versions])


@router.post(
    "/items",
    status_code=201,
    response_model=ItemOut,
    tags=["items"],
    summary="Add an item to the catalogue (QA officer)",
    description="Version 1 of the item, published as `item_published` so orders and capacity learn it; its first "
    "specification starts from the defaults and the item's sampling rule.",
    responses=problem_responses(*AUTH_ERRORS, 409, 422),
)
async def create_item(
    body: ItemIn, caller: QualityOfficer, sessions: Sessions, response: Response, idempotency_key: OptionalIdempotencyKey = None
) -> ItemOut:
    command = Command.of("item", idempotency_key, body.model_dump(mode="json"))
    item = await handlers.add_item(sessions, body.code, body.to_domain(), command)
    if command is not None and command.replayed:
        mark_replayed(response)
    response.headers["Location"] = f"/v1/items/{item.code}"
    return ItemOut.of_item(item)


@router.post(
    "/items/{item_code}/versions",
    status_code=201,
    response_model=ItemOut,
    tags=["items"],
    summary="Publish a new version of an item (QA officer)",
    description="Orders received from now on follow the new version; lots and specifications keep their own versions.",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def publish_item_version(
    item_code: str,
    body: ItemTermsIO,
    caller: QualityOfficer,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> ItemOut:
    command = Command.of(f"item-version:{item_code}", idempotency_key, body.model_dump(mode="json"))
    item = await handlers.change_item(sessions, item_code, body.to_domain(), command)
    if command is not None and command.replayed:
        mark_replayed(response)
    response.headers["Location"] = f"/v1/items/{item.code}"
    return ItemOut.of_item(item)


@router.delete(
    "/items/{item_code}",
    response_model=ItemOut,
    tags=["items"],
    summary="Retire an item (QA officer): its last version, which no new order may name",
    responses=problem_responses(*AUTH_ERRORS, 404, 409),
)
async def retire_item(
    item_code: str, caller: QualityOfficer, sessions: Sessions, response: Response, idempotency_key: OptionalIdempotencyKey = None
) -> ItemOut:
    command = Command.of(f"item-retire:{item_code}", idempotency_key, {})
    item = await handlers.change_item(sessions, item_code, None, command)
    if command is not None and command.replayed:
        mark_replayed(response)
    return ItemOut.of_item(item)


# --- certificates ----------------------------------------------------------------------------------------------


class CertificateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "foundry_code": "IKM-001",
                    "kind": "SNI",
                    "number": "SPPT-SNI/B4T/0123/2026",
                    "issuer": "LSPro B4T",
                    "valid_from": "2026-03-01",
                    "valid_until": "2030-02-28",
                    "items": ["BB-COMP-K", "BB-COMP-LL"],
                }
            ]
        },
    )

    foundry_code: FoundryCode
    kind: CertificateKind
    number: str = Field(min_length=1, max_length=100)
    issuer: str = Field(min_length=1, max_length=200, examples=["LSPro B4T", "Kementerian Perindustrian", "BNSP"])
    valid_from: date
    valid_until: date = Field(description="Last day the certificate counts")
    tkdn_percent: float | None = Field(default=None, ge=0, le=100, description="TKDN certificates only")
    certified_workers: int | None = Field(default=None, strict=True, ge=1, le=100_000, description="SKKNI certificates only")
    items: list[str] = Field(default_factory=list, max_length=20, description="SNI certificates only: the item codes covered")


class CertificateOut(BaseModel):
    id: str
    foundry_code: str
    kind: CertificateKind
    number: str
    issuer: str
    valid_from: date
    valid_until: date
    tkdn_percent: float | None
    certified_workers: int | None
    items: list[str]
    state: CertificateState = Field(
        description="As of today: pending, valid, expiring (within the warning period, 30 days by default), expired or revoked"
    )
    granted_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None

    @classmethod
    def of(cls, c: Certificate, today: date, warning_days: int) -> CertificateOut:
        return cls(
            id=c.id,
            foundry_code=c.foundry_code,
            kind=c.kind,
            number=c.number,
            issuer=c.issuer,
            valid_from=c.valid_from,
            valid_until=c.valid_until,
            tkdn_percent=c.tkdn_percent,
            certified_workers=c.certified_workers,
            items=list(c.items),
            state=c.state_on(today, warning_days),
            granted_at=c.granted_at,
            revoked_at=c.revoked_at,
            revoke_reason=c.revoke_reason,
        )


class RevocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, examples=["Surveillance audit missed"])


@router.post(
    "/certificates",
    status_code=201,
    response_model=CertificateOut,
    tags=["certificates"],
    summary="Record a certificate a foundry was granted",
    responses=problem_responses(*AUTH_ERRORS, 409, 422),
)
async def grant_certificate(
    body: CertificateIn, caller: QualityOfficer, runtime: Runtime, sessions: Sessions, response: Response
) -> CertificateOut:
    certificate = await handlers.grant(sessions, runtime.settings, **body.model_dump())
    response.headers["Location"] = f"/v1/certificates/{certificate.id}"
    return CertificateOut.of(certificate, clock.today(), runtime.settings.quality_expiry_warning_days)


@router.get(
    "/certificates",
    response_model=list[CertificateOut],
    tags=["certificates"],
    summary="Certificates, by foundry, kind or state today",
    description="A member foundry sees its own certificates only.",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def list_certificates(
    caller: MemberReader,
    runtime: Runtime,
    sessions: Sessions,
    foundry_code: str | None = None,
    kind: CertificateKind | None = None,
    state: CertificateState | None = None,
) -> list[CertificateOut]:
    allowed, foundry_code = _scoped(caller, foundry_code)
    if not allowed:
        return []
    async with sessions() as session:
        found = await store.list_certificates(session, foundry_code=foundry_code, kind=kind)
    today = clock.today()
    out = [CertificateOut.of(c, today, runtime.settings.quality_expiry_warning_days) for c in found]
    return [c for c in out if state is None or c.state is state]


@router.get(
    "/certificates/{certificate_id}",
    response_model=CertificateOut,
    tags=["certificates"],
    summary="One certificate",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_certificate(certificate_id: str, caller: MemberReader, runtime: Runtime, sessions: Sessions) -> CertificateOut:
    async with sessions() as session:
        certificate = await store.get_certificate(session, certificate_id)
    if certificate is None:
        raise NotFound(f"no certificate {certificate_id}")
    _for_foundry(caller, certificate.foundry_code, f"no certificate {certificate_id}")
    return CertificateOut.of(certificate, clock.today(), runtime.settings.quality_expiry_warning_days)


@router.post(
    "/certificates/{certificate_id}/revoke",
    response_model=CertificateOut,
    tags=["certificates"],
    summary="Revoke a certificate, with the reason",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def revoke_certificate(
    certificate_id: str, body: RevocationIn, caller: QualityOfficer, runtime: Runtime, sessions: Sessions
) -> CertificateOut:
    certificate = await handlers.revoke(sessions, runtime.settings, certificate_id, body.reason)
    return CertificateOut.of(certificate, clock.today(), runtime.settings.quality_expiry_warning_days)


# --- lots and results ------------------------------------------------------------------------------------------------


class LotIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lot_code": "IKM-001-K-0001",
                    "foundry_code": "IKM-001",
                    "item_code": "BB-COMP-K",
                    "quantity": 250,
                    "order_id": "po_1f2e3d4c5b6a79880716",
                    "allocation_id": "al_IKM-001_2027-W05",
                }
            ]
        },
    )

    lot_code: str | None = Field(default=None, description="The foundry's own lot marking; generated when omitted")
    foundry_code: FoundryCode
    item_code: str = Field(examples=["BB-COMP-K"])
    quantity: int = Field(strict=True, gt=0, le=1_000_000, description="Units in the lot")
    order_id: str | None = Field(default=None, max_length=64)
    allocation_id: str | None = Field(default=None, max_length=64, description="The order allocation this production serves")


class FindingOut(BaseModel):
    parameter: str
    rule: str
    samples: list[int] = Field(description="1-based numbers of the samples that missed the rule")
    observed: list[float | bool]


class FailureReasonOut(BaseModel):
    parameter: str
    rule: str
    observed: str
    message: str


class ResultOut(BaseModel):
    report_number: str
    laboratory: str
    tested_on: date
    outcome: LotStatus
    sample_count: int
    nonconforming: int = Field(description="Samples that missed at least one parameter")
    findings: list[FindingOut]
    recorded_at: datetime

    @classmethod
    def of(cls, row: Any) -> ResultOut:
        return cls(
            report_number=row.report_number,
            laboratory=row.laboratory,
            tested_on=row.tested_on,
            outcome=LotStatus(row.outcome),
            sample_count=len(row.samples),
            nonconforming=row.nonconforming,
            findings=[FindingOut(**f) for f in row.findings],
            recorded_at=row.recorded_at,
        )


class LotOut(BaseModel):
    lot_code: str
    foundry_code: str
    item_code: str
    quantity: int
    order_id: str | None
    allocation_id: str | None
    spec_version: int
    sampling_plan: SamplingPlanOut
    status: LotStatus
    registered_at: datetime
    decided_at: datetime | None
    result: ResultOut | None = None
    reasons: list[FailureReasonOut] = Field(default_factory=list, description="Why a failed lot failed, per parameter")

    @classmethod
    def of(cls, lot: Lot, result: Any = None) -> LotOut:
        reasons: list[FailureReasonOut] = []
        if result is not None and lot.status is LotStatus.FAILED:
            evaluation = Evaluation(
                lot.plan,
                result.nonconforming,
                tuple(Finding(f["parameter"], f["rule"], tuple(f["samples"]), tuple(f["observed"])) for f in result.findings),
            )
            reasons = [FailureReasonOut(**r.model_dump()) for r in evaluation.reasons(len(result.samples))]
        return cls(
            lot_code=lot.lot_code,
            foundry_code=lot.foundry_code,
            item_code=lot.item_code,
            quantity=lot.quantity,
            order_id=lot.order_id,
            allocation_id=lot.allocation_id,
            spec_version=lot.spec_version,
            sampling_plan=SamplingPlanOut.of(lot.plan),
            status=lot.status,
            registered_at=lot.registered_at,
            decided_at=lot.decided_at,
            result=ResultOut.of(result) if result is not None else None,
            reasons=reasons,
        )


class LotPage(Page[LotOut]):
    pass


Measurement = float | bool | str | None


class ResultIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "report_number": "B4T/LHU/2027/0042",
                    "laboratory": "B4T Bandung",
                    "tested_on": "2027-02-01",
                    "samples": [
                        {
                            "friction_coefficient": 0.26,
                            "density": 2.05,
                            "hardness": 78,
                            "compressive_strength": 41.5,
                            "impact_strength": 2.4,
                            "back_plate_bond": "pass",
                        }
                    ],
                }
            ]
        },
    )

    report_number: str = Field(min_length=1, max_length=100, examples=["B4T/LHU/2027/0042"])
    laboratory: str = Field(min_length=1, max_length=200, examples=["B4T Bandung", "Lab QA Koperasi Batur Jaya"])
    tested_on: date | None = Field(default=None, description="Defaults to today")
    samples: list[dict[str, Measurement]] = Field(
        max_length=5000,
        description="One row per sample, exactly as many as the lot's sampling plan calls for: parameter code → "
        'measured value (a number, or "pass"/"fail")',
    )


@router.post(
    "/lots",
    status_code=201,
    response_model=LotOut,
    tags=["lots"],
    summary="Register a produced lot for testing",
    description="The lot is judged later against the item's specification version in force now; the answer says how many samples the laboratory must test.",
    responses=problem_responses(*AUTH_ERRORS, 409, 422),
)
async def register_lot(body: LotIn, caller: LotRegistrar, sessions: Sessions, response: Response) -> LotOut:
    if not caller.acts_for_foundry(body.foundry_code):
        raise Forbidden(f"this caller registers lots of {caller.foundry_code} only, not {body.foundry_code}").http()
    lot = await handlers.register(sessions, **body.model_dump())
    response.headers["Location"] = f"/v1/lots/{lot.lot_code}"
    return LotOut.of(lot)


@router.get(
    "/lots",
    response_model=LotPage,
    tags=["lots"],
    summary="Lots, newest first",
    description="A member foundry sees its own lots only.",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def list_lots(
    caller: TestReader,
    sessions: Sessions,
    paging: Annotated[Paging, paging_query(default_limit=50)],
    foundry_code: str | None = None,
    item_code: str | None = None,
    status: LotStatus | None = None,
    order_id: str | None = None,
) -> LotPage:
    allowed, foundry_code = _scoped(caller, foundry_code)
    if not allowed:
        return LotPage.of([], 0, paging)
    async with sessions() as session:
        found, total = await store.list_lots(
            session,
            foundry_code=foundry_code,
            item_code=item_code,
            status=status.value if status else None,
            order_id=order_id,
            limit=paging.limit,
            offset=paging.offset,
        )
        results = await store.results_of(session, [lot.lot_code for lot in found])
    return LotPage.of((LotOut.of(lot, results.get(lot.lot_code)) for lot in found), total, paging)


@router.get(
    "/lots/{lot_code}",
    response_model=LotOut,
    tags=["lots"],
    summary="One lot, with its result",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_lot(lot_code: str, caller: TestReader, sessions: Sessions) -> LotOut:
    async with sessions() as session:
        lot = await store.get_lot(session, lot_code)
        result = await store.get_result(session, lot_code) if lot else None
    if lot is None:
        raise NotFound(f"no lot {lot_code}")
    _for_foundry(caller, lot.foundry_code, f"no lot {lot_code}")
    return LotOut.of(lot, result)


@router.post(
    "/lots/{lot_code}/results",
    status_code=201,
    response_model=LotOut,
    tags=["lots"],
    summary="Record a lot's laboratory result and decide the lot",
    description="Publishes lot_passed or lot_failed (with the reason per parameter). Refused, changing nothing: a report "
    "with the wrong number of samples, unknown or missing parameters, or impossible values; a second result for a lot.",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def record_result(
    lot_code: str,
    body: ResultIn,
    caller: ResultRecorder,
    runtime: Runtime,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> LotOut:
    command = Command.of(f"results:{lot_code}", idempotency_key, body.model_dump(mode="json"))
    decision = await handlers.record_result(
        sessions,
        runtime.settings,
        lot_code,
        report_number=body.report_number,
        laboratory=body.laboratory,
        tested_on=body.tested_on,
        samples=body.samples,
        command=command,
    )
    async with sessions() as session:
        result = await store.get_result(session, lot_code)
        lot = decision.lot if decision is not None else await store.get_lot(session, lot_code)
    if decision is None:
        mark_replayed(response)  # recorded by the first request with this Idempotency-Key
    assert lot is not None
    response.headers["Location"] = f"/v1/lots/{lot_code}"
    return LotOut.of(lot, result)


class CertificateSnapshot(BaseModel):
    id: str
    kind: CertificateKind
    number: str
    issuer: str
    valid_from: date
    valid_until: date
    tkdn_percent: float | None
    certified_workers: int | None
    items: list[str]


class FoundryRef(BaseModel):
    code: str
    name: str | None
    village: str | None


class TraceOut(BaseModel):
    lot: LotOut
    foundry: FoundryRef
    specification: SpecificationOut = Field(description="The version the lot was registered under and judged against")
    sampling_plan: SamplingPlanOut
    test_report: ResultOut | None
    certificates_valid_when_tested: list[CertificateSnapshot] | None = Field(
        description="The foundry's certificates valid on the test day, as recorded with the result; null until tested"
    )


@router.get(
    "/lots/{lot_code}/trace",
    response_model=TraceOut,
    tags=["lots"],
    summary="Traceability of a lot: foundry, specification version, sampling plan, test report, certificates",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def trace_lot(lot_code: str, caller: MemberReader, sessions: Sessions) -> TraceOut:
    found = await handlers.trace(sessions, lot_code)
    _for_foundry(caller, found.lot.foundry_code, f"no lot {lot_code}")
    foundry = found.foundry
    return TraceOut(
        lot=LotOut.of(found.lot, found.result),
        foundry=FoundryRef(
            code=found.lot.foundry_code, name=foundry.name if foundry else None, village=foundry.village if foundry else None
        ),
        specification=SpecificationOut.of(found.specification, await _catalogue(sessions)),
        sampling_plan=SamplingPlanOut.of(found.lot.plan),
        test_report=ResultOut.of(found.result) if found.result is not None else None,
        certificates_valid_when_tested=[CertificateSnapshot(**c) for c in found.result.certificates]
        if found.result is not None
        else None,
    )


# --- quality status ---------------------------------------------------------------------------------------------------


class QualityStatusOut(BaseModel):
    foundry_code: str
    status: QualityStatus = Field(
        description="What counts: the QA officer's override while there is one, else the computed status"
    )
    computed_status: QualityStatus
    pass_rate: float = Field(description="Rolling pass rate of the most recent lots, with a prior")
    lots_considered: int
    lots_passed: int
    overridden: bool
    reason: str
    changed_at: datetime | None

    @classmethod
    def of(cls, q: FoundryQuality) -> QualityStatusOut:
        return cls(
            foundry_code=q.foundry_code,
            status=q.status,
            computed_status=q.computed_status,
            pass_rate=round(q.pass_rate, 4),
            lots_considered=q.lots_considered,
            lots_passed=q.lots_passed,
            overridden=q.overridden,
            reason=q.reason,
            changed_at=q.changed_at,
        )


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: QualityStatus
    reason: str = Field(min_length=1, max_length=500, examples=["Furnace relined and first trial lots retested at B4T"])


@router.get(
    "/quality-status",
    response_model=list[QualityStatusOut],
    tags=["quality status"],
    summary="Every member foundry's quality status",
    description="A member foundry sees its own status only.",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def list_quality_status(
    caller: MemberReader, runtime: Runtime, sessions: Sessions, status: QualityStatus | None = None
) -> list[QualityStatusOut]:
    _, foundry_code = _scoped(caller, None)
    found = await handlers.all_quality(sessions, runtime.settings)
    return [
        QualityStatusOut.of(q)
        for q in found
        if (status is None or q.status is status) and (foundry_code is None or q.foundry_code == foundry_code)
    ]


@router.get(
    "/foundries/{foundry_code}/quality-status",
    response_model=QualityStatusOut,
    tags=["quality status"],
    summary="One foundry's quality status",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_quality_status(foundry_code: str, caller: MemberReader, runtime: Runtime, sessions: Sessions) -> QualityStatusOut:
    _for_foundry(caller, foundry_code, f"no foundry {foundry_code}")
    return QualityStatusOut.of(await handlers.quality_of(sessions, runtime.settings, foundry_code))


@router.put(
    "/foundries/{foundry_code}/quality-status/override",
    response_model=QualityStatusOut,
    tags=["quality status"],
    summary="Pin a foundry's quality status, with the reason (QA officer)",
    description="Lot results keep updating the computed status meanwhile; the pinned status counts until the override is released.",
    responses=problem_responses(*AUTH_ERRORS, 404, 422),
)
async def override_quality_status(
    foundry_code: str,
    body: OverrideIn,
    caller: StatusOverrider,
    runtime: Runtime,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> QualityStatusOut:
    command = Command.of(f"override:{foundry_code}", idempotency_key, body.model_dump(mode="json"))
    quality = await handlers.override(sessions, runtime.settings, foundry_code, body.status, body.reason, command)
    if command is not None and command.replayed:
        mark_replayed(response)
    return QualityStatusOut.of(quality)


@router.delete(
    "/foundries/{foundry_code}/quality-status/override",
    response_model=QualityStatusOut,
    tags=["quality status"],
    summary="Release the override: the computed status counts again",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def release_quality_status(
    foundry_code: str,
    caller: StatusOverrider,
    runtime: Runtime,
    sessions: Sessions,
    response: Response,
    reason: Annotated[str, Query(max_length=500)] = "",
    idempotency_key: OptionalIdempotencyKey = None,
) -> QualityStatusOut:
    command = Command.of(f"release:{foundry_code}", idempotency_key, {"reason": reason})
    quality = await handlers.release(sessions, runtime.settings, foundry_code, reason, command)
    if command is not None and command.replayed:
        mark_replayed(response)
    return QualityStatusOut.of(quality)


# --- eligibility -------------------------------------------------------------------------------------------------------


class ReasonOut(BaseModel):
    rule: str = Field(examples=["certificate"], description="product_family, certificate, tkdn or quality_status")
    message: str


class VerdictOut(BaseModel):
    foundry_code: str
    name: str
    eligible: bool
    reasons: list[ReasonOut] = Field(description="Every rule the foundry misses; empty when eligible")
    certificate_ids: list[str] = Field(description="The valid certificates an eligible verdict rests on")
    tkdn_percent: float | None
    quality_status: QualityStatus

    @classmethod
    def of(cls, v: Verdict) -> VerdictOut:
        return cls(
            foundry_code=v.foundry_code,
            name=v.name,
            eligible=v.eligible,
            reasons=[ReasonOut(rule=r.rule, message=r.message) for r in v.reasons],
            certificate_ids=list(v.certificate_ids),
            tkdn_percent=v.tkdn_percent,
            quality_status=v.status,
        )


class EligibilityOut(BaseModel):
    item_code: str
    on: date
    required_certificates: list[CertificateKind]
    min_tkdn_percent: float
    eligible_count: int
    foundries: list[VerdictOut]


@router.get(
    "/eligibility",
    response_model=EligibilityOut,
    tags=["eligibility"],
    summary="Which foundries may make an item on a date, and why not for the others",
    description="Eligible: makes the item's product family, holds the required certificates valid on the date (an SNI "
    "certificate must cover the item), a TKDN certificate at or above the minimum, and is not suspended.",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def eligibility(
    caller: StaffReader,
    runtime: Runtime,
    sessions: Sessions,
    item: Annotated[str, Query(examples=["BB-COMP-K"])],
    on: Annotated[date | None, Query(description="Defaults to today")] = None,
    min_tkdn: Annotated[
        float | None, Query(ge=0, le=100, description="Minimum TKDN percent; default 25, 0 to not require TKDN")
    ] = None,
    certificates: Annotated[
        list[CertificateKind] | None, Query(description="Required certificates; default SNI and ISO9001")
    ] = None,
    eligible_only: bool = False,
) -> EligibilityOut:
    day = on or clock.today()
    verdicts, kinds, minimum = await handlers.eligibility(sessions, runtime.settings, item, day, certificates, min_tkdn)
    shown = [v for v in verdicts if v.eligible or not eligible_only]
    return EligibilityOut(
        item_code=item,
        on=day,
        required_certificates=list(kinds),
        min_tkdn_percent=minimum,
        eligible_count=sum(v.eligible for v in verdicts),
        foundries=[VerdictOut.of(v) for v in shown],
    )


# --- internal: the expiry job's trigger ------------------------------------------------------------------------------------


class ExpiryRunOut(BaseModel):
    on: date
    expiring: list[str] = Field(description="Certificates warned about in this run")
    expired: list[str] = Field(description="Certificates announced as expired in this run")


@internal.post(
    "/jobs/certificate-expiry",
    response_model=ExpiryRunOut,
    summary="Run the certificate-expiry job now (it also runs periodically); safe to call any time",
    responses=problem_responses(*AUTH_ERRORS),
)
async def run_certificate_expiry(runtime: Runtime, sessions: Sessions) -> ExpiryRunOut:
    report = await handlers.check_certificate_expiry(sessions, runtime.settings)
    await handlers.refresh_metrics(sessions, runtime.settings)
    return ExpiryRunOut(on=report.on, expiring=report.expiring, expired=report.expired)


# The audit trail of this service's changes, for admins: `GET /v1/audit`.
audit_trail = trail_router(
    store.audit_log, entities=("specification", "certificate", "lot", "lot_result", "foundry_quality", "foundry_projection")
)
