"""Orders' projections of capacity's and quality's events: free capacity, certificates, status, lots.

Event-carried state, so orders plans while capacity or quality are down. Rows come from event data only,
so `ceper replay orders` rebuilds the same tables.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import upsert
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
    LotFailed,
    LotPassed,
    LotRegistered,
)
from shared.weeks import week_start, weeks_between

from . import store


async def on_capacity_changed(session: AsyncSession, envelope: Envelope[CapacityChanged]) -> None:
    change = envelope.data
    if change.standard_weekly_units is not None:
        await upsert(
            session,
            store.standard_capacity_projection,
            {
                "foundry_code": change.foundry_code,
                "product_family": change.product_family,
                "weekly_units": change.standard_weekly_units,
                "changed_at": change.changed_at,
            },
        )
    for week in change.weeks:
        await upsert(
            session,
            store.capacity_projection,
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
    table = store.reservation_projection
    current = (await session.execute(sa.select(table).where(table.c.reservation_id == data.reservation_id))).first()
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
        await session.execute(sa.insert(table).values(**values))
    else:
        await session.execute(sa.update(table).where(table.c.reservation_id == data.reservation_id).values(**values))


async def on_certificate_event(session: AsyncSession, envelope: Envelope[Any]) -> None:
    data = envelope.data
    table = store.certificate_projection
    if isinstance(data, CertificateGranted):
        await upsert(
            session,
            table,
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
    await session.execute(
        sa.update(table).where(table.c.certificate_id == data.certificate_id, table.c.state != "revoked").values(state=state)
    )


async def on_quality_status_changed(session: AsyncSession, envelope: Envelope[FoundryQualityStatusChanged]) -> None:
    data = envelope.data
    await upsert(
        session,
        store.quality_status_projection,
        {"foundry_code": data.foundry_code, "status": data.status, "pass_rate": data.pass_rate, "changed_at": data.changed_at},
    )


async def on_lot_event(session: AsyncSession, envelope: Envelope[Any]) -> None:
    data = envelope.data
    outcome = {LotRegistered: "registered", LotPassed: "passed", LotFailed: "failed"}[type(data)]
    table = store.lot_projection
    current = (await session.execute(sa.select(table.c.outcome).where(table.c.lot_code == data.lot_code))).scalar()
    if current in ("passed", "failed") and outcome == "registered":
        return  # a decision is never undone by a late registration
    at = getattr(data, "decided_at", None) or data.registered_at
    await upsert(
        session,
        table,
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
    cap = store.capacity_projection
    res = store.reservation_projection
    free: dict[str, dict[str, int]] = {}
    rows = await session.execute(
        sa.select(cap.c.foundry_code, cap.c.week, cap.c.capacity).where(
            cap.c.product_family == product_family, cap.c.week >= first_week, cap.c.week <= last_week
        )
    )
    for foundry, week, capacity in rows:
        free.setdefault(foundry, {})[week] = capacity
    # A standard change lists a year of weeks; later ones follow the standard figure (the event's contract).
    standard = store.standard_capacity_projection
    weeks = weeks_between(week_start(first_week), week_start(last_week))
    for foundry, units in await session.execute(
        sa.select(standard.c.foundry_code, standard.c.weekly_units).where(standard.c.product_family == product_family)
    ):
        listed = free.setdefault(foundry, {})
        for week in weeks:
            listed.setdefault(week, units)
    reserved = await session.execute(
        sa.select(res.c.foundry_code, res.c.week, sa.func.sum(res.c.quantity))
        .where(res.c.product_family == product_family, res.c.week >= first_week, res.c.week <= last_week)
        .group_by(res.c.foundry_code, res.c.week)
    )
    # Allocations capacity has not confirmed yet are spoken for too: without them, orders planned close
    # together would take the same foundry-weeks and capacity would refuse the later ones.
    latest = store.plans_in_force()
    alloc = store.allocations
    pending = await session.execute(
        sa.select(alloc.c.foundry_code, alloc.c.week, sa.func.sum(alloc.c.quantity))
        .join(latest, sa.and_(latest.c.order_id == alloc.c.order_id, latest.c.version == alloc.c.plan_version))
        .join(store.purchase_orders, store.purchase_orders.c.id == alloc.c.order_id)
        .where(
            alloc.c.product_family == product_family,
            alloc.c.week >= first_week,
            alloc.c.week <= last_week,
            alloc.c.state == "planned",
            store.order_is_open(),
        )
        .group_by(alloc.c.foundry_code, alloc.c.week)
    )
    for foundry, week, units in [*reserved, *pending]:
        if foundry in free and week in free[foundry]:
            free[foundry][week] = max(0, free[foundry][week] - int(units or 0))
    return free


async def standing(session: AsyncSession, on: date, foundry_code: str | None = None) -> dict[str, dict[str, Any]]:
    """Per foundry (or just one): membership, families, certificates in force and quality status, for eligibility."""
    out: dict[str, dict[str, Any]] = {}
    members = sa.select(store.foundry_projection)
    if foundry_code is not None:
        members = members.where(store.foundry_projection.c.code == foundry_code)
    for row in (await session.execute(members)).mappings():
        out[row["code"]] = {
            "membership_status": row["membership_status"],
            "product_families": list(row["product_families"]),
            "certificates": [],
            "status": "good",
            "pass_rate": None,
        }
    cert = store.certificate_projection
    certificates = sa.select(cert).where(cert.c.state == "valid")
    if foundry_code is not None:
        certificates = certificates.where(cert.c.foundry_code == foundry_code)
    for row in (await session.execute(certificates)).mappings():
        if row["foundry_code"] in out:
            out[row["foundry_code"]]["certificates"].append(dict(row))
    for row in (await session.execute(sa.select(store.quality_status_projection))).mappings():
        if row["foundry_code"] in out:
            out[row["foundry_code"]]["status"] = row["status"]
            out[row["foundry_code"]]["pass_rate"] = row["pass_rate"]
    return out
