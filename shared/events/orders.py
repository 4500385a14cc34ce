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
