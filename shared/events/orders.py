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
