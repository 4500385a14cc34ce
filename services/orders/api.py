"""Orders' HTTP API: the purchase-order contract buyers' procurement systems integrate against.

Each route names who may call it. A buyer acts only for its own buyer code: another buyer's order, shipment or
webhook answers 404, as if it did not exist. Only the cooperative's staff reject, replan or ship.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints, model_validator

from shared import clock
from shared.audit_api import trail_router
from shared.auth import Forbidden, Principal, require
from shared.http import FieldError, NotFound, Unprocessable, problem_responses
from shared.idempotency import Command, IdempotencyKey, OptionalIdempotencyKey, mark_replayed
from shared.paging import Page, Paging, paging_query
from shared.projections import FoundryView, list_foundries
from shared.roles import BUYER_CODE, Role
from shared.service import Runtime, Sessions

from . import handlers, store, webhooks, whatif
from .domain import Buyer, Delivery, DeliverySite, OrderLine, OrderStatus, PurchaseOrder, Requirements, WebhookEndpoint

router = APIRouter(prefix="/v1")

# Who may call: the buyer for itself, the cooperative's staff for everyone.
OrderReader = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER, Role.QA_OFFICER, Role.BUYER))]
OrderWriter = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER, Role.BUYER))]
Staff = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER))]
StaffReader = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER, Role.QA_OFFICER))]
WebhookOwner = Annotated[Principal, Depends(require(Role.ADMIN, Role.BUYER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
AUTH_ERRORS = (401, 403)


def _for_buyer(caller: Principal, buyer_code: str, missing: str) -> None:
    """404 when the caller may not act for the buyer, worded as for a thing that does not exist."""
    if not caller.acts_for_buyer(buyer_code):
        raise NotFound(missing)


async def _own_order(session: Any, caller: Principal, order_id: str) -> PurchaseOrder:
    order = await store.order_or_404(session, order_id)
    _for_buyer(caller, order.buyer_code, f"no purchase order {order_id}")
    return order


Units = Annotated[int, Field(strict=True, gt=0, le=10_000_000, description="Whole units")]
Rupiah = Annotated[int, Field(strict=True, gt=0, le=1_000_000_000, description="Whole rupiah; never a float")]


class DeliveryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    due_date: date = Field(examples=["2027-02-26"])
    quantity: Units
    site_code: str = Field(examples=["BY-YK"])


class RequirementsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    certificates: list[Literal["SNI", "ISO9001", "TKDN", "SKKNI"]] = Field(default_factory=list, examples=[["SNI", "ISO9001"]])
    min_tkdn_percent: float | None = Field(default=None, ge=0, le=100)


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_no: int = Field(strict=True, ge=1, le=10_000)
    item_code: str = Field(examples=["BB-COMP-K"])
    description: str = Field(default="", max_length=300)
    quantity: Units
    unit_price: Rupiah
    deliveries: list[DeliveryIn] = Field(min_length=1)
    requirements: RequirementsIn | None = None
    safety_lead_days: int | None = Field(
        default=None,
        ge=0,
        le=56,
        description="Plan production to finish this many days earlier still where capacity allows (room to make a failed"
        " lot again); default: the cooperative's setting, 7",
    )


class PurchaseOrderIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "buyer_code": "KAI",
                    "po_number": "KAI/PO/2027/00042",
                    "issued_on": "2026-11-24",
                    "currency": "IDR",
                    "lines": [
                        {
                            "line_no": 1,
                            "item_code": "BB-COMP-K",
                            "description": "Blok rem komposit tipe K",
                            "quantity": 12000,
                            "unit_price": 203700,
                            "deliveries": [
                                {"due_date": "2027-02-26", "quantity": 6000, "site_code": "BY-YK"},
                                {"due_date": "2027-03-31", "quantity": 6000, "site_code": "BY-MRI"},
                            ],
                        }
                    ],
                }
            ]
        },
    )

    buyer_code: str = Field(examples=["KAI"])
    po_number: str = Field(min_length=1, max_length=100, examples=["KAI/PO/2027/00042"])
    issued_on: date
    currency: str = Field(default="IDR", examples=["IDR"])
    lines: list[LineIn] = Field(min_length=1)


class DeliveryOut(BaseModel):
    due_date: date
    quantity: int
    site_code: str


class LineOut(BaseModel):
    line_no: int
    item_code: str
    description: str
    quantity: int
    unit_price: int
    deliveries: list[DeliveryOut]
    safety_lead_days: int


class PurchaseOrderOut(BaseModel):
    id: str
    status: str
    buyer_code: str
    po_number: str
    issued_on: date
    currency: str
    total_amount: int = Field(description="Whole rupiah")
    lines: list[LineOut]
    received_at: datetime

    @classmethod
    def of(cls, order: PurchaseOrder) -> PurchaseOrderOut:
        return cls(
            id=order.id,
            status=order.status.value,
            buyer_code=order.buyer_code,
            po_number=order.po_number,
            issued_on=order.issued_on,
            currency=order.currency,
            total_amount=order.total_amount,
            lines=[
                LineOut(
                    line_no=line.line_no,
                    item_code=line.item_code,
                    description=line.description,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    safety_lead_days=line.safety_lead_days,
                    deliveries=[
                        DeliveryOut(due_date=d.due_date, quantity=d.quantity, site_code=d.site_code) for d in line.deliveries
                    ],
                )
                for line in order.lines
            ],
            received_at=order.received_at,
        )


class AllocationOut(BaseModel):
    allocation_id: str
    line_no: int
    foundry_code: str
    week: str = Field(description="ISO week of production")
    quantity: int
    due_date: date
    state: str = Field(description="planned, reserved or rejected")


class ShortfallOut(BaseModel):
    line_no: int
    week: str = Field(description="The ISO week production would have had to finish in")
    quantity: int
    eligible_members: int


class PlanOut(BaseModel):
    version: int
    created_at: datetime
    solver: str
    reason: str
    shortfall: list[ShortfallOut]
    allocations: list[AllocationOut]


class LineQuantities(BaseModel):
    """A line's units by stage."""

    planned: int = Field(description="In the plan in force")
    reserved: int = Field(description="Planned and confirmed by capacity")
    produced: int = Field(description="In lots registered for testing")
    passed: int
    failed: int = Field(description="In failed lots: planned again")
    shipped: int = Field(description="On dispatched shipments")
    delivered: int = Field(description="Received by the buyer (BAST)")
    rejected: int = Field(description="Refused by the buyer at handover: planned again")
    shippable: int = Field(description="Passed and not yet on any shipment")


class LateOut(BaseModel):
    due_date: date
    units: int = Field(description="Units due on the date that are (or would be) late")


class LineRisk(BaseModel):
    at_risk: bool = Field(description="The plan in force cannot make every unit in time")
    late_units: int = 0
    late_due_dates: list[date] = Field(default_factory=list)
    late: list[LateOut] = Field(
        default_factory=list,
        description="The late units per due date, adding up to late_units; empty for a plan made before it was kept",
    )
    expected_completion: date | None = Field(
        default=None, description="Earliest date the late units could reach the buyer; none if not within a year"
    )

    @classmethod
    def of(cls, risk: Mapping[str, Any] | None) -> LineRisk:
        """A line's risk as the plan in force keeps it; no risk kept is a line on time."""
        if not risk:
            return cls(at_risk=False)
        return cls(
            at_risk=True,
            late_units=risk["shortfall"],
            late_due_dates=risk["due_dates"],
            late=risk.get("late", []),  # a plan made before late units were kept per due date has none
            expected_completion=risk["expected_completion"],
        )


class LineDetail(LineOut):
    requirements: dict[str, Any] = Field(description="What the line states")
    required: dict[str, Any] = Field(
        description="What the makers must hold: the item's requirements and what the line adds (a line may only add)"
    )
    quantities: LineQuantities
    risk: LineRisk


class PurchaseOrderDetail(PurchaseOrderOut):
    status_reason: str | None = Field(default=None, description="Why it was cancelled or rejected")
    lines: list[LineDetail]  # type: ignore[assignment]
    local_content_percent: float | None = Field(
        default=None, description="TKDN of the units received so far, weighted by value; none before the first BAST"
    )
    plan: PlanOut | None = Field(default=None, description="The plan in force; none until the planner ran")


class PurchaseOrderPage(Page[PurchaseOrderOut]):
    pass


def _order_lines(body: PurchaseOrderIn, safety_lead_days: int) -> list[OrderLine]:
    """The body's lines as the domain's, each with its safety lead (the line's own, else the setting)."""
    return [
        OrderLine(
            line_no=line.line_no,
            item_code=line.item_code,
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price,
            deliveries=tuple(Delivery(d.due_date, d.quantity, d.site_code) for d in line.deliveries),
            requirements=Requirements(tuple(line.requirements.certificates), line.requirements.min_tkdn_percent)
            if line.requirements
            else Requirements(),
            safety_lead_days=safety_lead_days if line.safety_lead_days is None else line.safety_lead_days,
        )
        for line in body.lines
    ]


@router.post(
    "/purchase-orders",
    status_code=201,
    response_model=PurchaseOrderOut,
    tags=["purchase orders"],
    summary="Submit a purchase order",
    description="Retry with the same `Idempotency-Key` and body to get the same answer; the PO number is unique per buyer.",
    responses=problem_responses(*AUTH_ERRORS, 409, 422),
)
async def submit_purchase_order(
    body: PurchaseOrderIn,
    caller: OrderWriter,
    sessions: Sessions,
    runtime: Runtime,
    response: Response,
    idempotency_key: IdempotencyKey,
) -> PurchaseOrderOut:
    if not caller.acts_for_buyer(body.buyer_code):
        raise Forbidden(f"this client submits orders for {caller.buyer_code} only, not {body.buyer_code}").http()
    intake = await handlers.receive(
        sessions,
        idempotency_key=idempotency_key,
        body=body.model_dump(mode="json"),
        buyer_code=body.buyer_code,
        po_number=body.po_number,
        issued_on=body.issued_on,
        currency=body.currency,
        lines=_order_lines(body, runtime.settings.orders_safety_lead_days),
    )
    response.headers["Location"] = f"/v1/purchase-orders/{intake.order.id}"
    if intake.replayed:
        mark_replayed(response)
    return PurchaseOrderOut.of(intake.order)


@router.get(
    "/purchase-orders/{order_id}",
    response_model=PurchaseOrderDetail,
    tags=["purchase orders"],
    summary="One purchase order with the plan in force",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_purchase_order(order_id: str, caller: OrderReader, sessions: Sessions) -> PurchaseOrderDetail:
    async with sessions() as session:
        order, plan, rows = await store.order_with_plan(session, order_id)
        _for_buyer(caller, order.buyer_code, f"no purchase order {order_id}")
        lines_progress, content = await handlers.progress(session, order, rows)
    stages = {p.line_no: p for p in lines_progress}
    risks = {r["line_no"]: r for r in ((plan.risk or []) if plan is not None else [])}
    summary = PurchaseOrderOut.of(order).model_dump()
    lines = []
    for line, out in zip(order.lines, summary.pop("lines"), strict=False):
        stage = stages[line.line_no]
        lines.append(
            LineDetail(
                **out,
                requirements={
                    "certificates": list(line.requirements.certificates),
                    "min_tkdn_percent": line.requirements.min_tkdn_percent,
                },
                required={"certificates": list(line.required.certificates), "min_tkdn_percent": line.required.min_tkdn_percent},
                quantities=LineQuantities.model_validate(stage, from_attributes=True),
                risk=LineRisk.of(risks.get(line.line_no)),
            )
        )
    detail = PurchaseOrderDetail(**summary, lines=lines, status_reason=order.status_reason, local_content_percent=content)
    if plan is not None:
        detail.plan = PlanOut(
            version=plan.version,
            created_at=plan.created_at,
            solver=plan.solver,
            reason=plan.reason,
            shortfall=[ShortfallOut(**s) for s in plan.shortfall],
            allocations=[AllocationOut.model_validate(row, from_attributes=True) for row in rows],
        )
    return detail


class MemberUnits(BaseModel):
    foundry_code: str
    quantity: int


class PlanVersionOut(BaseModel):
    version: int
    created_at: datetime
    solver: str
    reason: str = Field(description="Why this version was made")
    shortfall_units: int = Field(description="Units this version could not place in time")
    members: list[MemberUnits] = Field(description="Units each member was given in this version")


@router.get(
    "/purchase-orders/{order_id}/plans",
    response_model=list[PlanVersionOut],
    tags=["purchase orders"],
    summary="The order's plan history: every version, why it was made, and each member's units in it",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def list_plan_versions(order_id: str, caller: StaffReader, sessions: Sessions) -> list[PlanVersionOut]:
    async with sessions() as session:
        await store.order_or_404(session, order_id)
        versions = await store.plan_versions(session, order_id)
    return [
        PlanVersionOut(
            version=plan.version,
            created_at=plan.created_at,
            solver=plan.solver,
            reason=plan.reason,
            shortfall_units=sum(int(s["quantity"]) for s in plan.shortfall),
            members=[MemberUnits(foundry_code=code, quantity=units) for code, units in sorted(members.items())],
        )
        for plan, members in versions
    ]


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=300, examples=["SPK withdrawn by the buyer"])


@router.post(
    "/purchase-orders/{order_id}/cancel",
    response_model=PurchaseOrderOut,
    tags=["purchase orders"],
    summary="Cancel a purchase order; the capacity reserved for it is released",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def cancel_purchase_order(order_id: str, body: CancelIn, caller: OrderWriter, sessions: Sessions) -> PurchaseOrderOut:
    async with sessions() as session:
        await _own_order(session, caller, order_id)
    return PurchaseOrderOut.of(await handlers.cancel(sessions, order_id, body.reason))


@router.post(
    "/purchase-orders/{order_id}/reject",
    response_model=PurchaseOrderOut,
    tags=["purchase orders"],
    summary="Decline a purchase order (the cooperative's decision, usually after review); capacity held is released",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def reject_purchase_order(
    order_id: str,
    body: CancelIn,
    caller: Staff,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> PurchaseOrderOut:
    command = Command.of(f"reject:{order_id}", idempotency_key, body.model_dump())
    order = await handlers.reject(sessions, order_id, body.reason, command)
    _replayed(command, response)
    return PurchaseOrderOut.of(order)


class ReplanOut(BaseModel):
    order_id: str
    plan_version: int | None = Field(description="The new version; none when the plan in force already covers everything")


@router.post(
    "/purchase-orders/{order_id}/replan",
    response_model=ReplanOut,
    tags=["purchase orders"],
    summary="Plan the order's outstanding units again now (e.g. after members added capacity)",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def replan_purchase_order(
    order_id: str,
    body: CancelIn,
    caller: Staff,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> ReplanOut:
    command = Command.of(f"replan:{order_id}", idempotency_key, body.model_dump())
    version = await handlers.replan(sessions, order_id, body.reason, command)
    _replayed(command, response)
    return ReplanOut(order_id=order_id, plan_version=version)


def _replayed(command: Command | None, response: Response) -> None:
    """A retry with the same `Idempotency-Key` acted on nothing: its answer says so."""
    if command is not None and command.replayed:
        mark_replayed(response)


@router.get(
    "/purchase-orders",
    response_model=PurchaseOrderPage,
    tags=["purchase orders"],
    summary="List purchase orders",
    description="A buyer sees its own orders only.",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def list_purchase_orders(
    caller: OrderReader,
    sessions: Sessions,
    paging: Annotated[Paging, paging_query(default_limit=50, max_limit=200)],
    buyer_code: str | None = None,
    status: OrderStatus | None = None,
    po_number: Annotated[str | None, Query(max_length=100, description="The buyer's own PO number, exactly")] = None,
) -> PurchaseOrderPage:
    if buyer_code is not None and not caller.acts_for_buyer(buyer_code):
        return PurchaseOrderPage.of([], 0, paging)
    if not caller.acts_for_buyer(buyer_code or ""):
        buyer_code = caller.buyer_code
    async with sessions() as session:
        orders, total = await store.list_orders(
            session, buyer_code=buyer_code, status=status, po_number=po_number, limit=paging.limit, offset=paging.offset
        )
    return PurchaseOrderPage.of((PurchaseOrderOut.of(o) for o in orders), total, paging)


@router.get(
    "/foundries",
    response_model=list[FoundryView],
    tags=["projections"],
    summary="Member foundries as orders knows them (from capacity's events)",
    responses=problem_responses(*AUTH_ERRORS),
)
async def list_known_foundries(caller: StaffReader, sessions: Sessions) -> list[FoundryView]:
    async with sessions() as session:
        return await list_foundries(session, store.foundry_projection)


# --- buyers and delivery sites: read by the cooperative's staff, kept by admins ------------------------------

Code = Annotated[str, Field(min_length=2, max_length=20, pattern=r"^[A-Z][A-Z0-9-]{1,19}$")]
Npwp = Annotated[
    str,
    Field(
        pattern=r"^(\d{16}|\d{2}\.\d{3}\.\d{3}\.\d-\d{3}\.\d{3})$",
        examples=["0010001234093000"],
        description="Tax id: 16 digits, or the old form 99.999.999.9-999.999. Shown to admins only",
    ),
]


class BuyerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        pattern=f"^{BUYER_CODE.pattern}$", examples=["PELNI"], description="The buyer code its tokens carry: capitals and digits"
    )
    legal_name: str = Field(min_length=1, max_length=200, examples=["PT Pelayaran Nasional Indonesia (Persero)"])
    npwp: Npwp | None = None
    active: bool = True


class BuyerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    legal_name: str | None = Field(default=None, min_length=1, max_length=200)
    npwp: Npwp | None = Field(default=None, description="null removes it")
    active: bool | None = Field(default=None, description="false: no new purchase orders; its orders go on")


class BuyerOut(BaseModel):
    code: str
    legal_name: str
    npwp: str | None = Field(description="Shown to admins only")
    active: bool

    @classmethod
    def of(cls, buyer: Buyer, caller: Principal) -> BuyerOut:
        return cls(
            code=buyer.code, legal_name=buyer.legal_name, npwp=buyer.npwp if caller.has_any((Role.ADMIN,)) else None,
            active=buyer.active,
        )  # fmt: skip


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code = Field(examples=["BY-PUB"])
    name: str = Field(min_length=1, max_length=200, examples=["Balai Yasa Pulubrayan"])
    buyer_code: str = Field(max_length=20, examples=["KAI"], description="The buyer that takes delivery there")
    city: str = Field(min_length=1, max_length=100, examples=["Medan"])
    address: str | None = Field(default=None, min_length=1, max_length=300)
    active: bool = True


class SitePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    city: str | None = Field(default=None, min_length=1, max_length=100)
    address: str | None = Field(default=None, min_length=1, max_length=300, description="null removes it")
    active: bool | None = Field(default=None, description="false: no new order names it; deliveries already ordered go on")


class SiteOut(BaseModel):
    code: str
    name: str
    buyer_code: str
    city: str
    address: str | None
    active: bool

    @classmethod
    def of(cls, site: DeliverySite) -> SiteOut:
        return cls(**vars(site))


def _changes(patch: BaseModel, nullable: tuple[str, ...]) -> dict[str, Any]:
    """The fields the body names; null only for those that may be removed (the others keep what they are)."""
    return {f: getattr(patch, f) for f in patch.model_fields_set if getattr(patch, f) is not None or f in nullable}


@router.get(
    "/buyers",
    response_model=list[BuyerOut],
    tags=["buyers and sites"],
    summary="The buyers orders takes purchase orders from",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def list_buyers(caller: StaffReader, sessions: Sessions, active: bool | None = None) -> list[BuyerOut]:
    async with sessions() as session:
        buyers = await store.known_buyers(session)
    return [BuyerOut.of(b, caller) for b in buyers.values() if active is None or b.active == active]


@router.get(
    "/buyers/{buyer_code}",
    response_model=BuyerOut,
    tags=["buyers and sites"],
    summary="One buyer",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_buyer(buyer_code: str, caller: StaffReader, sessions: Sessions) -> BuyerOut:
    async with sessions() as session:
        buyer = await store.buyer(session, buyer_code)
    if buyer is None:
        raise NotFound(f"no buyer {buyer_code}")
    return BuyerOut.of(buyer, caller)


@router.post(
    "/buyers",
    status_code=201,
    response_model=BuyerOut,
    tags=["buyers and sites"],
    summary="Add a buyer",
    description="Its machine client is added in identity with the role buyer and this code as its tenant.",
    responses=problem_responses(*AUTH_ERRORS, 409, 422),
)
async def add_buyer(
    body: BuyerIn, caller: Admin, sessions: Sessions, response: Response, idempotency_key: OptionalIdempotencyKey = None
) -> BuyerOut:
    command = Command.of("buyers", idempotency_key, body.model_dump())
    kept = await handlers.add_buyer(sessions, Buyer(body.code, body.legal_name, body.active, body.npwp), command)
    _replayed(command, response)
    response.headers["Location"] = f"/v1/buyers/{kept.value.code}"
    return BuyerOut.of(kept.value, caller)


@router.patch(
    "/buyers/{buyer_code}",
    response_model=BuyerOut,
    tags=["buyers and sites"],
    summary="Change a buyer: its name, NPWP, or whether it may send new purchase orders",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def change_buyer(
    buyer_code: str,
    body: BuyerPatch,
    caller: Admin,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> BuyerOut:
    command = Command.of(f"buyers:{buyer_code}", idempotency_key, body.model_dump(exclude_unset=True))
    kept = await handlers.change_buyer(sessions, buyer_code, _changes(body, ("npwp",)), command)
    _replayed(command, response)
    return BuyerOut.of(kept.value, caller)


@router.get(
    "/sites",
    response_model=list[SiteOut],
    tags=["buyers and sites"],
    summary="Delivery sites: where buyers take delivery",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def list_sites(
    caller: StaffReader,
    sessions: Sessions,
    buyer_code: Annotated[str | None, Query(max_length=20)] = None,
    active: bool | None = None,
) -> list[SiteOut]:
    async with sessions() as session:
        sites = await store.known_sites(session, buyer_code)
    return [SiteOut.of(s) for s in sites.values() if active is None or s.active == active]


@router.get(
    "/sites/{site_code}",
    response_model=SiteOut,
    tags=["buyers and sites"],
    summary="One delivery site",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_site(site_code: str, caller: StaffReader, sessions: Sessions) -> SiteOut:
    async with sessions() as session:
        site = await store.site(session, site_code)
    if site is None:
        raise NotFound(f"no delivery site {site_code}")
    return SiteOut.of(site)


@router.post(
    "/sites",
    status_code=201,
    response_model=SiteOut,
    tags=["buyers and sites"],
    summary="Add a delivery site of a buyer",
    responses=problem_responses(*AUTH_ERRORS, 409, 422),
)
async def add_site(
    body: SiteIn, caller: Admin, sessions: Sessions, response: Response, idempotency_key: OptionalIdempotencyKey = None
) -> SiteOut:
    command = Command.of("sites", idempotency_key, body.model_dump())
    kept = await handlers.add_site(sessions, DeliverySite(**body.model_dump()), command)
    _replayed(command, response)
    response.headers["Location"] = f"/v1/sites/{kept.value.code}"
    return SiteOut.of(kept.value)


@router.patch(
    "/sites/{site_code}",
    response_model=SiteOut,
    tags=["buyers and sites"],
    summary="Change a delivery site: its name, city, address, or whether new orders may name it",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def change_site(
    site_code: str,
    body: SitePatch,
    caller: Admin,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> SiteOut:
    command = Command.of(f"sites:{site_code}", idempotency_key, body.model_dump(exclude_unset=True))
    kept = await handlers.change_site(sessions, site_code, _changes(body, ("address",)), command)
    _replayed(command, response)
    return SiteOut.of(kept.value)


class WebhookEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[
        AnyHttpUrl,
        UrlConstraints(max_length=2000),
        Field(
            examples=["https://eproc.kai.id/hooks/ceper"],
            description="https (plain http only outside production) to a public address: never loopback, private,"
            " link-local or a cloud's metadata service",
        ),
    ]
    secret: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^whsec_[A-Za-z0-9+/]{32,}={0,2}$",
        description="Standard Webhooks secret (`whsec_` + base64, at least 24 bytes) of your choosing; it replaces the current"
        " one, which keeps signing for the grace period. When omitted the current one stays, or one is generated",
    )
    enabled: bool = True


class WebhookEndpointOut(BaseModel):
    buyer_code: str
    url: str
    secret: str | None = Field(
        default=None,
        description="Only in the answer that generated it (the first PUT without a secret, or a rotation): verify"
        " `webhook-signature` with it and keep it private. It is never shown again",
    )
    enabled: bool
    updated_at: datetime
    previous_secret_expires_at: datetime | None = Field(
        default=None, description="Until then messages are signed with the previous secret too (after a rotation)"
    )

    @classmethod
    def of(cls, endpoint: WebhookEndpoint, new_secret: str | None = None) -> WebhookEndpointOut:
        return cls(
            buyer_code=endpoint.buyer_code,
            url=endpoint.url,
            secret=new_secret,
            enabled=endpoint.enabled,
            updated_at=endpoint.updated_at,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
        )


class WebhookDeliveryOut(BaseModel):
    id: str
    event_type: str
    status: str = Field(description="pending, delivered or failed (gave up after the last retry)")
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None = Field(description="Why the last attempt failed: the status received, or why it could not be sent")
    last_duration_ms: int | None = Field(default=None, description="How long the last attempt took")
    delivered_at: datetime | None
    payload: dict[str, Any]


async def _known_buyer(caller: Principal, buyer_code: str, sessions: Sessions) -> None:
    """404 unless the caller acts for the buyer and orders knows it (active or not: its webhooks go on)."""
    _for_buyer(caller, buyer_code, f"no buyer {buyer_code}")
    async with sessions() as session:
        if await store.buyer(session, buyer_code) is None:
            raise NotFound(f"no buyer {buyer_code}")


@router.put(
    "/buyers/{buyer_code}/webhook",
    response_model=WebhookEndpointOut,
    tags=["webhooks"],
    summary="Set where a buyer receives signed notifications (the secret is in the answer only when generated)",
    responses=problem_responses(*AUTH_ERRORS, 404, 422),
)
async def put_webhook(
    buyer_code: str, body: WebhookEndpointIn, caller: WebhookOwner, sessions: Sessions, runtime: Runtime
) -> WebhookEndpointOut:
    await _known_buyer(caller, buyer_code, sessions)
    done = await handlers.set_webhook_endpoint(sessions, runtime.settings, buyer_code, str(body.url), body.secret, body.enabled)
    return WebhookEndpointOut.of(done.endpoint, done.new_secret)


@router.get(
    "/buyers/{buyer_code}/webhook",
    response_model=WebhookEndpointOut,
    tags=["webhooks"],
    summary="A buyer's webhook endpoint (without its secret, which is shown only once)",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_webhook(buyer_code: str, caller: WebhookOwner, sessions: Sessions) -> WebhookEndpointOut:
    await _known_buyer(caller, buyer_code, sessions)
    async with sessions() as session:
        endpoint = await store.webhook_endpoint(session, buyer_code)
    if endpoint is None:
        raise NotFound(f"{buyer_code} has no webhook endpoint yet")
    return WebhookEndpointOut.of(endpoint)


@router.post(
    "/buyers/{buyer_code}/webhook/rotate-secret",
    response_model=WebhookEndpointOut,
    tags=["webhooks"],
    summary="A new signing secret, shown once in this answer; the old one keeps signing until the grace period ends",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def rotate_webhook_secret(
    buyer_code: str, caller: WebhookOwner, sessions: Sessions, runtime: Runtime
) -> WebhookEndpointOut:
    await _known_buyer(caller, buyer_code, sessions)
    done = await handlers.rotate_webhook_secret(sessions, runtime.settings, buyer_code)
    return WebhookEndpointOut.of(done.endpoint, done.new_secret)


@router.post(
    "/buyers/{buyer_code}/webhook/ping",
    status_code=202,
    response_model=WebhookDeliveryOut,
    tags=["webhooks"],
    summary="Queue a `ping` message to check the endpoint and the signature",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def ping_webhook(buyer_code: str, caller: WebhookOwner, sessions: Sessions) -> WebhookDeliveryOut:
    await _known_buyer(caller, buyer_code, sessions)
    async with sessions.begin() as session:
        message_id = await webhooks.enqueue(session, buyer_code, "ping", {"buyer_code": buyer_code})
        if message_id is None:
            raise NotFound(f"{buyer_code} has no enabled webhook endpoint")
        row = await store.webhook_delivery(session, message_id)
    return WebhookDeliveryOut(**row._mapping)


@router.get(
    "/buyers/{buyer_code}/webhook-deliveries",
    response_model=list[WebhookDeliveryOut],
    tags=["webhooks"],
    summary="The buyer's delivery log, newest first",
    responses=problem_responses(*AUTH_ERRORS, 404, 422),
)
async def list_webhook_deliveries(
    buyer_code: str,
    caller: WebhookOwner,
    sessions: Sessions,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[WebhookDeliveryOut]:
    await _known_buyer(caller, buyer_code, sessions)
    async with sessions() as session:
        rows = await store.webhook_deliveries_of(session, buyer_code, status=status, limit=limit)
    return [WebhookDeliveryOut(**r._mapping) for r in rows]


# --- shipments and handover ---------------------------------------------------------------------------------


class ShipmentItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lot_code: str = Field(min_length=1, max_length=64, examples=["IKM-001-K-0001"])
    quantity: Units


class ShipmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    surat_jalan_number: str = Field(min_length=1, max_length=100, examples=["SJ/BJ/2027/0001"])
    site_code: str = Field(examples=["BY-YK"])
    vehicle_plate: str = Field(min_length=3, max_length=20, examples=["AD 8123 KT"])
    driver_name: str | None = Field(default=None, max_length=100)
    items: list[ShipmentItemIn] = Field(min_length=1)


class HandoverItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lot_code: str = Field(min_length=1, max_length=64)
    received: int = Field(strict=True, ge=0, le=10_000_000)
    rejected: int = Field(strict=True, ge=0, le=10_000_000, default=0)


class HandoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bast_number: str = Field(min_length=1, max_length=100, examples=["BAST/BY-YK/2027/0117"])
    signed_by: str = Field(min_length=1, max_length=200, examples=["Ir. Sutrisno, Kepala Balai Yasa Yogyakarta"])
    signed_on: date
    items: list[HandoverItemIn] = Field(min_length=1)


class ShipmentItemOut(BaseModel):
    lot_code: str
    line_no: int
    foundry_code: str
    due_date: date = Field(description="The delivery these units count towards")
    quantity: int
    received: int | None
    rejected: int | None
    tkdn_percent: float


class ShipmentOut(BaseModel):
    id: str
    order_id: str
    buyer_code: str
    surat_jalan_number: str
    site_code: str
    vehicle_plate: str
    driver_name: str | None
    status: str = Field(description="prepared, dispatched or delivered")
    created_at: datetime
    dispatched_at: datetime | None
    bast_number: str | None
    signed_by: str | None
    signed_on: date | None
    delivered_at: datetime | None
    items: list[ShipmentItemOut]

    @classmethod
    def of(cls, shipment: Any, items: list[Any]) -> ShipmentOut:
        return cls(
            **{k: getattr(shipment, k) for k in cls.model_fields if k != "items"},
            items=[ShipmentItemOut(**{k: getattr(i, k) for k in ShipmentItemOut.model_fields}) for i in items],
        )


async def _shipment(sessions: Any, shipment_id: str, caller: Principal) -> ShipmentOut:
    async with sessions() as session:
        shipment, items = await store.get_shipment(session, shipment_id)
    _for_buyer(caller, shipment.buyer_code, f"no shipment {shipment_id}")
    return ShipmentOut.of(shipment, items)


@router.post(
    "/purchase-orders/{order_id}/shipments",
    status_code=201,
    response_model=ShipmentOut,
    tags=["shipments"],
    summary="Write a surat jalan: passed units of the order's lots, to one of its sites",
    description="Units count towards the line's deliveries to that site, earliest due date first.",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def create_shipment(
    order_id: str,
    body: ShipmentIn,
    caller: Staff,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> ShipmentOut:
    async with sessions() as session:
        known = await store.site(session, body.site_code) is not None
    if not known:
        raise Unprocessable(
            f"unknown site {body.site_code!r}", errors=[FieldError(field="body.site_code", message="unknown delivery site")]
        )
    shipment_id = await handlers.create_shipment(
        sessions,
        order_id,
        surat_jalan_number=body.surat_jalan_number,
        site_code=body.site_code,
        vehicle_plate=body.vehicle_plate,
        driver_name=body.driver_name,
        items=[(i.lot_code, i.quantity) for i in body.items],
        command=(command := Command.of(f"shipments:{order_id}", idempotency_key, body.model_dump(mode="json"))),
    )
    _replayed(command, response)
    response.headers["Location"] = f"/v1/shipments/{shipment_id}"
    return await _shipment(sessions, shipment_id, caller)


@router.get(
    "/purchase-orders/{order_id}/shipments",
    response_model=list[ShipmentOut],
    tags=["shipments"],
    summary="The order's shipments, oldest first",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def list_shipments(order_id: str, caller: OrderReader, sessions: Sessions) -> list[ShipmentOut]:
    async with sessions() as session:
        await _own_order(session, caller, order_id)
        return [ShipmentOut.of(s, items) for s, items in await store.shipments_of_order(session, order_id)]


@router.get(
    "/shipments/{shipment_id}",
    response_model=ShipmentOut,
    tags=["shipments"],
    summary="One shipment",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_shipment(shipment_id: str, caller: OrderReader, sessions: Sessions) -> ShipmentOut:
    return await _shipment(sessions, shipment_id, caller)


@router.post(
    "/shipments/{shipment_id}/dispatch",
    response_model=ShipmentOut,
    tags=["shipments"],
    summary="The vehicle left: the buyer is told (`shipment.dispatched`)",
    responses=problem_responses(*AUTH_ERRORS, 404, 409),
)
async def dispatch_shipment(
    shipment_id: str, caller: Staff, sessions: Sessions, response: Response, idempotency_key: OptionalIdempotencyKey = None
) -> ShipmentOut:
    command = Command.of(f"dispatch:{shipment_id}", idempotency_key, {})
    await handlers.dispatch_shipment(sessions, shipment_id, command)
    _replayed(command, response)
    return await _shipment(sessions, shipment_id, caller)


@router.post(
    "/shipments/{shipment_id}/handover",
    response_model=ShipmentOut,
    tags=["shipments"],
    summary="Record the buyer's BAST: received units are delivered, refused ones are planned again",
    description="Every lot on the shipment appears once, with received + rejected equal to what was shipped.",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def record_handover(
    shipment_id: str,
    body: HandoverIn,
    caller: Staff,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> ShipmentOut:
    command = Command.of(f"handover:{shipment_id}", idempotency_key, body.model_dump(mode="json"))
    await handlers.record_handover(
        sessions,
        shipment_id,
        bast_number=body.bast_number,
        signed_by=body.signed_by,
        signed_on=body.signed_on,
        items=[(i.lot_code, i.received, i.rejected) for i in body.items],
        command=command,
    )
    _replayed(command, response)
    return await _shipment(sessions, shipment_id, caller)


# The audit trail of this service's changes, for admins: `GET /v1/audit`.
audit_trail = trail_router(
    store.audit_log,
    entities=(
        "purchase_order",
        "plan",
        "allocations",
        "shipment",
        "shipment_items",
        "webhook_endpoint",
        "buyer",
        "delivery_site",
        "foundry_projection",
        "capacity_projection",
        "standard_capacity_projection",
        "reservation_projection",
        "certificate_projection",
        "quality_status_projection",
        "lot_projection",
    ),
)


# --- what-if: the planners' questions -----------------------------------------------------------------------


class CapacityChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    foundry_code: str = Field(max_length=20, examples=["IKM-071"])
    product_family: str = Field(max_length=40, examples=["BRAKE_BLOCK_COMPOSITE"])
    from_date: date = Field(examples=["2027-03-01"])
    to_date: date = Field(examples=["2027-03-31"])
    weekly_units: int = Field(strict=True, ge=0, le=1_000_000, description="The member's capacity in each week of the dates")


class CertificateLapseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    foundry_code: str = Field(max_length=20, examples=["IKM-012"])
    kind: Literal["SNI", "ISO9001", "TKDN", "SKKNI"] = Field(examples=["SNI"])
    on: date = Field(examples=["2027-02-01"], description="The first day the member's certificates of the kind are not valid")


class SuspensionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    foundry_code: str = Field(max_length=20, examples=["IKM-030"])
    from_date: date = Field(examples=["2027-01-15"], description="The first day the member makes nothing")


class WhatIfIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "capacity_changes": [
                        {"foundry_code": "IKM-071", "product_family": "BRAKE_BLOCK_COMPOSITE",
                         "from_date": "2027-03-01", "to_date": "2027-03-31", "weekly_units": 0}
                    ],
                    "certificate_lapses": [{"foundry_code": "IKM-012", "kind": "SNI", "on": "2027-02-01"}],
                    "suspensions": [{"foundry_code": "IKM-030", "from_date": "2027-01-15"}],
                    "new_orders": [],
                }
            ]
        },
    )  # fmt: skip

    capacity_changes: list[CapacityChangeIn] = Field(default_factory=list, max_length=200)
    certificate_lapses: list[CertificateLapseIn] = Field(default_factory=list, max_length=200)
    suspensions: list[SuspensionIn] = Field(default_factory=list, max_length=200)
    new_orders: list[PurchaseOrderIn] = Field(
        default_factory=list, max_length=20, description="Purchase-order bodies as `POST /v1/purchase-orders` takes them"
    )


class MemberShiftOut(BaseModel):
    foundry_code: str
    units_before: int
    units_after: int


class WhatIfAllocationOut(BaseModel):
    foundry_code: str
    week: str = Field(description="ISO week of production")
    quantity: int
    due_date: date
    state: str = Field(description="planned or reserved (kept from the plan in force)")


class WhatIfPlanOut(BaseModel):
    allocations: list[WhatIfAllocationOut]
    shortfall: list[ShortfallOut]


class WhatIfLineOut(BaseModel):
    line_no: int
    at_risk: bool = Field(description="The plan it would have cannot make every unit in time")
    late_units: int
    late_due_dates: list[date]
    late: list[LateOut] = Field(
        description="The late units per due date: they add up to late_units, one entry for each of late_due_dates"
    )
    expected_completion: date | None = Field(description="Earliest date the late units could reach the buyer")
    moved_units: int = Field(description="Units that would leave the foundry-week the plan in force has them in")
    members: list[MemberShiftOut] = Field(description="Members whose units of the line would change")
    plan: WhatIfPlanOut = Field(description="The line's plan it would have (the plan in force when untouched)")

    @model_validator(mode="before")
    @classmethod
    def _nest_plan(cls, line: Any) -> Any:
        # The outcome keeps the line's plan beside its risk; the answer nests it under `plan`.
        return {**vars(line), "plan": line} if isinstance(line, whatif.LineOutcome) else line


class WhatIfOrderOut(BaseModel):
    order_id: str
    po_number: str
    buyer_code: str
    status: str = Field(description="The status the order would have")
    replanned: bool = Field(description="The hypotheses touch the order: it would be planned again")
    reason: str | None
    lines: list[WhatIfLineOut]


class WhatIfNewOrderOut(BaseModel):
    po_number: str
    buyer_code: str
    acceptable_in_full: bool = Field(description="Every unit could be made in time")
    complete_by: date | None = Field(description="When every unit could reach the buyer; none if not within a year")
    lines: list[WhatIfLineOut]


class UtilisationOut(BaseModel):
    foundry_code: str
    product_family: str
    before: float | None = Field(description="Held over capacity in the weeks looked at, now")
    after: float | None = Field(description="The same if the hypotheses came true")


class WhatIfOut(BaseModel):
    first_week: str
    last_week: str
    orders: list[WhatIfOrderOut]
    new_orders: list[WhatIfNewOrderOut]
    utilisation: list[UtilisationOut] = Field(description="Members whose planned work would change")


@router.post(
    "/what-if",
    response_model=WhatIfOut,
    tags=["planning"],
    summary="What would become of the open orders if capacity changed, certificates lapsed, members were suspended or"
    " new orders arrived",
    description="Planned as a real replan would be, on a copy in memory: nothing is stored, published, reserved or sent.",
    dependencies=[Depends(require(Role.PLANNER, Role.ADMIN))],
    responses=problem_responses(401, 403, 422),
)
async def what_if(body: WhatIfIn, sessions: Sessions, runtime: Runtime) -> WhatIfOut:
    hypotheses = whatif.Hypotheses(
        capacity_changes=tuple(whatif.CapacityChange(**c.model_dump()) for c in body.capacity_changes),
        certificate_lapses=tuple(whatif.CertificateLapse(**c.model_dump()) for c in body.certificate_lapses),
        suspensions=tuple(whatif.Suspension(**s.model_dump()) for s in body.suspensions),
    )
    new_orders = [
        PurchaseOrder(
            f"what-if-{i + 1}",
            order.buyer_code,
            order.po_number,
            order.issued_on,
            order.currency,
            tuple(_order_lines(order, runtime.settings.orders_safety_lead_days)),
            OrderStatus.RECEIVED,
            clock.now(),
        )
        for i, order in enumerate(body.new_orders)
    ]
    answer = await handlers.what_if(sessions, hypotheses, new_orders)
    # The answer's models name the outcome's fields: open and new orders map alike, with no field-by-field copy.
    return WhatIfOut.model_validate(answer, from_attributes=True)
