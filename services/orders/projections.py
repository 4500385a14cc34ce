"""Orders' projections of capacity's and quality's events: free capacity, certificates, status, lots, items.

Event-carried state, so orders plans while capacity or quality are down. Rows come from event data only,
so `ceper replay orders` rebuilds the same tables.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import Envelope
from shared.events.capacity import (
    CapacityChanged,
    ReservationConfirmed,
    ReservationConsumed,
    ReservationExpired,
    ReservationReleased,
    ReservationRevoked,
)
from shared.events.quality import (
    CertificateGranted,
    CertificateRevoked,
    CertificationExpired,
    FoundryQualityStatusChanged,
    ItemPublished,
    LotFailed,
    LotPassed,
    LotRegistered,
)
from shared.weeks import week_start, weeks_between

from . import store


async def on_capacity_changed(session: AsyncSession, envelope: Envelope[CapacityChanged]) -> None:
    change = envelope.data
    if change.standard_weekly_units is not None:
        await store.set_standard_capacity(
            session,
            {
                "foundry_code": change.foundry_code,
                "product_family": change.product_family,
                "weekly_units": change.standard_weekly_units,
                "changed_at": change.changed_at,
            },
        )
    for week in change.weeks:
        await store.set_week_capacity(
            session,
            {
                "foundry_code": change.foundry_code,
                "product_family": change.product_family,
                "week": week.week,
                "capacity": week.capacity,
                "changed_at": change.changed_at,
            },
        )


async def on_reservation_event(session: AsyncSession, envelope: Envelope[Any]) -> None:
    data = envelope.data
    current = await store.reservation(session, data.reservation_id)
    values: dict[str, Any] = {"reservation_id": data.reservation_id, "foundry_code": data.foundry_code, "week": data.week}
    if isinstance(data, ReservationConfirmed):
        values.update(
            product_family=data.product_family,
            quantity=data.quantity,
            state="confirmed",
            order_id=data.order_id,
            allocation_id=data.allocation_id,
            plan_version=data.plan_version,
            updated_at=data.confirmed_at,
        )
        if current is not None and current.state in ("released", "expired"):
            return  # the release was seen first (events of one reservation may cross keys): it stays released
    elif isinstance(data, ReservationRevoked):
        values.update(
            product_family=data.product_family,
            quantity=data.remaining_quantity,
            state="confirmed" if data.remaining_quantity else "revoked",
            order_id=data.order_id,
            allocation_id=data.allocation_id,
            plan_version=data.plan_version,
            updated_at=data.revoked_at,
        )
    elif isinstance(data, (ReservationReleased, ReservationExpired)):
        values.update(
            product_family=data.product_family,
            quantity=0,
            state="released" if isinstance(data, ReservationReleased) else "expired",
            order_id=data.order_id,
            allocation_id=data.allocation_id,
            updated_at=data.at,
        )
    elif isinstance(data, ReservationConsumed):
        # Made units still used the week's capacity: the quantity stays, only the state says it is produced.
        if current is None:
            return
        values = {"reservation_id": data.reservation_id, "state": "consumed" if not data.remaining_quantity else current.state}
    else:  # pragma: no cover - wiring error
        raise TypeError(type(data).__name__)
    if current is None:
        values.setdefault("plan_version", None)
        await store.add_reservation(session, values)
    else:
        await store.update_reservation(session, data.reservation_id, values)


async def on_certificate_event(session: AsyncSession, envelope: Envelope[Any]) -> None:
    data = envelope.data
    if isinstance(data, CertificateGranted):
        await store.set_certificate(
            session,
            {
                "certificate_id": data.certificate_id,
                "foundry_code": data.foundry_code,
                "kind": data.kind,
                "valid_from": data.valid_from,
                "valid_until": data.valid_until,
                "tkdn_percent": data.tkdn_percent,
                "items": list(data.items),
                "state": "valid",
                "updated_at": data.granted_at,
            },
        )
        return
    state = "revoked" if isinstance(data, CertificateRevoked) else "expired"
    assert isinstance(data, (CertificateRevoked, CertificationExpired))
    await store.end_certificate(session, data.certificate_id, state)


async def on_item_published(session: AsyncSession, envelope: Envelope[ItemPublished]) -> None:
    """The item's version as quality published it; an older or the same version (a redelivery, a replay after a
    newer one, the seeded version announced) changes nothing."""
    data = envelope.data
    known = await store.item_version(session, data.item_code)
    if known is not None and known >= data.version:
        return
    await store.set_item(
        session,
        {
            "item_code": data.item_code,
            "version": data.version,
            "name": data.name_id,
            "product_family": data.product_family,
            "unit": data.unit,
            "min_lot": data.min_lot,
            "certificates": [kind.value for kind in data.required_certificates],
            "min_tkdn_percent": data.min_tkdn_percent,
            "retired": data.retired,
            "published_at": data.published_at,
        },
    )


async def on_quality_status_changed(session: AsyncSession, envelope: Envelope[FoundryQualityStatusChanged]) -> None:
    data = envelope.data
    await store.set_quality_status(
        session,
        {"foundry_code": data.foundry_code, "status": data.status, "pass_rate": data.pass_rate, "changed_at": data.changed_at},
    )


async def on_lot_event(session: AsyncSession, envelope: Envelope[Any]) -> None:
    data = envelope.data
    outcome = {LotRegistered: "registered", LotPassed: "passed", LotFailed: "failed"}[type(data)]
    current = await store.lot_outcome(session, data.lot_code)
    if current in ("passed", "failed") and outcome == "registered":
        return  # a decision is never undone by a late registration
    at = getattr(data, "decided_at", None) or data.registered_at
    await store.set_lot(
        session,
        {
            "lot_code": data.lot_code,
            "foundry_code": data.foundry_code,
            "item_code": data.item_code,
            "quantity": data.quantity,
            "order_id": data.order_id,
            "allocation_id": data.allocation_id,
            "outcome": outcome,
            "updated_at": at,
        },
    )


# --- queries the planner needs ------------------------------------------------------------------------


async def free_capacity(session: AsyncSession, product_family: str, first_week: str, last_week: str) -> dict[str, dict[str, int]]:
    """foundry → week → units not reserved by anyone, for the family and weeks."""
    capacity, held = await capacity_and_held(session, product_family, first_week, last_week)
    return {
        foundry: {week: max(0, units - held.get(foundry, {}).get(week, 0)) for week, units in weeks.items()}
        for foundry, weeks in capacity.items()
    }


async def capacity_and_held(
    session: AsyncSession, product_family: str, first_week: str, last_week: str
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """foundry → week → capacity, and foundry → week → units held for anyone, for the family and weeks."""
    capacity: dict[str, dict[str, int]] = {}
    for foundry, week, units in await store.listed_capacity(session, product_family, first_week, last_week):
        capacity.setdefault(foundry, {})[week] = units
    # A standard change lists a year of weeks; later ones follow the standard figure (the event's contract).
    weeks = weeks_between(week_start(first_week), week_start(last_week))
    for foundry, units in await store.standard_capacity(session, product_family):
        listed = capacity.setdefault(foundry, {})
        for week in weeks:
            listed.setdefault(week, units)
    # Allocations capacity has not confirmed yet are spoken for too: without them, orders planned close
    # together would take the same foundry-weeks and capacity would refuse the later ones.
    held: dict[str, dict[str, int]] = {}
    for foundry, week, units in await store.held_by_week(session, product_family, first_week, last_week):
        if foundry in capacity and week in capacity[foundry]:
            held.setdefault(foundry, {})[week] = held.get(foundry, {}).get(week, 0) + units
    return capacity, held


async def standing(session: AsyncSession, on: date, foundry_code: str | None = None) -> dict[str, dict[str, Any]]:
    """Per foundry (or just one): membership, families, certificates in force and quality status, for eligibility."""
    out: dict[str, dict[str, Any]] = {}
    for row in await store.members(session, foundry_code):
        out[row["code"]] = {
            "membership_status": row["membership_status"],
            "product_families": list(row["product_families"]),
            "certificates": [],
            "status": "good",
            "pass_rate": None,
        }
    for row in await store.valid_certificates(session, foundry_code):
        if row["foundry_code"] in out:
            out[row["foundry_code"]]["certificates"].append(dict(row))
    for row in await store.quality_statuses(session):
        if row["foundry_code"] in out:
            out[row["foundry_code"]]["status"] = row["status"]
            out[row["foundry_code"]]["pass_rate"] = row["pass_rate"]
    return out
