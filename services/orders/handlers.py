"""Orders' use cases (commands from the API) and reactions (events from other services)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import clock
from shared.events import Envelope
from shared.events.capacity import ReservationConfirmed, ReservationRejected, ReservationRevoked
from shared.events.orders import AllocationPlanned, PlannedAllocation, PurchaseOrderCancelled, PurchaseOrderReceived
from shared.http import Conflict, FieldError, NotFound, Unprocessable
from shared.projections import project_foundry

from . import projections, store, webhooks
from .domain import (
    CertificateHeld,
    FoundryStanding,
    OrderLine,
    OrderRejected,
    OrderStatus,
    PurchaseOrder,
    receive_purchase_order,
    why_not_eligible,
)
from .planner import Candidate, Demand, PlanRules, iso_week, plan_line, shortfall_by_week


@dataclass(frozen=True)
class Intake:
    order: PurchaseOrder
    replayed: bool  # True when an earlier request with the same Idempotency-Key created it


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


async def receive(
    sessions: async_sessionmaker[AsyncSession],
    *,
    idempotency_key: str,
    body: dict[str, Any],
    buyer_code: str,
    po_number: str,
    issued_on: date,
    currency: str,
    lines: list[OrderLine],
) -> Intake:
    fingerprint = request_hash(body)
    now = datetime.now(timezone.utc)
    try:
        async with sessions.begin() as session:
            earlier = await store.find_idempotency_key(session, buyer_code, idempotency_key)
            if earlier is not None:
                if earlier.request_hash != fingerprint:
                    raise Conflict("this Idempotency-Key was already used with a different request body")
                order = await store.get_order(session, earlier.order_id)
                assert order is not None
                # The same answer as the first time; GET shows how the order has moved on since.
                return Intake(replace(order, status=OrderStatus.RECEIVED), replayed=True)
            if await store.find_order_by_po(session, buyer_code, po_number) is not None:
                raise Conflict(f"{buyer_code} already sent purchase order {po_number}")
            try:
                order, received = receive_purchase_order(
                    f"po_{uuid.uuid4().hex[:20]}", buyer_code, po_number, issued_on, currency, lines, now.date(), now
                )
            except OrderRejected as exc:
                raise Unprocessable(
                    str(exc), errors=[FieldError(field=f"body.{v.field}", message=v.message) for v in exc.violations]
                ) from exc
            await store.add_order(session, order)
            await store.add_idempotency_key(
                session,
                {"buyer_code": buyer_code, "key": idempotency_key, "request_hash": fingerprint, "order_id": order.id, "created_at": now},
            )
            await store.publish(session, received)
    except sa.exc.IntegrityError as exc:
        # Two identical requests raced: the loser sees the winner's key or PO number.
        raise Conflict("a concurrent request with the same Idempotency-Key or PO number won; retry to get its answer") from exc
    return Intake(order, replayed=False)


async def cancel(sessions: async_sessionmaker[AsyncSession], order_id: str, reason: str) -> PurchaseOrder:
    async with sessions.begin() as session:
        order = await store.get_order(session, order_id)
        if order is None:
            raise NotFound(f"no purchase order {order_id}")
        if order.status == OrderStatus.CANCELLED:
            raise Conflict(f"purchase order {order_id} is already cancelled")
        await store.set_status(session, order_id, OrderStatus.CANCELLED)
        await store.publish(
            session, PurchaseOrderCancelled(order_id=order_id, buyer_code=order.buyer_code, reason=reason, cancelled_at=clock.now())
        )
    return replace(order, status=OrderStatus.CANCELLED)


async def on_foundry_changed(session: AsyncSession, envelope: Envelope[Any]) -> None:
    await project_foundry(session, store.foundry_projection, envelope)


# --- planning ---------------------------------------------------------------------------------------------

PLAN_RULES = PlanRules(time_limit_s=1.0)


async def _standings(session: AsyncSession, today: date) -> list[FoundryStanding]:
    raw = await projections.standing(session, today)
    return [
        FoundryStanding(
            code=code,
            membership_status=entry["membership_status"],
            product_families=tuple(entry["product_families"]),
            certificates=tuple(
                CertificateHeld(c["kind"], c["valid_from"], c["valid_until"], tuple(c["items"] or ()), c["tkdn_percent"])
                for c in entry["certificates"]
            ),
            quality_status=entry["status"],
            pass_rate=entry["pass_rate"],
        )
        for code, entry in sorted(raw.items())
    ]


async def plan_order(
    session: AsyncSession,
    order_id: str,
    reason: str,
    *,
    lost: dict[str, int] | None = None,
    blocked: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
) -> int | None:
    """Plans what the order still needs and publishes the new version; returns it.

    The first plan covers everything. A replan keeps every allocation of the plan in force except the units
    `lost` (rejected or revoked) and plans only those again, never in the foundry-weeks `blocked` by capacity.
    """
    order = await store.get_order(session, order_id)
    if order is None or order.status == OrderStatus.CANCELLED:
        return None
    lost = lost or {}
    today = clock.today()
    previous, rows = await store.current_plan(session, order_id)
    version = (previous.version if previous is not None else 0) + 1
    kept: list[tuple[PlannedAllocation, str]] = []
    for row in rows:
        quantity = row.quantity - lost.get(row.allocation_id, 0)
        if row.state != "rejected" and quantity > 0:
            kept.append((PlannedAllocation(**{f: getattr(row, f) for f in PlannedAllocation.model_fields} | {"quantity": quantity}), row.state))
    standings = await _standings(session, today)
    planned: list[tuple[PlannedAllocation, str]] = list(kept)
    shortfall: list[dict[str, Any]] = []
    solvers: set[str] = set()
    for line in order.lines:
        on_line = [a for a, _ in kept if a.line_no == line.line_no]
        demands = [
            Demand(d.due_date, d.quantity - sum(a.quantity for a in on_line if a.due_date == d.due_date)) for d in line.deliveries
        ]
        demands = [d for d in demands if d.quantity > 0]
        if not demands:
            continue
        eligible = [f for f in standings if not why_not_eligible(f, line, today)]
        free = await projections.free_capacity(session, line.product_family, iso_week(today), iso_week(line.last_due_date))
        for foundry, week in blocked:
            free.get(foundry, {}).pop(week, None)
        already: dict[str, int] = {}
        for a in on_line:
            already[a.foundry_code] = already.get(a.foundry_code, 0) + a.quantity
        candidates = [
            Candidate(f.code, free.get(f.code, {}), quality=f.pass_rate if f.pass_rate is not None else 0.9, already=already.get(f.code, 0))
            for f in eligible
        ]
        plan = plan_line(demands, candidates, today, PLAN_RULES, line_total=line.quantity)
        solvers.add(plan.solver)
        for a in plan.allocations:
            allocation = PlannedAllocation(
                # The version keeps ids of new allocations apart from kept ones in the same foundry-week.
                allocation_id=f"{order_id}:{line.line_no}:{a.foundry_code}:{a.week}:{a.due_date.isoformat()}:v{version}",
                line_no=line.line_no,
                item_code=line.item_code,
                product_family=line.product_family,
                foundry_code=a.foundry_code,
                week=a.week,
                quantity=a.quantity,
                due_date=a.due_date,
            )
            planned.append((allocation, "planned"))
        for week, units in shortfall_by_week(plan, PLAN_RULES).items():
            shortfall.append({"line_no": line.line_no, "week": week, "quantity": units, "eligible_members": len(eligible)})
    now = clock.now()
    await session.execute(
        sa.insert(store.plans).values(
            order_id=order_id, version=version, created_at=now, solver="+".join(sorted(solvers)) or "kept", shortfall=shortfall, reason=reason
        )
    )
    if planned:
        await session.execute(
            sa.insert(store.allocations),
            [{**a.model_dump(), "order_id": order_id, "plan_version": version, "state": state} for a, state in planned],
        )
    all_reserved = bool(planned) and all(state == "reserved" for _, state in planned)
    status = OrderStatus.NEEDS_REVIEW if shortfall else OrderStatus.ACCEPTED if all_reserved else OrderStatus.PLANNED
    await store.set_status(session, order_id, status)
    await store.publish(
        session,
        AllocationPlanned(
            order_id=order_id, buyer_code=order.buyer_code, plan_version=version, allocations=[a for a, _ in planned], planned_at=now
        ),
    )
    if shortfall and previous is None:
        await webhooks.enqueue(
            session, order.buyer_code, "order.needs_review", {"order_id": order_id, "po_number": order.po_number, "shortfall": shortfall}
        )
    elif shortfall:
        await webhooks.enqueue(
            session, order.buyer_code, "line.at_risk", {"order_id": order_id, "po_number": order.po_number, "shortfall": shortfall}
        )
    return version


async def on_purchase_order_received(session: AsyncSession, envelope: Envelope[PurchaseOrderReceived]) -> None:
    await plan_order(session, envelope.data.order_id, "received")


async def on_reservation_confirmed(session: AsyncSession, envelope: Envelope[ReservationConfirmed]) -> None:
    data = envelope.data
    if data.order_id is None or data.allocation_id is None:
        return  # a reservation made over capacity's API, not for one of our plans
    plan, rows = await store.current_plan(session, data.order_id)
    if plan is None or data.plan_version != plan.version:
        return  # confirms an older plan; the current one is being reserved
    await session.execute(
        sa.update(store.allocations)
        .where(store.allocations.c.allocation_id == data.allocation_id, store.allocations.c.plan_version == plan.version)
        .values(state="reserved")
    )
    order = await store.get_order(session, data.order_id)
    if order is None or order.status != OrderStatus.PLANNED:
        return
    still_open = [r for r in rows if r.allocation_id != data.allocation_id and r.state != "reserved"]
    if not still_open:
        await store.set_status(session, data.order_id, OrderStatus.ACCEPTED)
        await webhooks.enqueue(
            session, order.buyer_code, "order.accepted", {"order_id": order.id, "po_number": order.po_number, "plan_version": plan.version}
        )


async def on_reservation_rejected(session: AsyncSession, envelope: Envelope[ReservationRejected]) -> None:
    """Capacity refused an allocation: plan its units elsewhere, never again in that foundry-week."""
    data = envelope.data
    if data.order_id is None or data.allocation_id is None:
        return
    _, rows = await store.current_plan(session, data.order_id)
    if not any(r.allocation_id == data.allocation_id and r.state != "rejected" for r in rows):
        return  # no longer in the plan in force: an earlier replan already moved it
    await plan_order(
        session,
        data.order_id,
        f"reservation rejected: {data.reason}",
        lost={data.allocation_id: data.requested_quantity},
        blocked={(data.foundry_code, data.week)},
    )


async def on_reservation_revoked(session: AsyncSession, envelope: Envelope[ReservationRevoked]) -> None:
    """Capacity dropped below what was reserved: plan the revoked units on other members."""
    data = envelope.data
    if data.order_id is None or data.allocation_id is None:
        return
    _, rows = await store.current_plan(session, data.order_id)
    if not any(r.allocation_id == data.allocation_id for r in rows):
        return
    await plan_order(
        session,
        data.order_id,
        f"reservation revoked: {data.reason}",
        lost={data.allocation_id: data.revoked_quantity},
        blocked={(data.foundry_code, data.week)},
    )
