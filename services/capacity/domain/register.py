"""The register of member foundries: who they are, what they make and with which equipment."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from shared.events.capacity import FoundryRegistered, FoundryUpdated, FurnaceData

from .errors import DomainError

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


class MembershipStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # still a member, but takes no new work (e.g. unpaid dues, a safety stop)
    RESIGNED = "resigned"


class FurnaceKind(StrEnum):
    CUPOLA = "cupola"  # coke-fired shaft furnace, run in batches when orders justify it
    INDUCTION = "induction"
    TUKIK = "tukik"  # small traditional crucible furnace
    BESALEN = "besalen"  # traditional smithy hearth


NPWP_16 = re.compile(r"^\d{16}$")
NPWP_15 = re.compile(r"^\d{2}\.\d{3}\.\d{3}\.\d-\d{3}\.\d{3}$")
MAX_FURNACE_TONNES_PER_DAY = 100.0
MAX_PRESSES = 50


@dataclass(frozen=True)
class Furnace:
    kind: FurnaceKind
    tonnes_per_day: float


@dataclass(frozen=True)
class Foundry:
    code: str
    name: str
    village: str
    product_families: tuple[ProductFamily, ...]
    revision: int
    registered_at: datetime
    updated_at: datetime
    owner: str | None = None
    npwp: str | None = None
    membership_status: MembershipStatus = MembershipStatus.ACTIVE
    furnaces: tuple[Furnace, ...] | None = None  # None: not recorded
    presses: int | None = None

    @property
    def active(self) -> bool:
        return self.membership_status is MembershipStatus.ACTIVE

    def makes(self, family: str) -> bool:
        return family in self.product_families

    @property
    def melt_tonnes_per_day(self) -> float | None:
        return sum(f.tonnes_per_day for f in self.furnaces) if self.furnaces is not None else None


def check_npwp(npwp: str) -> str:
    if NPWP_16.fullmatch(npwp) or NPWP_15.fullmatch(npwp):
        return npwp
    raise DomainError("npwp", f"{npwp!r} is not an NPWP: 16 digits, or the old 15-digit form 99.999.999.9-999.999")


def _check_equipment(furnaces: tuple[Furnace, ...] | None, presses: int | None) -> None:
    for i, furnace in enumerate(furnaces or ()):
        if not 0 < furnace.tonnes_per_day <= MAX_FURNACE_TONNES_PER_DAY:
            raise DomainError(
                f"furnaces.{i}.tonnes_per_day",
                f"must be more than 0 and at most {MAX_FURNACE_TONNES_PER_DAY:g} tonnes a day",
            )
    if presses is not None and not 0 <= presses <= MAX_PRESSES:
        raise DomainError("presses", f"must be between 0 and {MAX_PRESSES}")


def _check_entry(foundry: Foundry) -> None:
    if not foundry.name:
        raise DomainError("name", "must not be empty")
    if not foundry.village:
        raise DomainError("village", "must not be empty")
    if not foundry.product_families:
        raise DomainError("product_families", "a foundry makes at least one product family")
    if foundry.owner is not None and not foundry.owner:
        raise DomainError("owner", "must not be empty")
    if foundry.npwp is not None:
        check_npwp(foundry.npwp)
    _check_equipment(foundry.furnaces, foundry.presses)


def _furnace_data(foundry: Foundry) -> list[FurnaceData] | None:
    if foundry.furnaces is None:
        return None
    return [FurnaceData(kind=f.kind.value, tonnes_per_day=f.tonnes_per_day) for f in foundry.furnaces]


def register_foundry(
    code: str,
    name: str,
    village: str,
    product_families: list[ProductFamily],
    now: datetime,
    *,
    owner: str | None = None,
    npwp: str | None = None,
    membership_status: MembershipStatus = MembershipStatus.ACTIVE,
    furnaces: Sequence[Furnace] | None = None,
    presses: int | None = None,
) -> tuple[Foundry, FoundryRegistered]:
    if not FOUNDRY_CODE.fullmatch(code):  # `match` with `$` would let a trailing newline through
        raise DomainError("code", f"foundry code {code!r} must look like IKM-001")
    foundry = Foundry(
        code,
        name.strip(),
        village.strip(),
        tuple(dict.fromkeys(product_families)),  # keeps order, drops repeats
        0,
        now,
        now,
        owner=owner.strip() if owner is not None else None,
        npwp=npwp.strip() if npwp is not None else None,
        membership_status=MembershipStatus(membership_status),
        furnaces=tuple(furnaces) if furnaces is not None else None,
        presses=presses,
    )
    _check_entry(foundry)
    return foundry, FoundryRegistered(
        foundry_code=code,
        name=foundry.name,
        village=foundry.village,
        product_families=[f.value for f in foundry.product_families],
        registered_at=now,
        owner=foundry.owner,
        npwp=foundry.npwp,
        membership_status=foundry.membership_status.value,
        furnaces=_furnace_data(foundry),
        presses=foundry.presses,
    )


def update_foundry(
    foundry: Foundry,
    now: datetime,
    *,
    name: str | None = None,
    village: str | None = None,
    product_families: list[ProductFamily] | None = None,
    owner: str | None = None,
    npwp: str | None = None,
    membership_status: MembershipStatus | None = None,
    furnaces: Sequence[Furnace] | None = None,
    presses: int | None = None,
) -> tuple[Foundry, FoundryUpdated | None]:
    changed = replace(
        foundry,
        name=name.strip() if name is not None else foundry.name,
        village=village.strip() if village is not None else foundry.village,
        product_families=tuple(dict.fromkeys(product_families)) if product_families is not None else foundry.product_families,
        owner=owner.strip() if owner is not None else foundry.owner,
        npwp=npwp.strip() if npwp is not None else foundry.npwp,
        membership_status=MembershipStatus(membership_status) if membership_status is not None else foundry.membership_status,
        furnaces=tuple(furnaces) if furnaces is not None else foundry.furnaces,
        presses=presses if presses is not None else foundry.presses,
    )
    _check_entry(changed)
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
        owner=changed.owner,
        npwp=changed.npwp,
        membership_status=changed.membership_status.value,
        furnaces=_furnace_data(changed),
        presses=changed.presses,
    )


def families_withdrawn(before: Foundry, after: Foundry) -> list[ProductFamily]:
    """Families whose capacity is no longer offered after a register change: dropped ones, or all when the
    foundry stops being an active member. Their open reservations must be revoked."""
    if before.active and not after.active:
        return list(before.product_families)
    return [f for f in before.product_families if f not in after.product_families]
