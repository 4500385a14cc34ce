"""Events owned by the capacity service, on topic `ceper.capacity.v1`, keyed by foundry code."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from .registry import EventData, event


@event("capacity", "foundry_registered", key="foundry_code")
class FoundryRegistered(EventData):
    """A member foundry (IKM) joined the cooperative's register."""

    foundry_code: str = Field(examples=["IKM-001"])
    name: str
    village: str
    product_families: list[str] = Field(description="Product families the foundry can make")
    registered_at: datetime


@event("capacity", "foundry_updated", key="foundry_code")
class FoundryUpdated(EventData):
    """A member foundry's register entry changed; carries the whole new entry."""

    foundry_code: str = Field(examples=["IKM-001"])
    name: str
    village: str
    product_families: list[str]
    revision: int = Field(ge=1, description="Increases by one with every change of this foundry")
    updated_at: datetime
