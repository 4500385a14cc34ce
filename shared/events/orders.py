"""Events owned by the orders service, on topic `ceper.orders.v1`, keyed by order id."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from .registry import EventData, event


class ReceivedLine(BaseModel):
    line_no: int = Field(ge=1)
    item_code: str = Field(examples=["BB-COMP-K"])
    quantity: int = Field(gt=0, description="Units")


@event("orders", "purchase_order_received", key="order_id")
class PurchaseOrderReceived(EventData):
    """A buyer's purchase order was accepted for intake."""

    order_id: str
    buyer_code: str = Field(examples=["KAI"])
    po_number: str = Field(examples=["KAI/PO/2027/00042"])
    issued_on: date
    lines: list[ReceivedLine]
    received_at: datetime


class PlannedAllocation(BaseModel):
    allocation_id: str = Field(description="Stable across plan versions while the same foundry makes the same line's week")
    line_no: int = Field(ge=1)
    item_code: str
    product_family: str = Field(examples=["BRAKE_BLOCK_COMPOSITE"])
    foundry_code: str = Field(examples=["IKM-001"])
    week: str = Field(pattern=r"^\d{4}-W\d{2}$", examples=["2027-W05"], description="ISO week of production")
    quantity: int = Field(gt=0)
    due_date: date = Field(description="Delivery this production serves")


@event("orders", "allocation_planned", key="order_id")
class AllocationPlanned(EventData):
    """A new version of an order's allocation plan: the complete set of allocations, replacing the previous version."""

    order_id: str
    buyer_code: str
    plan_version: int = Field(ge=1)
    allocations: list[PlannedAllocation]
    planned_at: datetime


@event("orders", "purchase_order_cancelled", key="order_id")
class PurchaseOrderCancelled(EventData):
    """A purchase order was cancelled; capacity held for it is no longer needed."""

    order_id: str
    buyer_code: str
    reason: str
    cancelled_at: datetime


class ShippedItem(BaseModel):
    lot_code: str = Field(examples=["IKM-001-K-0001"])
    line_no: int = Field(ge=1)
    foundry_code: str
    due_date: date = Field(description="The delivery these units count towards")
    quantity: int = Field(gt=0)


@event("orders", "shipment_dispatched", key="order_id")
class ShipmentDispatched(EventData):
    """Passed units left for a buyer's site under a surat jalan (delivery note)."""

    shipment_id: str
    order_id: str
    buyer_code: str
    surat_jalan_number: str = Field(examples=["SJ/BJ/2027/0001"])
    site_code: str = Field(examples=["BY-YK"])
    vehicle_plate: str = Field(examples=["AD 8123 KT"])
    items: list[ShippedItem]
    dispatched_at: datetime


class HandedOverItem(BaseModel):
    lot_code: str
    line_no: int = Field(ge=1)
    due_date: date
    received: int = Field(ge=0)
    rejected: int = Field(ge=0, description="Refused at handover: made again, as a failed lot is")


@event("orders", "shipment_delivered", key="order_id")
class ShipmentDelivered(EventData):
    """The buyer signed the BAST (berita acara serah terima) for a shipment: what it received and what it refused."""

    shipment_id: str
    order_id: str
    buyer_code: str
    bast_number: str = Field(examples=["BAST/BY-YK/2027/0117"])
    signed_by: str
    signed_on: date
    items: list[HandedOverItem]
    delivered_at: datetime


@event("orders", "purchase_order_fulfilled", key="order_id")
class PurchaseOrderFulfilled(EventData):
    """Every unit of every line was received by the buyer."""

    order_id: str
    buyer_code: str
    po_number: str
    local_content_percent: float = Field(ge=0, le=100, description="TKDN of the supplied units, weighted by value")
    fulfilled_at: datetime
