"""Capacity's domain: the register of member foundries. Pure: no I/O; operations return the events they cause."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from shared.events.capacity import FoundryRegistered, FoundryUpdated

FOUNDRY_CODE = re.compile(r"^IKM-\d{3,4}$")


class ProductFamily(StrEnum):
    BRAKE_BLOCK_COMPOSITE = "BRAKE_BLOCK_COMPOSITE"
    BRAKE_BLOCK_CAST_IRON = "BRAKE_BLOCK_CAST_IRON"
    PUMP_PARTS = "PUMP_PARTS"
    MACHINE_PARTS = "MACHINE_PARTS"
    SHIP_PARTS = "SHIP_PARTS"
    AUTOMOTIVE_PARTS = "AUTOMOTIVE_PARTS"
    RAILWAY_PARTS = "RAILWAY_PARTS"
    HOUSEHOLD_GOODS = "HOUSEHOLD_GOODS"


class DomainError(ValueError):
    """A rule of the register was broken; `field` names the offending field, the message says which rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Foundry:
    code: str
    name: str
    village: str
    product_families: tuple[ProductFamily, ...]
    revision: int
    registered_at: datetime
    updated_at: datetime


def register_foundry(
    code: str, name: str, village: str, product_families: list[ProductFamily], now: datetime
) -> tuple[Foundry, FoundryRegistered]:
    if not FOUNDRY_CODE.fullmatch(code):  # `match` with `$` would let a trailing newline through
        raise DomainError("code", f"foundry code {code!r} must look like IKM-001")
    if not name.strip():
        raise DomainError("name", "must not be empty")
    if not village.strip():
        raise DomainError("village", "must not be empty")
    if not product_families:
        raise DomainError("product_families", "a foundry makes at least one product family")
    families = tuple(dict.fromkeys(product_families))  # keeps order, drops repeats
    foundry = Foundry(code, name.strip(), village.strip(), families, 0, now, now)
    return foundry, FoundryRegistered(
        foundry_code=code,
        name=foundry.name,
        village=foundry.village,
        product_families=[f.value for f in families],
        registered_at=now,
    )


def update_foundry(
    foundry: Foundry,
    now: datetime,
    *,
    name: str | None = None,
    village: str | None = None,
    product_families: list[ProductFamily] | None = None,
) -> tuple[Foundry, FoundryUpdated | None]:
    changed = replace(
        foundry,
        name=name.strip() if name is not None else foundry.name,
        village=village.strip() if village is not None else foundry.village,
        product_families=tuple(dict.fromkeys(product_families)) if product_families is not None else foundry.product_families,
    )
    if not changed.name:
        raise DomainError("name", "must not be empty")
    if not changed.village:
        raise DomainError("village", "must not be empty")
    if not changed.product_families:
        raise DomainError("product_families", "a foundry makes at least one product family")
    if changed == foundry:
        return foundry, None  # nothing changed: no event, no new revision
    changed = replace(changed, revision=foundry.revision + 1, updated_at=now)
    return changed, FoundryUpdated(
        foundry_code=changed.code,
        name=changed.name,
        village=changed.village,
        product_families=[f.value for f in changed.product_families],
        revision=changed.revision,
        updated_at=now,
    )
