"""Events owned by the orders service, on topic `ceper.orders.v1`, keyed by order id."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field

from .fields import (
    INT32_MAX,
    AllocationId,
    BuyerCode,
    Count,
    DocumentNumber,
    FoundryCode,
    ItemCode,
    OrderId,
    PositiveCount,
    ProductFamily,
    ShipmentId,
    ShippedLotCode,
    SiteCode,
    Week,
)
from .registry import EventData, event

LineNo = Annotated[int, Field(ge=1, le=INT32_MAX)]


class ReceivedLine(BaseModel):
    line_no: LineNo
    item_code: ItemCode
    quantity: int = Field(gt=0, le=INT32_MAX, description="Units")


@event("orders", "purchase_order_received", key="order_id")
class PurchaseOrderReceived(EventData):
    """A buyer's purchase order was accepted for intake."""

    order_id: OrderId
    buyer_code: BuyerCode
    po_number: DocumentNumber = Field(examples=["KAI/PO/2027/00042"])
    issued_on: date
    lines: list[ReceivedLine]
    received_at: datetime


class PlannedAllocation(BaseModel):
    allocation_id: AllocationId = Field(
        description="Stable across plan versions while the same foundry makes the same line's week"
    )
    line_no: LineNo
    item_code: ItemCode
    product_family: ProductFamily
    foundry_code: FoundryCode
    week: Week = Field(examples=["2027-W05"], description="ISO week of production")
    quantity: PositiveCount
    due_date: date = Field(description="Delivery this production serves")


@event("orders", "allocation_planned", key="order_id")
class AllocationPlanned(EventData):
    """A new version of an order's allocation plan: the complete set of allocations, replacing the previous version."""

    order_id: OrderId
    buyer_code: BuyerCode
    plan_version: PositiveCount
    allocations: list[PlannedAllocation]
    planned_at: datetime


@event("orders", "purchase_order_cancelled", key="order_id")
class PurchaseOrderCancelled(EventData):
    """A purchase order was cancelled; capacity held for it is no longer needed."""

    order_id: OrderId
    buyer_code: BuyerCode
    reason: str = Field(max_length=300)
    cancelled_at: datetime


class ShippedItem(BaseModel):
    lot_code: ShippedLotCode
    line_no: LineNo
    foundry_code: FoundryCode
    due_date: date = Field(description="The delivery these units count towards")
    quantity: PositiveCount


@event("orders", "shipment_dispatched", key="order_id")
class ShipmentDispatched(EventData):
    """Passed units left for a buyer's site under a surat jalan (delivery note)."""

    shipment_id: ShipmentId
    order_id: OrderId
    buyer_code: BuyerCode
    surat_jalan_number: DocumentNumber = Field(examples=["SJ/BJ/2027/0001"])
    site_code: SiteCode
    vehicle_plate: str = Field(max_length=20, examples=["AD 8123 KT"])
    items: list[ShippedItem]
    dispatched_at: datetime


class HandedOverItem(BaseModel):
    lot_code: ShippedLotCode
    line_no: LineNo
    due_date: date
    received: Count
    rejected: int = Field(ge=0, le=INT32_MAX, description="Refused at handover: made again, as a failed lot is")


@event("orders", "shipment_delivered", key="order_id")
class ShipmentDelivered(EventData):
    """The buyer signed the BAST (berita acara serah terima) for a shipment: what it received and what it refused."""

    shipment_id: ShipmentId
    order_id: OrderId
    buyer_code: BuyerCode
    bast_number: DocumentNumber = Field(examples=["BAST/BY-YK/2027/0117"])
    signed_by: str = Field(max_length=200)
    signed_on: date
    items: list[HandedOverItem]
    delivered_at: datetime


@event("orders", "purchase_order_fulfilled", key="order_id")
class PurchaseOrderFulfilled(EventData):
    """Every unit of every line was received by the buyer."""

    order_id: OrderId
    buyer_code: BuyerCode
    po_number: DocumentNumber
    local_content_percent: float = Field(ge=0, le=100, description="TKDN of the supplied units, weighted by value")
    fulfilled_at: datetime
