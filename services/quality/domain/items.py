"""The item catalogue: what the cooperative makes, in versions. Each version says which of capacity's product
families makes the item, its unit, the fewest units worth making in a foundry-week, what its makers must hold
whatever an order says, and the sampling rule its first specification starts from. QA officers create items,
publish new versions and retire them; every version is published whole, so orders and capacity keep their own copy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.events.quality import CertificateKind, ItemPublished

from ..sampling import SamplingError
from .errors import Rejected, StateConflict, Violation
from .specifications import SamplingRule

ITEM_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,19}$")
PRODUCT_FAMILY = re.compile(r"^[A-Z][A-Z0-9_]{2,39}$")
UNITS = ("pcs", "set", "pair", "kg")  # pieces, sets (e.g. a bollard with its base plate), pairs, kilograms
MAX_MIN_LOT = 1_000_000


@dataclass(frozen=True)
class ItemTerms:
    """What a QA officer states about an item; a version of it is these terms with a number and a date."""

    name_id: str
    name_en: str
    product_family: str
    unit: str = "pcs"
    min_lot: int = 1
    required_certificates: tuple[CertificateKind, ...] = ()
    min_tkdn_percent: float | None = None
    sampling: SamplingRule = field(default_factory=SamplingRule)


@dataclass(frozen=True)
class Item:
    """One version of an item of the catalogue."""

    code: str
    version: int
    terms: ItemTerms
    published_at: datetime
    retired: bool = False

    @property
    def product_family(self) -> str:
        return self.terms.product_family

    @property
    def name(self) -> str:
        return self.terms.name_id


Catalogue = Mapping[str, Item]  # item code → its version in force


def unknown_item(item_code: str, catalogue: Catalogue) -> str:
    return f"unknown item {item_code!r}; known: {', '.join(sorted(catalogue))}"


def check_terms(terms: ItemTerms) -> list[Violation]:
    found: list[Violation] = []
    for name in ("name_id", "name_en"):
        text = getattr(terms, name)
        if not text.strip():
            found.append(Violation(name, "must not be empty"))
        elif len(text) > 200:
            found.append(Violation(name, "at most 200 characters"))
    if not PRODUCT_FAMILY.match(terms.product_family):
        found.append(
            Violation("product_family", "a product family is capacity's code in capital letters, e.g. PUMP_PARTS (3 to 40)")
        )
    if terms.unit not in UNITS:
        found.append(Violation("unit", f"unknown unit {terms.unit!r}; known: {', '.join(UNITS)}"))
    if not 1 <= terms.min_lot <= MAX_MIN_LOT:
        found.append(Violation("min_lot", f"must be from 1 to {MAX_MIN_LOT:,}"))
    seen: set[CertificateKind] = set()
    for i, kind in enumerate(terms.required_certificates):
        if kind in seen:
            found.append(Violation(f"required_certificates.{i}", f"{kind.value} appears twice"))
        seen.add(kind)
    tkdn = terms.min_tkdn_percent
    if tkdn is not None and not (math.isfinite(tkdn) and 0 < tkdn <= 100):
        found.append(Violation("min_tkdn_percent", "a TKDN minimum is more than 0 and at most 100 (leave it out for none)"))
    try:
        terms.sampling.plan_for(100)
    except SamplingError as exc:
        which = "inspection_level" if "level" in str(exc) else "aql"
        found.append(Violation(f"sampling.{which}", str(exc)))
    return found


def _tidy(terms: ItemTerms) -> ItemTerms:
    return replace(terms, name_id=terms.name_id.strip(), name_en=terms.name_en.strip())


def published(item: Item) -> ItemPublished:
    """The whole version as an event: whoever projects it needs nothing else."""
    terms = item.terms
    return ItemPublished(
        item_code=item.code,
        version=item.version,
        name_id=terms.name_id,
        name_en=terms.name_en,
        product_family=terms.product_family,
        unit=terms.unit,
        min_lot=terms.min_lot,
        required_certificates=list(terms.required_certificates),
        min_tkdn_percent=terms.min_tkdn_percent,
        retired=item.retired,
        published_at=item.published_at,
    )


def create_item(existing: Item | None, code: str, terms: ItemTerms, now: datetime) -> tuple[Item, ItemPublished]:
    """Version 1 of a new item."""
    found = [] if ITEM_CODE.match(code) else [Violation("code", "2 to 20 capital letters, digits and dashes, e.g. PMP-IMP-150")]
    found += check_terms(terms)
    if found:
        raise Rejected(found)
    if existing is not None:
        raise StateConflict(f"item {code} exists (version {existing.version}); publish a new version of it instead")
    item = Item(code, 1, _tidy(terms), now)
    return item, published(item)


def publish_version(current: Item, terms: ItemTerms, now: datetime) -> tuple[Item, ItemPublished]:
    """The next version of an item: new orders follow it; lots and specifications keep their own versions."""
    found = check_terms(terms)
    if found:
        raise Rejected(found)
    if current.retired:
        raise StateConflict(f"item {current.code} is retired; it takes no new version")
    terms = _tidy(terms)
    if terms == current.terms:
        raise StateConflict(f"version {current.version} of {current.code} already says exactly this")
    item = Item(current.code, current.version + 1, terms, now)
    return item, published(item)


def retire_item(current: Item, now: datetime) -> tuple[Item, ItemPublished]:
    """A last version that orders may no longer name; orders, lots and specifications that name it keep it."""
    if current.retired:
        raise StateConflict(f"item {current.code} is retired already")
    item = Item(current.code, current.version + 1, current.terms, now, retired=True)
    return item, published(item)
