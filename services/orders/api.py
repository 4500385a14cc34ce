"""Orders' HTTP API: the purchase-order contract buyers' procurement systems integrate against."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.http import NotFound, problem_responses
from shared.projections import list_foundries
from shared.service import Sessions

from . import handlers, store
from .domain import Delivery, OrderLine, PurchaseOrder

router = APIRouter(prefix="/v1")

Units = Annotated[int, Field(strict=True, gt=0, description="Whole units")]
Rupiah = Annotated[int, Field(strict=True, gt=0, description="Whole rupiah; never a float")]


class DeliveryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    due_date: date = Field(examples=["2027-02-26"])
    quantity: Units
    site_code: str = Field(examples=["BY-YK"])


class RequirementsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    certificates: list[str] = Field(default_factory=list, examples=[["SNI", "ISO9001"]])
    min_tkdn_percent: float | None = Field(default=None, ge=0, le=100)


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_no: int = Field(strict=True, ge=1)
    item_code: str = Field(examples=["BB-COMP-K"])
    description: str = Field(default="", max_length=300)
    quantity: Units
    unit_price: Rupiah
    deliveries: list[DeliveryIn] = Field(min_length=1)
    requirements: RequirementsIn | None = None


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
    def of(cls, order: PurchaseOrder) -> "PurchaseOrderOut":
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
                    line_no=l.line_no,
                    item_code=l.item_code,
                    description=l.description,
                    quantity=l.quantity,
                    unit_price=l.unit_price,
                    deliveries=[DeliveryOut(due_date=d.due_date, quantity=d.quantity, site_code=d.site_code) for d in l.deliveries],
                )
                for l in order.lines
            ],
            received_at=order.received_at,
        )


class PurchaseOrderPage(BaseModel):
    items: list[PurchaseOrderOut]
    total: int
    limit: int
    offset: int


class FoundryView(BaseModel):
    code: str
    name: str
    village: str
    product_families: list[str]
    revision: int
    updated_at: datetime


@router.post(
    "/purchase-orders",
    status_code=201,
    response_model=PurchaseOrderOut,
    tags=["purchase orders"],
    summary="Submit a purchase order",
    description="Retry with the same `Idempotency-Key` and body to get the same answer; the PO number is unique per buyer.",
    responses=problem_responses(409, 422),
)
async def submit_purchase_order(
    body: PurchaseOrderIn,
    sessions: Sessions,
    response: Response,
    idempotency_key: Annotated[str, Header(min_length=1, max_length=200, description="Unique per buyer and request")],
) -> PurchaseOrderOut:
    intake = await handlers.receive(
        sessions,
        idempotency_key=idempotency_key,
        body=body.model_dump(mode="json"),
        buyer_code=body.buyer_code,
        po_number=body.po_number,
        issued_on=body.issued_on,
        currency=body.currency,
        lines=[
            OrderLine(
                line_no=l.line_no,
                item_code=l.item_code,
                description=l.description,
                quantity=l.quantity,
                unit_price=l.unit_price,
                deliveries=tuple(Delivery(d.due_date, d.quantity, d.site_code) for d in l.deliveries),
            )
            for l in body.lines
        ],
    )
    response.headers["Location"] = f"/v1/purchase-orders/{intake.order.id}"
    if intake.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return PurchaseOrderOut.of(intake.order)


@router.get(
    "/purchase-orders/{order_id}",
    response_model=PurchaseOrderOut,
    tags=["purchase orders"],
    summary="One purchase order",
    responses=problem_responses(404),
)
async def get_purchase_order(order_id: str, sessions: Sessions) -> PurchaseOrderOut:
    async with sessions() as session:
        order = await store.get_order(session, order_id)
    if order is None:
        raise NotFound(f"no purchase order {order_id}")
    return PurchaseOrderOut.of(order)


@router.get(
    "/purchase-orders",
    response_model=PurchaseOrderPage,
    tags=["purchase orders"],
    summary="List purchase orders",
    responses=problem_responses(422),
)
async def list_purchase_orders(
    sessions: Sessions,
    buyer_code: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PurchaseOrderPage:
    async with sessions() as session:
        orders, total = await store.list_orders(session, buyer_code=buyer_code, status=status, limit=limit, offset=offset)
    return PurchaseOrderPage(items=[PurchaseOrderOut.of(o) for o in orders], total=total, limit=limit, offset=offset)


@router.get(
    "/foundries",
    response_model=list[FoundryView],
    tags=["projections"],
    summary="Member foundries as orders knows them (from capacity's events)",
    responses=problem_responses(),
)
async def list_known_foundries(sessions: Sessions) -> list[FoundryView]:
    async with sessions() as session:
        return [FoundryView(**row) for row in await list_foundries(session, store.foundry_projection)]
