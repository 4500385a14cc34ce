"""Orders' domain: buyers' purchase orders and their validation. Pure: no I/O; operations return events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.events.capacity import ReservationConfirmed
from shared.events.orders import PlannedAllocation, PurchaseOrderReceived, ReceivedLine
from shared.weeks import week_end

# How far ahead a due date, or a what-if question, may reach: planning looks a year past the last due date at most,
# so a date further on would cost weeks of planning for nothing.
LOOK_AHEAD_WEEKS = 104


@dataclass(frozen=True)
class Buyer:
    """A buyer the cooperative takes purchase orders from. An inactive one sends no new orders; its orders, shipments
    and webhooks go on."""

    code: str
    legal_name: str
    active: bool = True
    npwp: str | None = None  # tax id, for invoices: never in events, logs or the audit trail

    def public(self) -> dict[str, Any]:
        """What may be logged or audited: whether an NPWP is on file, not the number."""
        return {"code": self.code, "legal_name": self.legal_name, "active": self.active, "npwp_on_file": self.npwp is not None}


@dataclass(frozen=True)
class DeliverySite:
    """Where a buyer takes delivery (a Balai Yasa, a plant). An inactive one is named by no new order; deliveries of
    orders already received still go there."""

    code: str
    name: str
    buyer_code: str
    city: str
    address: str | None = None
    active: bool = True


@dataclass(frozen=True)
class Requirements:
    """What the makers of a line must hold: certificates (an SNI one covering the item) and a TKDN minimum."""

    certificates: tuple[str, ...] = ()
    min_tkdn_percent: float | None = None

    def adding(self, other: Requirements) -> Requirements:
        """These and what `other` adds: every certificate of both, the higher TKDN minimum."""
        minimum = max((m for m in (self.min_tkdn_percent, other.min_tkdn_percent) if m is not None), default=None)
        return Requirements(tuple(dict.fromkeys((*self.certificates, *other.certificates))), minimum)


@dataclass(frozen=True)
class Item:
    """An item buyers order, as quality's catalogue last published it: what makes it (capacity's product family),
    its minimum lot per foundry-week, and what its makers must hold whatever the order says (a line may only add
    to it). A retired item is no longer ordered; orders that name it keep it."""

    code: str
    description: str
    product_family: str
    min_lot: int = 1
    requirements: Requirements = Requirements()
    unit: str = "pcs"
    version: int = 1
    retired: bool = False


Catalogue = Mapping[str, Item]  # item code → the version orders knows


class OrderStatus(StrEnum):
    RECEIVED = "received"  # stored; the planner has not run yet
    PLANNED = "planned"  # a plan covers every delivery; capacity is reserving it
    ACCEPTED = "accepted"  # every allocation of the current plan is reserved
    NEEDS_REVIEW = "needs_review"  # eligible members cannot make it all in time: see the plan's shortfall
    CANCELLED = "cancelled"  # by the buyer; capacity held for it is released
    REJECTED = "rejected"  # the cooperative declined it (usually after review); capacity held for it is released
    FULFILLED = "fulfilled"  # every unit of every line was received by the buyer

    @property
    def closed(self) -> bool:
        """Nothing moves a closed order any more: no planning, no reactions."""
        return self in (OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.FULFILLED)


@dataclass(frozen=True)
class Delivery:
    due_date: date
    quantity: int
    site_code: str


@dataclass(frozen=True)
class OrderLine:
    line_no: int
    item_code: str
    description: str
    quantity: int
    unit_price: int  # whole rupiah
    deliveries: tuple[Delivery, ...]
    requirements: Requirements = Requirements()
    # Days earlier than testing and transport require that production should finish where capacity allows:
    # room to make a failed lot again. Set when the order is received (the line's own, else the setting).
    safety_lead_days: int = 0
    # The item as the catalogue knows it, attached when the order is received or read back (`with_items`).
    item: Item | None = None

    @property
    def catalogued(self) -> Item:
        if self.item is None:
            raise LookupError(f"line {self.line_no}: item {self.item_code} is not attached from the catalogue")
        return self.item

    @property
    def product_family(self) -> str:
        return self.catalogued.product_family

    @property
    def min_lot(self) -> int:
        """The fewest units of the item worth making in one foundry-week."""
        return self.catalogued.min_lot

    @property
    def required(self) -> Requirements:
        """What the makers of the line must hold: the item's requirements and what the line adds to them."""
        return self.catalogued.requirements.adding(self.requirements)

    @property
    def last_due_date(self) -> date:
        return max(d.due_date for d in self.deliveries)


@dataclass(frozen=True)
class PurchaseOrder:
    id: str
    buyer_code: str
    po_number: str
    issued_on: date
    currency: str
    lines: tuple[OrderLine, ...]
    status: OrderStatus
    received_at: datetime
    status_reason: str | None = None  # why it was cancelled or rejected

    @property
    def total_amount(self) -> int:
        return sum(line.quantity * line.unit_price for line in self.lines)


@dataclass(frozen=True)
class Violation:
    field: str
    message: str


class OrderRejected(ValueError):
    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))
        self.violations = violations


def with_items(lines: Sequence[OrderLine], catalogue: Catalogue) -> tuple[OrderLine, ...]:
    """The lines with their items from the catalogue attached (a line of an unknown item stays without)."""
    return tuple(replace(line, item=catalogue.get(line.item_code)) for line in lines)


def check_purchase_order(
    buyer_code: str,
    issued_on: date,
    currency: str,
    lines: list[OrderLine],
    today: date,
    *,
    buyers: Mapping[str, Buyer],
    sites: Mapping[str, DeliverySite],
    catalogue: Catalogue,
) -> list[Violation]:
    """Every rule a purchase order must meet, given the buyers, delivery sites and items orders knows; an empty list
    means it can be received."""
    violations: list[Violation] = []
    latest = today + timedelta(weeks=LOOK_AHEAD_WEEKS)
    buyer = buyers.get(buyer_code)
    if buyer is None:
        known = ", ".join(code for code, b in buyers.items() if b.active)
        violations.append(Violation("buyer_code", f"unknown buyer {buyer_code!r}; known: {known}"))
    elif not buyer.active:
        violations.append(Violation("buyer_code", f"buyer {buyer_code} is inactive: it may send no new purchase orders"))
    if currency != "IDR":
        violations.append(Violation("currency", "only IDR (whole rupiah) is accepted"))
    if issued_on > today:
        violations.append(Violation("issued_on", "must not be in the future"))
    if not lines:
        violations.append(Violation("lines", "an order has at least one line"))
    seen_line_numbers: set[int] = set()
    for i, line in enumerate(lines):
        where = f"lines.{i}"
        if line.line_no < 1:
            violations.append(Violation(f"{where}.line_no", "must be 1 or more"))
        elif line.line_no in seen_line_numbers:
            violations.append(Violation(f"{where}.line_no", f"line number {line.line_no} repeats"))
        seen_line_numbers.add(line.line_no)
        item = catalogue.get(line.item_code)
        orderable = sorted(code for code, known in catalogue.items() if not known.retired)
        if item is None:
            violations.append(Violation(f"{where}.item_code", f"unknown item {line.item_code!r}; known: {', '.join(orderable)}"))
        elif item.retired:
            violations.append(Violation(f"{where}.item_code", f"item {line.item_code} is retired; known: {', '.join(orderable)}"))
        if line.quantity <= 0:
            violations.append(Violation(f"{where}.quantity", "must be greater than 0"))
        if line.unit_price <= 0:
            violations.append(Violation(f"{where}.unit_price", "must be greater than 0"))
        if not line.deliveries:
            violations.append(Violation(f"{where}.deliveries", "a line has at least one delivery"))
        delivered = 0
        for j, delivery in enumerate(line.deliveries):
            at = f"{where}.deliveries.{j}"
            delivered += delivery.quantity
            if delivery.quantity <= 0:
                violations.append(Violation(f"{at}.quantity", "must be greater than 0"))
            if delivery.due_date <= today:
                violations.append(Violation(f"{at}.due_date", "must be after today"))
            elif delivery.due_date > latest:
                violations.append(
                    Violation(f"{at}.due_date", f"must not be after {latest.isoformat()} ({LOOK_AHEAD_WEEKS} weeks ahead)")
                )
            site = sites.get(delivery.site_code)
            if site is None:
                known = ", ".join(code for code, s in sites.items() if s.active)
                violations.append(Violation(f"{at}.site_code", f"unknown site {delivery.site_code!r}; known: {known}"))
            elif not site.active:
                violations.append(
                    Violation(f"{at}.site_code", f"site {delivery.site_code} is inactive: it takes no new deliveries")
                )
            elif buyer is not None and site.buyer_code != buyer_code:
                own = ", ".join(code for code, s in sites.items() if s.active and s.buyer_code == buyer_code) or "none"
                violations.append(
                    Violation(
                        f"{at}.site_code",
                        f"site {delivery.site_code} is {site.buyer_code}'s, not {buyer_code}'s; {buyer_code}'s sites: {own}",
                    )
                )
        if line.deliveries and delivered != line.quantity:
            violations.append(
                Violation(f"{where}.deliveries", f"deliveries sum to {delivered} but the line orders {line.quantity}")
            )
    return violations


def check_delivery_site(site: DeliverySite, buyers: Mapping[str, Buyer]) -> list[Violation]:
    """A delivery site belongs to a buyer orders knows; an empty list means it may be kept."""
    if site.buyer_code not in buyers:
        return [Violation("buyer_code", f"unknown buyer {site.buyer_code!r}; known: {', '.join(buyers)}")]
    return []


def receive_purchase_order(
    order_id: str,
    buyer_code: str,
    po_number: str,
    issued_on: date,
    currency: str,
    lines: list[OrderLine],
    today: date,
    now: datetime,
    *,
    buyers: Mapping[str, Buyer],
    sites: Mapping[str, DeliverySite],
    catalogue: Catalogue,
) -> tuple[PurchaseOrder, PurchaseOrderReceived]:
    violations = check_purchase_order(
        buyer_code, issued_on, currency, lines, today, buyers=buyers, sites=sites, catalogue=catalogue
    )
    if violations:
        raise OrderRejected(violations)
    order = PurchaseOrder(
        order_id, buyer_code, po_number, issued_on, currency, with_items(lines, catalogue), OrderStatus.RECEIVED, now
    )
    event = PurchaseOrderReceived(
        order_id=order_id,
        buyer_code=buyer_code,
        po_number=po_number,
        issued_on=issued_on,
        lines=[ReceivedLine(line_no=line.line_no, item_code=line.item_code, quantity=line.quantity) for line in lines],
        received_at=now,
    )
    return order, event


@dataclass(frozen=True)
class CertificateHeld:
    kind: str
    valid_from: date
    valid_until: date
    items: tuple[str, ...] = ()
    tkdn_percent: float | None = None


@dataclass(frozen=True)
class FoundryStanding:
    """What orders knows of a member from capacity's and quality's events."""

    code: str
    membership_status: str
    product_families: tuple[str, ...]
    certificates: tuple[CertificateHeld, ...]
    quality_status: str = "good"
    pass_rate: float | None = None


def why_not_eligible(foundry: FoundryStanding, line: OrderLine, today: date, through: date | None = None) -> list[str]:
    """Reasons a member may not make a line's deliveries due up to `through` (default: all of them); none means
    eligible. Required certificates must be valid from today through that delivery."""
    reasons: list[str] = []
    if foundry.membership_status != "active":
        reasons.append(f"membership {foundry.membership_status}")
    if line.product_family not in foundry.product_families:
        reasons.append(f"does not make {line.product_family}")
    if foundry.quality_status == "suspended":
        reasons.append("quality status suspended")
    through = through or line.last_due_date

    def valid(certificate: CertificateHeld) -> bool:
        return certificate.valid_from <= today and certificate.valid_until >= through

    required = line.required
    for kind in required.certificates:
        held = [c for c in foundry.certificates if c.kind == kind and valid(c)]
        if kind == "SNI":
            held = [c for c in held if line.item_code in c.items]
        if not held:
            reasons.append(
                f"no {kind} certificate valid through {through.isoformat()}"
                + (f" covering {line.item_code}" if kind == "SNI" else "")
            )
    minimum = required.min_tkdn_percent
    if minimum is not None:
        best = max((c.tkdn_percent or 0.0 for c in foundry.certificates if c.kind == "TKDN" and valid(c)), default=None)
        if best is None or best < minimum:
            reasons.append(f"TKDN {best if best is not None else 'none'} below {minimum:g}%")
    return reasons


def serves_until(foundry: FoundryStanding, line: OrderLine, today: date) -> date | None:
    """The last due date of the line the member may serve (certificates run out; they are not granted back
    by time), or None when it may serve none of the line's deliveries."""
    last: date | None = None
    for due in sorted({d.due_date for d in line.deliveries}):
        if why_not_eligible(foundry, line, today, due):
            break
        last = due
    return last


def tkdn_of(foundry: FoundryStanding, on: date) -> float:
    """The member's local-content figure on a day: its best TKDN certificate then valid, else 0."""
    return max(
        (c.tkdn_percent or 0.0 for c in foundry.certificates if c.kind == "TKDN" and c.valid_from <= on <= c.valid_until),
        default=0.0,
    )


# --- the plan in force and capacity's answers ------------------------------------------------------------


@dataclass(frozen=True)
class WebhookMessage:
    """A message for the buyer's webhook endpoint: its type (one of `webhooks.WEBHOOK_EVENT_TYPES`) and data."""

    event_type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where a buyer receives webhooks and the secrets that sign them. After a rotation the previous secret
    keeps signing until `previous_secret_expires_at`, so the buyer's verifier can switch without a gap."""

    buyer_code: str
    url: str
    secret: str
    enabled: bool
    updated_at: datetime
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None

    def signing_secrets(self, at: datetime) -> tuple[str, ...]:
        """The secrets a message sent at `at` is signed with: the current one, and the previous one in its grace."""
        expires = self.previous_secret_expires_at
        if self.previous_secret is not None and expires is not None and at < expires:
            return (self.secret, self.previous_secret)
        return (self.secret,)

    def rotated(self, secret: str, at: datetime, grace: timedelta) -> WebhookEndpoint:
        """The endpoint signing with `secret` from `at` on; the old secret signs too until `at + grace`."""
        if secret == self.secret:
            return self
        in_grace = grace > timedelta(0)
        return WebhookEndpoint(
            self.buyer_code,
            self.url,
            secret,
            self.enabled,
            at,
            previous_secret=self.secret if in_grace else None,
            previous_secret_expires_at=at + grace if in_grace else None,
        )

    def public(self) -> dict[str, Any]:
        """What may be shown, logged or audited: never a secret."""
        expires = self.previous_secret_expires_at
        return {
            "buyer_code": self.buyer_code,
            "url": self.url,
            "enabled": self.enabled,
            "updated_at": self.updated_at.isoformat(),
            "previous_secret_expires_at": expires.isoformat() if expires is not None else None,
        }


@dataclass(frozen=True)
class Allocated:
    """An allocation of a plan version and how far capacity took it: planned, reserved or rejected."""

    allocation: PlannedAllocation
    state: str = "planned"


@dataclass(frozen=True)
class PlanInForce:
    """The newest version of an order's plan."""

    version: int
    allocations: tuple[Allocated, ...]
    # The lines it cannot finish in time: {line_no, shortfall, due_dates, late, expected_completion}; late: the
    # units per due date [{due_date, units}].
    risk: tuple[dict[str, Any], ...] = ()
    # The units no eligible member can make in time: {line_no, week, quantity, eligible_members}.
    shortfall: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ConfirmationTaken:
    """What a confirmation from capacity changes: the allocation it names is reserved; the order may be accepted."""

    allocation_id: str
    plan_version: int
    accepted: bool
    webhooks: tuple[WebhookMessage, ...] = ()


def take_confirmation(
    order: PurchaseOrder, plan: PlanInForce | None, confirmed: ReservationConfirmed
) -> ConfirmationTaken | None:
    """The allocation a confirmation names is reserved while the plan in force holds it as it was confirmed, whichever
    version the confirmation named (capacity reserves an allocation kept unchanged once, whatever version comes
    next). A planned order is accepted once every allocation of its plan in force is reserved. None: it counts
    for nothing (a version orders never made, or an allocation the plan in force changed: capacity reserves that
    again for the new version)."""
    if plan is None or confirmed.allocation_id is None or (confirmed.plan_version or 0) > plan.version:
        return None
    if not any(
        a.allocation.allocation_id == confirmed.allocation_id
        and a.allocation.quantity == confirmed.quantity
        and a.allocation.foundry_code == confirmed.foundry_code
        and a.allocation.week == confirmed.week
        for a in plan.allocations
    ):
        return None
    still_open = [a for a in plan.allocations if a.allocation.allocation_id != confirmed.allocation_id and a.state != "reserved"]
    if order.status != OrderStatus.PLANNED or still_open:
        return ConfirmationTaken(confirmed.allocation_id, plan.version, accepted=False)
    about = {"order_id": order.id, "po_number": order.po_number, "plan_version": plan.version}
    return ConfirmationTaken(
        confirmed.allocation_id, plan.version, accepted=True, webhooks=(WebhookMessage("order.accepted", about),)
    )


@dataclass(frozen=True)
class Lot:
    """A lot of production for an order, as quality reported it."""

    lot_code: str
    foundry_code: str
    item_code: str
    quantity: int
    allocation_id: str | None
    outcome: str  # registered, passed or failed


def lot_counts_for(order: PurchaseOrder, lot: Lot, allocations: Mapping[str, tuple[int, date, str]]) -> tuple[int, date] | None:
    """The line and delivery a lot serves: those of its allocation (`allocations`: id → line, due date, foundry, of
    every version), else the first line of its item and that line's first delivery; None when the order has no
    line of its item."""
    if lot.allocation_id is not None and lot.allocation_id in allocations:
        line_no, due, _ = allocations[lot.allocation_id]
        return line_no, due
    line = next((candidate for candidate in order.lines if candidate.item_code == lot.item_code), None)
    if line is None:
        return None
    return line.line_no, min(d.due_date for d in line.deliveries)


# --- fulfilment ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineProgress:
    """A line's units by stage. Planned and reserved come from the plan in force; the rest from what happened."""

    line_no: int
    ordered: int
    planned: int = 0
    reserved: int = 0
    produced: int = 0
    passed: int = 0
    failed: int = 0
    shipped: int = 0
    delivered: int = 0
    rejected: int = 0  # refused by the buyer at handover
    loading: int = 0  # on shipments still being loaded, not yet dispatched

    @property
    def shippable(self) -> int:
        """Passed units not yet on any shipment."""
        return max(0, self.passed - self.shipped - self.loading)


def outstanding(delivery_quantity: int, planned: int, made_again: int) -> int:
    """Units of a delivery no allocation covers: what the plan lacks, plus units of failed lots and units the
    buyer refused at handover, which must be made again (their allocations stay: that capacity was used)."""
    return max(0, delivery_quantity - planned + made_again)


def expected_completion(
    units: int, free_by_week: dict[str, int], weeks: list[str], lead_days: int, min_quantity: int
) -> date | None:
    """When `units` late units could reach the buyer at the earliest: the eligible members' free capacity, week
    by week in order (a foundry-week below the minimum useful quantity does not count), plus testing and
    transport. None when even the horizon's free capacity is not enough."""
    made = 0
    for week in weeks:
        made += free_by_week.get(week, 0)
        if made >= units:
            return week_end(week) + timedelta(days=lead_days)
    return None


class ShipmentStatus(StrEnum):
    PREPARED = "prepared"  # surat jalan written, units being loaded
    DISPATCHED = "dispatched"  # on the road
    DELIVERED = "delivered"  # BAST signed by the buyer


def split_over_deliveries(line: OrderLine, site_code: str, quantity: int, already: dict[date, int]) -> list[tuple[date, int]]:
    """Which of the line's deliveries to the site a shipment's units count towards: earliest due first, none
    beyond what a delivery still needs. `already` is what earlier shipments (less refused units) cover."""
    out: list[tuple[date, int]] = []
    left = quantity
    for delivery in sorted(line.deliveries, key=lambda d: d.due_date):
        if left == 0:
            break
        if delivery.site_code != site_code:
            continue
        room = delivery.quantity - already.get(delivery.due_date, 0)
        if room <= 0:
            continue
        take = min(room, left)
        out.append((delivery.due_date, take))
        left -= take
    if left:
        raise ValueError(f"line {line.line_no} needs only {quantity - left} more units at {site_code}")
    return out


def split_handover(shipped: list[tuple[date, int]], received: int, rejected: int) -> list[tuple[date, int, int]]:
    """A lot's received and refused units over the deliveries it counted towards: received fill the earliest."""
    if received + rejected != sum(q for _, q in shipped):
        raise ValueError(f"received {received} and rejected {rejected} must add up to the {sum(q for _, q in shipped)} shipped")
    out: list[tuple[date, int, int]] = []
    left = received
    for due, quantity in sorted(shipped):
        got = min(quantity, left)
        left -= got
        out.append((due, got, quantity - got))
    return out


def local_content(supplied: list[tuple[int, float]]) -> float | None:
    """TKDN of what was supplied, weighted by value: [(rupiah, tkdn %)]; None before anything was received."""
    value = sum(v for v, _ in supplied)
    if value <= 0:
        return None
    return round(sum(v * t for v, t in supplied) / value, 2)
