"""Orders' use cases (commands from the API) and reactions (events from other services)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import audit, clock
from shared.events import Envelope
from shared.events.capacity import CapacityChanged, ReservationConfirmed, ReservationRejected, ReservationRevoked
from shared.events.orders import (
    HandedOverItem,
    PurchaseOrderCancelled,
    PurchaseOrderFulfilled,
    PurchaseOrderReceived,
    ShipmentDelivered,
    ShipmentDispatched,
    ShippedItem,
)
from shared.events.quality import CertificateGranted, CertificateRevoked, FoundryQualityStatusChanged, LotFailed
from shared.http import Conflict, FieldError, NotFound, Unprocessable
from shared.idempotency import Command, fingerprint
from shared.inbox import in_batch
from shared.logging import get_logger
from shared.outbox import current_trace_id
from shared.projections import project_foundry
from shared.settings import Settings
from shared.weeks import iso_week, weeks_between

from . import metrics, projections, replanning, store, webhooks, whatif
from .destinations import DestinationRules, RefusedDestination
from .domain import (
    Buyer,
    CertificateHeld,
    DeliverySite,
    FoundryStanding,
    LineProgress,
    Lot,
    OrderLine,
    OrderRejected,
    OrderStatus,
    PurchaseOrder,
    ShipmentStatus,
    Violation,
    WebhookEndpoint,
    WebhookMessage,
    check_delivery_site,
    check_purchase_order,
    local_content,
    receive_purchase_order,
    split_handover,
    split_over_deliveries,
    take_confirmation,
    tkdn_of,
    with_items,
)
from .planner import PlanRules
from .replanning import may_cure_shortfall, units_lost_at

log = get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Intake:
    order: PurchaseOrder
    replayed: bool  # True when an earlier request with the same Idempotency-Key created it


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
    scope = f"purchase-orders:{buyer_code}"
    request_hash = fingerprint(body)
    now = clock.now()
    try:
        async with sessions.begin() as session:
            earlier = await store.idempotency_keys.recall(session, scope, idempotency_key, request_hash)
            if earlier is not None:
                order = await store.get_order(session, earlier)
                assert order is not None
                # The same answer as the first time; GET shows how the order has moved on since.
                return Intake(replace(order, status=OrderStatus.RECEIVED), replayed=True)
            if await store.find_order_by_po(session, buyer_code, po_number) is not None:
                raise Conflict(f"{buyer_code} already sent purchase order {po_number}")
            try:
                order, received = receive_purchase_order(
                    f"po_{uuid.uuid4().hex[:20]}", buyer_code, po_number, issued_on, currency, lines, clock.today(), now,
                    buyers=await store.known_buyers(session), sites=await store.known_sites(session),
                    catalogue=await store.catalogue(session),
                )  # fmt: skip
            except OrderRejected as exc:
                raise Unprocessable(
                    str(exc), errors=[FieldError(field=f"body.{v.field}", message=v.message) for v in exc.violations]
                ) from exc
            await store.add_order(session, order)
            await store.idempotency_keys.remember(session, scope, idempotency_key, request_hash, order.id, now)
            await store.publish(session, received)
    except IntegrityError as exc:
        # Two identical requests raced: the loser sees the winner's key or PO number.
        raise Conflict("a concurrent request with the same Idempotency-Key or PO number won; retry to get its answer") from exc
    return Intake(order, replayed=False)


async def cancel(sessions: async_sessionmaker[AsyncSession], order_id: str, reason: str) -> PurchaseOrder:
    """The buyer withdraws an order: capacity held for it is released."""
    return await _close(sessions, order_id, OrderStatus.CANCELLED, reason)


async def reject(
    sessions: async_sessionmaker[AsyncSession], order_id: str, reason: str, command: Command | None = None
) -> PurchaseOrder:
    """The cooperative declines an order (usually one in review): capacity held for it is released."""
    return await _close(sessions, order_id, OrderStatus.REJECTED, reason, command)


async def _close(
    sessions: async_sessionmaker[AsyncSession], order_id: str, status: OrderStatus, reason: str, command: Command | None = None
) -> PurchaseOrder:
    async with sessions.begin() as session:
        order = await store.lock_order_or_404(session, order_id)
        if command is not None and await command.recall(store.idempotency_keys, session) is not None:
            return order  # closed by the first request with this key
        if order.status.closed:
            raise Conflict(f"purchase order {order_id} is already {order.status.value}")
        if await store.has_shipments(session, order_id):
            raise Conflict(f"purchase order {order_id} has shipments; it can no longer be {status.value}")
        await store.set_status(session, order_id, status, reason)
        # Capacity releases what it held on the cancellation event; "rejected" is orders' word for the
        # cooperative cancelling.
        said = reason if status == OrderStatus.CANCELLED else f"rejected by the cooperative: {reason}"
        await store.publish(
            session, PurchaseOrderCancelled(order_id=order_id, buyer_code=order.buyer_code, reason=said, cancelled_at=clock.now())
        )
        if status == OrderStatus.REJECTED:
            about = {"order_id": order_id, "po_number": order.po_number, "reason": reason}
            await _send(session, order.buyer_code, [WebhookMessage("order.rejected", about)])
        if command is not None:
            await command.remember(store.idempotency_keys, session, order_id, clock.now())
    return replace(order, status=status, status_reason=reason)


async def on_foundry_changed(session: AsyncSession, envelope: Envelope[Any]) -> None:
    await project_foundry(session, store.foundry_projection, envelope, store.audit_log)


# --- planning ---------------------------------------------------------------------------------------------

PLAN_RULES = PlanRules(time_limit_s=1.0)


async def _standings(session: AsyncSession, today: date, foundry_code: str | None = None) -> list[FoundryStanding]:
    raw = await projections.standing(session, today, foundry_code)
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
    lost: Mapping[str, int] | None = None,
    blocked: Collection[tuple[str, str]] = (),
    failed: Sequence[Lot] = (),
    trigger: str = "received",
) -> int | None:
    """Plans what the order still needs (see `replanning`) and publishes the new version; returns it, or None when
    nothing changed. `lost`: allocation id → units no longer made there; `blocked`: foundry-weeks not to plan in;
    `failed`: failed lots the event being handled reports."""
    order = await store.lock_order(session, order_id)
    if order is None or order.status.closed:
        return None
    today = clock.today()
    made_again = await store.units_to_make_again(session, order, failed)
    todo = replanning.Outstanding.of(order, await store.plan_in_force(session, order_id), lost or {}, made_again)
    # Free capacity and standings are read only for the lines with something to plan.
    free = {
        line.line_no: await projections.free_capacity(
            session, line.product_family, iso_week(today), iso_week(replanning.horizon(line, today))
        )
        for line in todo.lines_to_plan
    }
    decision = replanning.replan(
        todo,
        standings=await _standings(session, today) if free else [],
        free=free,
        refused={*blocked, *await store.refused_cells_of(session, order_id)},
        today=today,
        now=clock.now(),
        reason=reason,
        rules=PLAN_RULES,
    )
    if isinstance(decision, replanning.NothingToDo):
        return None
    for solver, seconds in decision.line_plans:
        metrics.line_planned(solver, seconds)
    metrics.planned(trigger)
    await store.add_plan(session, order_id, decision)
    await store.set_status(session, order_id, decision.status)
    await store.publish(session, decision.event)
    await _send(session, order.buyer_code, decision.webhooks)
    return decision.version


async def _send(session: AsyncSession, buyer_code: str, messages: Iterable[WebhookMessage]) -> None:
    for message in messages:
        await webhooks.enqueue(session, buyer_code, message.event_type, message.data)


async def on_purchase_order_received(session: AsyncSession, envelope: Envelope[PurchaseOrderReceived]) -> None:
    await plan_order(session, envelope.data.order_id, "received")


async def on_reservation_confirmed(session: AsyncSession, envelope: Envelope[ReservationConfirmed]) -> None:
    data = envelope.data
    if data.order_id is None or data.allocation_id is None:
        return  # a reservation made over capacity's API, not for one of our plans
    order = await store.lock_order(session, data.order_id)
    if order is None:
        return
    taken = take_confirmation(order, await store.plan_in_force(session, data.order_id), data)
    if taken is None:
        return
    await store.reserve_allocation(session, taken.allocation_id, taken.plan_version)
    if taken.accepted:
        await store.set_status(session, order.id, OrderStatus.ACCEPTED)
        await _send(session, order.buyer_code, taken.webhooks)


async def on_reservation_rejected(session: AsyncSession, envelope: Envelope[ReservationRejected]) -> None:
    """Capacity refused an allocation: plan its units elsewhere, never again in that foundry-week."""
    data = envelope.data
    if data.order_id is None or data.allocation_id is None:
        return
    if await store.lock_order(session, data.order_id) is None:
        return
    # Remembered for good: a later replan for another reason must not go back there either.
    await store.refuse_cell(session, data.order_id, data.foundry_code, data.week, data.reason, clock.now())
    plan = await store.plan_in_force(session, data.order_id)
    if plan is None or not any(
        a.allocation.allocation_id == data.allocation_id and a.state != "rejected" for a in plan.allocations
    ):
        return  # no longer in the plan in force: an earlier replan already moved it
    await _ask(
        session,
        data.order_id,
        f"reservation rejected: {data.reason}",
        "reservation_rejected",
        revoked={data.allocation_id: data.requested_quantity},
        blocked={(data.foundry_code, data.week)},
    )


async def on_reservation_revoked(session: AsyncSession, envelope: Envelope[ReservationRevoked]) -> None:
    """Capacity dropped below what was reserved: plan the revoked units on other members."""
    data = envelope.data
    if data.order_id is None or data.allocation_id is None:
        return
    if await store.lock_order(session, data.order_id) is None:
        return
    plan = await store.plan_in_force(session, data.order_id)
    if plan is None or not any(a.allocation.allocation_id == data.allocation_id for a in plan.allocations):
        return
    await _ask(
        session,
        data.order_id,
        f"reservation revoked: {data.reason}",
        "reservation_revoked",
        revoked={data.allocation_id: data.revoked_quantity},
        blocked={(data.foundry_code, data.week)},
    )


# --- what else moves a plan: failed lots, members losing or regaining eligibility -------------------------


async def on_lot_failed(session: AsyncSession, envelope: Envelope[LotFailed]) -> None:
    """A failed lot's units must be made again: plan them, on any eligible member, in time if possible. What failed
    is read from the event itself, whether or not the lot projection has applied it yet."""
    data = envelope.data
    if data.order_id is None:
        return
    lot = Lot(data.lot_code, data.foundry_code, data.item_code, data.quantity, data.allocation_id, "failed")
    reason = f"lot {data.lot_code} failed testing: {data.quantity} units to make again"
    await _ask(session, data.order_id, reason, "lot_failed", failed=[lot])


async def drop_where_ineligible(session: AsyncSession, foundry_code: str, reason: str) -> None:
    """A member may no longer make some of what it was planned for: those units, less what it already made,
    are planned on other members. Its allocations for deliveries it may still serve stay."""
    order_ids = await store.orders_with_allocations_at(session, foundry_code)
    if not order_ids:
        return
    today = clock.today()
    standing = {f.code: f for f in await _standings(session, today, foundry_code)}.get(foundry_code)
    for order_id in order_ids:  # in id order, so that consumers lock orders in the same order
        order = await store.lock_order(session, order_id)
        if order is None or order.status.closed:
            continue
        held = await store.current_allocations_at(session, foundry_code, order_id)
        produced = await store.produced_for(session, [a.allocation_id for a in held])
        lost = units_lost_at(order, standing, held, produced, today)
        if lost:
            await _ask(session, order_id, reason, "member_ineligible", ineligible=lost)


async def retry_short_orders(session: AsyncSession, foundry_code: str, reason: str) -> None:
    """Something happened at a member that may cure a shortfall: open orders with unplanned units on lines it
    may now make try again (which clears `at_risk` when it works). In a batch, once at its end for every member."""
    if in_batch(session):
        _replans(session).member_back(foundry_code, reason)
        _causes(session).setdefault(("member", foundry_code), _cause())
        return
    replans = replanning.Replans()
    replans.member_back(foundry_code, reason)
    await _settle(session, replans)


async def on_certificate_lost(session: AsyncSession, envelope: Envelope[Any]) -> None:
    data = envelope.data
    what = "revoked" if isinstance(data, CertificateRevoked) else "expired"
    await drop_where_ineligible(session, data.foundry_code, f"{data.kind} certificate of {data.foundry_code} {what}")


async def on_certificate_granted(session: AsyncSession, envelope: Envelope[CertificateGranted]) -> None:
    data = envelope.data
    await retry_short_orders(session, data.foundry_code, f"{data.kind} certificate granted to {data.foundry_code}")


async def on_quality_status_changed(session: AsyncSession, envelope: Envelope[FoundryQualityStatusChanged]) -> None:
    data = envelope.data
    if data.status == "suspended":
        await drop_where_ineligible(session, data.foundry_code, f"{data.foundry_code} suspended: {data.reason}")
    elif data.previous_status == "suspended":
        await retry_short_orders(session, data.foundry_code, f"{data.foundry_code} no longer suspended")


async def on_member_changed(session: AsyncSession, envelope: Envelope[Any]) -> None:
    """Membership or product families changed: plan away what it may no longer make, or use it again."""
    code = envelope.data.foundry_code
    await drop_where_ineligible(session, code, f"{code} changed: membership or product families")
    await retry_short_orders(session, code, f"{code} changed: membership or product families")


async def on_capacity_changed(session: AsyncSession, envelope: Envelope[CapacityChanged]) -> None:
    """Short orders the change may cure try again: those with a short line of the family the member may make, where
    it now has the item's minimum lot free in a changed week at or before a short week. Once per batch."""
    data = envelope.data
    weeks = [w.week for w in data.weeks]
    if data.standard_weekly_units is not None:  # the standard figure holds for every week no change lists
        today = clock.today()
        weeks += weeks_between(today, today + timedelta(weeks=replanning.RISK_HORIZON_WEEKS))
    if in_batch(session):
        _replans(session).capacity_changed(data.foundry_code, data.product_family, weeks)
        _causes(session).setdefault(("capacity", data.foundry_code, data.product_family), _cause())
        return
    replans = replanning.Replans()
    replans.capacity_changed(data.foundry_code, data.product_family, weeks)
    await _settle(session, replans)


# --- one replan per order for the reactions of a batch ----------------------------------------------------

_REPLANS = "orders_replans"
# Who first asked for each replan of the batch (the event acting, its trace): the settler replans on its behalf, so
# the audit trail and the trace of the new plan name the event that caused it. Keyed by order id, ("capacity",
# member, family) or ("member", member).
_CAUSES = "orders_replan_causes"
Cause = tuple[audit.Actor | None, str | None]


def _replans(session: AsyncSession) -> replanning.Replans:
    replans = session.info.get(_REPLANS)
    if replans is None:
        replans = session.info[_REPLANS] = replanning.Replans()
    return replans  # type: ignore[no-any-return]


def _causes(session: AsyncSession) -> dict[object, Cause]:
    return session.info.setdefault(_CAUSES, {})  # type: ignore[no-any-return]


def _cause() -> Cause:
    return audit.current_actor.get(), current_trace_id.get()


@contextlib.contextmanager
def _on_behalf_of(cause: Cause | None) -> Iterator[None]:
    """Acts as the cause's event, in its trace; without one (a direct call), as whoever acts now."""
    if cause is None:
        yield
        return
    actor, trace_id = cause
    token = current_trace_id.set(trace_id)
    try:
        with audit.acting(actor) if actor is not None else contextlib.nullcontext():
            yield
    finally:
        current_trace_id.reset(token)


async def _ask(
    session: AsyncSession,
    order_id: str,
    reason: str,
    trigger: str,
    *,
    revoked: Mapping[str, int] | None = None,
    ineligible: Mapping[str, int] | None = None,
    blocked: Collection[tuple[str, str]] = (),
    failed: Sequence[Lot] = (),
) -> None:
    """Asks for a replan of the order: at the end of the inbox batch, once for everything its events asked (the
    same capacity change revokes many reservations of one order); at once when called outside a batch."""
    if in_batch(session):
        _replans(session).ask(order_id, reason, trigger, revoked=revoked, ineligible=ineligible, blocked=blocked, failed=failed)
        _causes(session).setdefault(order_id, _cause())
        return
    replans = replanning.Replans()
    replans.ask(order_id, reason, trigger, revoked=revoked, ineligible=ineligible, blocked=blocked, failed=failed)
    await _settle(session, replans)


async def settle_replans(session: AsyncSession) -> None:
    """The inbox's settler: the replans the batch's reactions asked for, one per order."""
    replans = session.info.pop(_REPLANS, None)
    causes = session.info.pop(_CAUSES, {})
    if replans:
        await _settle(session, replans, causes)


async def _settle(session: AsyncSession, replans: replanning.Replans, causes: dict[object, Cause] | None = None) -> None:
    causes = {} if causes is None else causes
    if replans.capacity_changes or replans.members_back:
        await _ask_short_orders(session, replans, causes)
    for order_id in sorted(replans.asked):  # in id order, so that consumers lock orders in the same order
        asked = replans.asked[order_id]
        with _on_behalf_of(causes.get(order_id)):
            await plan_order(
                session,
                order_id,
                asked.reason,
                lost=asked.lost,
                blocked=asked.blocked,
                failed=asked.failed,
                trigger=asked.trigger,
            )


async def _ask_short_orders(session: AsyncSession, replans: replanning.Replans, causes: dict[object, Cause]) -> None:
    """Adds the short orders that the batch's capacity changes and returning members may cure, reading them once."""
    short = await store.short_orders(session)
    if not short:
        return
    today = clock.today()
    codes = {foundry for foundry, _ in replans.capacity_changes} | set(replans.members_back)
    standings = {f.code: f for code in sorted(codes) for f in await _standings(session, today, code)}
    for (foundry, family), weeks in sorted(replans.capacity_changes.items()):
        standing = standings.get(foundry)
        if standing is None or not weeks:
            continue
        free = await projections.free_capacity(session, family, iso_week(today), max(weeks))
        for order, shortfall in short:
            if replanning.capacity_may_cure(order, shortfall, standing, family, free.get(foundry, {}), weeks, today):
                replans.ask(order.id, f"capacity of {foundry} changed", "recovery")
                if ("capacity", foundry, family) in causes:
                    causes.setdefault(order.id, causes[("capacity", foundry, family)])
    for foundry, reason in sorted(replans.members_back.items()):
        standing = standings.get(foundry)
        if standing is None:
            continue
        for order, shortfall in short:
            if may_cure_shortfall(order, shortfall, standing, today):
                replans.ask(order.id, reason, "recovery")
                if ("member", foundry) in causes:
                    causes.setdefault(order.id, causes[("member", foundry)])
    replans.capacity_changes.clear()
    replans.members_back.clear()


# --- commands of the cooperative's staff ----------------------------------------------------------------


async def replan(
    sessions: async_sessionmaker[AsyncSession], order_id: str, reason: str, command: Command | None = None
) -> int | None:
    """Plans an open order's outstanding units again now, e.g. after members added capacity for an order in review.
    Returns the new plan version, or None when the plan in force covers everything."""
    async with sessions.begin() as session:
        order = await store.lock_order_or_404(session, order_id)
        if command is not None and (earlier := await command.recall(store.idempotency_keys, session)) is not None:
            return int(earlier) if earlier.isdigit() else None
        if order.status.closed:
            raise Conflict(f"purchase order {order_id} is {order.status.value}; nothing is planned for it any more")
        version = await plan_order(session, order_id, f"replan requested: {reason}", trigger="requested")
        if command is not None:
            await command.remember(store.idempotency_keys, session, str(version or "-"), clock.now())
        return version


# --- buyers and delivery sites: the admins' data ----------------------------------------------------------


@dataclass(frozen=True)
class Kept(Generic[T]):
    """A buyer or site as a command left it; `replayed` when an earlier request with the same key made it."""

    value: T
    replayed: bool = False


async def add_buyer(sessions: async_sessionmaker[AsyncSession], buyer: Buyer, command: Command | None = None) -> Kept[Buyer]:
    try:
        async with sessions.begin() as session:
            if command is not None and (earlier := await command.recall(store.idempotency_keys, session)) is not None:
                return Kept(await _buyer_or_404(session, earlier), replayed=True)
            if await store.buyer(session, buyer.code) is not None:
                raise Conflict(f"buyer {buyer.code} exists already; change it with PATCH")
            await store.save_buyer(session, buyer, None, clock.now())
            if command is not None:
                await command.remember(store.idempotency_keys, session, buyer.code, clock.now())
    except IntegrityError as exc:
        raise Conflict(f"buyer {buyer.code} was just added by a concurrent request") from exc
    return Kept(buyer)


async def change_buyer(
    sessions: async_sessionmaker[AsyncSession], code: str, changes: Mapping[str, Any], command: Command | None = None
) -> Kept[Buyer]:
    """Changes a buyer's name, NPWP or active flag. Deactivated, it sends no new orders; its orders go on."""
    async with sessions.begin() as session:
        before = await store.buyer(session, code, for_update=True)
        if before is None:
            raise NotFound(f"no buyer {code}")
        if command is not None and await command.recall(store.idempotency_keys, session) is not None:
            return Kept(before, replayed=True)
        after = replace(before, **changes)
        await store.save_buyer(session, after, before, clock.now())
        if command is not None:
            await command.remember(store.idempotency_keys, session, code, clock.now())
    return Kept(after)


async def add_site(
    sessions: async_sessionmaker[AsyncSession], site: DeliverySite, command: Command | None = None
) -> Kept[DeliverySite]:
    try:
        async with sessions.begin() as session:
            if command is not None and (earlier := await command.recall(store.idempotency_keys, session)) is not None:
                return Kept(await _site_or_404(session, earlier), replayed=True)
            if await store.site(session, site.code) is not None:
                raise Conflict(f"delivery site {site.code} exists already; change it with PATCH")
            if violations := check_delivery_site(site, await store.known_buyers(session)):
                raise _refused(violations)
            await store.save_site(session, site, None, clock.now())
            if command is not None:
                await command.remember(store.idempotency_keys, session, site.code, clock.now())
    except IntegrityError as exc:
        raise Conflict(f"delivery site {site.code} was just added by a concurrent request") from exc
    return Kept(site)


async def change_site(
    sessions: async_sessionmaker[AsyncSession], code: str, changes: Mapping[str, Any], command: Command | None = None
) -> Kept[DeliverySite]:
    """Changes a site's name, city, address or active flag. Deactivated, no new order names it; deliveries of orders
    received before still go there."""
    async with sessions.begin() as session:
        before = await store.site(session, code, for_update=True)
        if before is None:
            raise NotFound(f"no delivery site {code}")
        if command is not None and await command.recall(store.idempotency_keys, session) is not None:
            return Kept(before, replayed=True)
        after = replace(before, **changes)
        await store.save_site(session, after, before, clock.now())
        if command is not None:
            await command.remember(store.idempotency_keys, session, code, clock.now())
    return Kept(after)


async def _buyer_or_404(session: AsyncSession, code: str) -> Buyer:
    if (found := await store.buyer(session, code)) is None:
        raise NotFound(f"no buyer {code}")
    return found


async def _site_or_404(session: AsyncSession, code: str) -> DeliverySite:
    if (found := await store.site(session, code)) is None:
        raise NotFound(f"no delivery site {code}")
    return found


# --- what-if: the planners' questions, answered on a copy and never stored ------------------------------------


async def what_if(
    sessions: async_sessionmaker[AsyncSession], hypotheses: whatif.Hypotheses, new_orders: Sequence[PurchaseOrder]
) -> whatif.WhatIf:
    """What would become of every open order (and of new ones) under the hypotheses: planned as a reaction would,
    on a copy of the cooperative in memory. Read-only: the transaction writes nothing and is rolled back."""
    today = clock.today()
    async with sessions() as session:
        catalogue = await store.catalogue(session)
        families = sorted({item.product_family for item in catalogue.values()})
        standings = {f.code: f for f in await _standings(session, today)}
        violations = whatif.problems(hypotheses, standings, families, today)
        buyers, sites = await store.known_buyers(session), await store.known_sites(session)
        for i, order in enumerate(new_orders):
            violations += [
                (f"new_orders.{i}.{v.field}", v.message)
                for v in check_purchase_order(
                    order.buyer_code,
                    order.issued_on,
                    order.currency,
                    list(order.lines),
                    today,
                    buyers=buyers,
                    sites=sites,
                    catalogue=catalogue,
                )
            ]
        if violations:
            raise Unprocessable(
                "; ".join(f"{where}: {message}" for where, message in violations),
                errors=[FieldError(field=f"body.{where}", message=message) for where, message in violations],
            )
        new_orders = [replace(order, lines=with_items(order.lines, catalogue)) for order in new_orders]
        orders = await store.open_orders(session)
        last = max([today, *(replanning.horizon(line, today) for order in [*orders, *new_orders] for line in order.lines)])
        first_week, last_week = iso_week(today), iso_week(last)
        capacity: dict[str, whatif.Cells] = {}
        held: dict[str, whatif.Cells] = {}
        for family in families:
            capacity[family], held[family] = await projections.capacity_and_held(session, family, first_week, last_week)
        open_orders: list[whatif.OpenOrder] = []
        named = {h.foundry_code for h in (*hypotheses.certificate_lapses, *hypotheses.suspensions)}
        for order in orders:
            plan = await store.plan_in_force(session, order.id)
            at_named = [
                h.allocation.allocation_id for h in (plan.allocations if plan else ()) if h.allocation.foundry_code in named
            ]
            open_orders.append(
                whatif.OpenOrder(
                    order,
                    plan,
                    frozenset(await store.refused_cells_of(session, order.id)),
                    await store.units_to_make_again(session, order),
                    await store.produced_for(session, at_named),
                )
            )
        await session.rollback()
    return whatif.what_if(
        whatif.Cooperative(standings, capacity, held),
        open_orders,
        hypotheses,
        new_orders,
        today=today,
        now=clock.now(),
        rules=PLAN_RULES,
    )


# --- fulfilment: progress, shipments and the buyer's handover (BAST) --------------------------------------


async def progress(session: AsyncSession, order: PurchaseOrder, plan_rows: list[Any]) -> tuple[list[LineProgress], float | None]:
    """Each line's units by stage, from the plan in force, the lots made for the order and its shipments; and
    the local content of what was received."""
    stages: dict[int, dict[str, int]] = {line.line_no: {} for line in order.lines}

    def add(line_no: int, stage: str, units: int) -> None:
        if line_no in stages:
            stages[line_no][stage] = stages[line_no].get(stage, 0) + units

    for row in plan_rows:
        if row.state != "rejected":
            add(row.line_no, "planned", row.quantity)
        if row.state == "reserved":
            add(row.line_no, "reserved", row.quantity)
    for lot in await store.lots_of_order(session, order):
        add(lot["line_no"], "produced", lot["quantity"])
        if lot["outcome"] in ("passed", "failed"):
            add(lot["line_no"], lot["outcome"], lot["quantity"])
    items = await store.order_items_with_status(session, order.id)
    for item in items:
        add(item.line_no, "loading" if item.status == ShipmentStatus.PREPARED else "shipped", item.quantity)
        add(item.line_no, "delivered", item.received or 0)
        add(item.line_no, "rejected", item.rejected or 0)
    lines = [LineProgress(line_no=line.line_no, ordered=line.quantity, **stages[line.line_no]) for line in order.lines]
    return lines, _local_content_of(order, items)


def _local_content_of(order: PurchaseOrder, items: list[Any]) -> float | None:
    prices = {line.line_no: line.unit_price for line in order.lines}
    return local_content([((item.received or 0) * prices.get(item.line_no, 0), item.tkdn_percent) for item in items])


def _refused(violations: list[Violation]) -> Unprocessable:
    return Unprocessable(
        "; ".join(f"{v.field}: {v.message}" for v in violations),
        errors=[FieldError(field=f"body.{v.field}", message=v.message) for v in violations],
    )


async def create_shipment(
    sessions: async_sessionmaker[AsyncSession],
    order_id: str,
    *,
    surat_jalan_number: str,
    site_code: str,
    vehicle_plate: str,
    driver_name: str | None,
    items: list[tuple[str, int]],
    command: Command | None = None,
) -> str:
    """Writes a surat jalan for passed units of named lots to one of the order's sites; returns its id."""
    now = clock.now()
    try:
        async with sessions.begin() as session:
            # Locked: a concurrent shipment of the same lots must see this one's items.
            order = await store.lock_order_or_404(session, order_id)
            if command is not None and (earlier := await command.recall(store.idempotency_keys, session)) is not None:
                return earlier
            if order.status.closed:
                raise Conflict(f"purchase order {order_id} is {order.status.value}; nothing more is shipped for it")
            taken = await store.shipment_with_surat_jalan(session, surat_jalan_number)
            if taken is not None:
                raise Conflict(f"surat jalan {surat_jalan_number} was already used for shipment {taken}")
            violations: list[Violation] = []
            if site_code not in {d.site_code for line in order.lines for d in line.deliveries}:
                violations.append(Violation("site_code", f"the order delivers nothing to {site_code!r}"))
            lots = {lot["lot_code"]: lot for lot in await store.lots_of_order(session, order)}
            existing = await store.order_items_with_status(session, order_id)
            on_shipments: dict[str, int] = {}
            covered: dict[tuple[int, date], int] = {}
            for item in existing:
                on_shipments[item.lot_code] = on_shipments.get(item.lot_code, 0) + item.quantity
                key = (item.line_no, item.due_date)
                covered[key] = covered.get(key, 0) + item.quantity - (item.rejected or 0)
            lines = {line.line_no: line for line in order.lines}
            # The makers' TKDN today, read only for the lots on this shipment.
            tkdn: dict[str, float] = {}
            for code in {lots[lot_code]["foundry_code"] for lot_code, _ in items if lot_code in lots}:
                makers = await _standings(session, clock.today(), code)
                tkdn[code] = tkdn_of(makers[0], clock.today()) if makers else 0.0
            rows: list[dict[str, Any]] = []
            seen: set[str] = set()
            for i, (lot_code, quantity) in enumerate(items):
                at = f"items.{i}"
                lot = lots.get(lot_code)
                if lot_code in seen:
                    violations.append(Violation(f"{at}.lot_code", f"lot {lot_code} is listed twice"))
                    continue
                seen.add(lot_code)
                if lot is None:
                    violations.append(Violation(f"{at}.lot_code", f"lot {lot_code} was not made for purchase order {order_id}"))
                    continue
                if lot["outcome"] != "passed":
                    state = "has not been tested yet" if lot["outcome"] == "registered" else "failed testing"
                    violations.append(Violation(f"{at}.lot_code", f"lot {lot_code} {state}; only passed lots are shipped"))
                    continue
                left = lot["quantity"] - on_shipments.get(lot_code, 0)
                if quantity > left:
                    violations.append(Violation(f"{at}.quantity", f"lot {lot_code} has {left} passed units not yet shipped"))
                    continue
                line = lines[lot["line_no"]]
                already = {due: units for (line_no, due), units in covered.items() if line_no == line.line_no}
                try:
                    split = split_over_deliveries(line, site_code, quantity, already)
                except ValueError as exc:
                    violations.append(Violation(f"{at}.quantity", str(exc)))
                    continue
                for due, units in split:
                    covered[(line.line_no, due)] = covered.get((line.line_no, due), 0) + units
                    rows.append(
                        {"lot_code": lot_code, "due_date": due, "order_id": order_id, "line_no": line.line_no,
                         "foundry_code": lot["foundry_code"], "quantity": units, "tkdn_percent": tkdn[lot["foundry_code"]]}
                    )  # fmt: skip
            if violations:
                raise _refused(violations)
            shipment_id = f"shp_{uuid.uuid4().hex[:20]}"
            await store.add_shipment(
                session,
                {
                    "id": shipment_id,
                    "order_id": order_id,
                    "buyer_code": order.buyer_code,
                    "surat_jalan_number": surat_jalan_number,
                    "site_code": site_code,
                    "vehicle_plate": vehicle_plate,
                    "driver_name": driver_name,
                    "status": ShipmentStatus.PREPARED.value,
                    "created_at": now,
                },
                rows,
            )
            if command is not None:
                await command.remember(store.idempotency_keys, session, shipment_id, now)
    except IntegrityError as exc:
        raise Conflict(f"surat jalan {surat_jalan_number} was just used by a concurrent request") from exc
    return shipment_id


async def _lock_shipment(session: AsyncSession, shipment_id: str) -> tuple[PurchaseOrder, Any, list[Any]]:
    """The shipment's order, locked, and then the shipment and its items as they are under that lock; 404 when
    there is no such shipment."""
    order = await store.lock_order(session, await store.order_id_of_shipment(session, shipment_id))
    assert order is not None
    shipment, items = await store.get_shipment(session, shipment_id)
    return order, shipment, items


def _shipment_about(order: PurchaseOrder, shipment: Any) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "po_number": order.po_number,
        "shipment_id": shipment.id,
        "surat_jalan_number": shipment.surat_jalan_number,
        "site_code": shipment.site_code,
    }


async def dispatch_shipment(sessions: async_sessionmaker[AsyncSession], shipment_id: str, command: Command | None = None) -> None:
    now = clock.now()
    async with sessions.begin() as session:
        order, shipment, items = await _lock_shipment(session, shipment_id)
        if command is not None:
            if await command.recall(store.idempotency_keys, session) is not None:
                return  # dispatched by the first request with this key
            await command.remember(store.idempotency_keys, session, shipment_id, now)  # undone with the rest on refusal
        if shipment.status != ShipmentStatus.PREPARED:
            raise Conflict(f"shipment {shipment_id} is already {shipment.status}")
        if order.status.closed:
            raise Conflict(f"purchase order {order.id} is {order.status.value}; the shipment cannot leave")
        await store.mark_dispatched(session, shipment_id, now)
        shipped = [
            ShippedItem(
                lot_code=i.lot_code, line_no=i.line_no, foundry_code=i.foundry_code, due_date=i.due_date, quantity=i.quantity
            )
            for i in items
        ]
        await store.publish(
            session,
            ShipmentDispatched(
                shipment_id=shipment_id,
                order_id=order.id,
                buyer_code=order.buyer_code,
                surat_jalan_number=shipment.surat_jalan_number,
                site_code=shipment.site_code,
                vehicle_plate=shipment.vehicle_plate,
                items=shipped,
                dispatched_at=now,
            ),
        )
        await webhooks.enqueue(
            session,
            order.buyer_code,
            "shipment.dispatched",
            {
                **_shipment_about(order, shipment),
                "vehicle_plate": shipment.vehicle_plate,
                "items": [
                    {"line_no": i.line_no, "lot_code": i.lot_code, "due_date": i.due_date.isoformat(), "quantity": i.quantity}
                    for i in items
                ],
                "dispatched_at": now.isoformat(),
            },
        )


async def record_handover(
    sessions: async_sessionmaker[AsyncSession],
    shipment_id: str,
    *,
    bast_number: str,
    signed_by: str,
    signed_on: date,
    items: list[tuple[str, int, int]],
    command: Command | None = None,
) -> None:
    """Records the buyer's BAST: received units count as delivered, refused ones are planned again."""
    now = clock.now()
    async with sessions.begin() as session:
        order, shipment, rows = await _lock_shipment(session, shipment_id)
        if command is not None:
            if await command.recall(store.idempotency_keys, session) is not None:
                return  # recorded by the first request with this key
            await command.remember(store.idempotency_keys, session, shipment_id, now)  # undone with the rest on refusal
        if shipment.status == ShipmentStatus.PREPARED:
            raise Conflict(f"shipment {shipment_id} has not been dispatched yet")
        if shipment.status == ShipmentStatus.DELIVERED:
            raise Conflict(f"shipment {shipment_id} was already handed over (BAST {shipment.bast_number})")
        violations: list[Violation] = []
        if signed_on > clock.today():
            violations.append(Violation("signed_on", "must not be in the future"))
        elif signed_on < shipment.dispatched_at.date():
            violations.append(
                Violation("signed_on", f"must not be before the dispatch on {shipment.dispatched_at.date().isoformat()}")
            )
        by_lot: dict[str, list[Any]] = {}
        for row in rows:
            by_lot.setdefault(row.lot_code, []).append(row)
        given: dict[str, tuple[int, int]] = {}
        for i, (lot_code, received, rejected) in enumerate(items):
            if lot_code not in by_lot:
                violations.append(Violation(f"items.{i}.lot_code", f"lot {lot_code} is not on this shipment"))
            elif lot_code in given:
                violations.append(Violation(f"items.{i}.lot_code", f"lot {lot_code} is listed twice"))
            else:
                given[lot_code] = (received, rejected)
                shipped = sum(r.quantity for r in by_lot[lot_code])
                if received + rejected != shipped:
                    violations.append(
                        Violation(
                            f"items.{i}",
                            f"received {received} and rejected {rejected} must add up to the {shipped} units of lot {lot_code} shipped",
                        )
                    )
        for lot_code in sorted(set(by_lot) - set(given)):
            violations.append(Violation("items", f"lot {lot_code} is on the shipment but not on the BAST"))
        if violations:
            raise _refused(violations)
        handed: list[HandedOverItem] = []
        for lot_code, (received, rejected) in given.items():
            split = split_handover([(r.due_date, r.quantity) for r in by_lot[lot_code]], received, rejected)
            line_no = by_lot[lot_code][0].line_no
            for due, got, refused in split:
                await store.record_received(session, shipment_id, lot_code, due, got, refused)
                handed.append(HandedOverItem(lot_code=lot_code, line_no=line_no, due_date=due, received=got, rejected=refused))
        await store.mark_delivered(
            session, shipment_id, bast_number=bast_number, signed_by=signed_by, signed_on=signed_on, at=now
        )
        await store.publish(
            session,
            ShipmentDelivered(
                shipment_id=shipment_id,
                order_id=order.id,
                buyer_code=order.buyer_code,
                bast_number=bast_number,
                signed_by=signed_by,
                signed_on=signed_on,
                items=handed,
                delivered_at=now,
            ),
        )
        received_total = sum(h.received for h in handed)
        rejected_total = sum(h.rejected for h in handed)
        await webhooks.enqueue(
            session,
            order.buyer_code,
            "shipment.delivered",
            {**_shipment_about(order, shipment), "bast_number": bast_number, "signed_by": signed_by,
             "signed_on": signed_on.isoformat(), "received": received_total, "rejected": rejected_total},
        )  # fmt: skip
        if rejected_total:
            await plan_order(
                session, order.id, f"{rejected_total} units refused at handover (BAST {bast_number})", trigger="handover_refused"
            )
        items = await store.order_items_with_status(session, order.id)
        received: dict[int, int] = {}
        for item in items:
            received[item.line_no] = received.get(item.line_no, 0) + (item.received or 0)
        if all(received.get(line.line_no, 0) >= line.quantity for line in order.lines):
            content = _local_content_of(order, items) or 0.0
            await store.set_status(session, order.id, OrderStatus.FULFILLED)
            await store.publish(
                session,
                PurchaseOrderFulfilled(
                    order_id=order.id,
                    buyer_code=order.buyer_code,
                    po_number=order.po_number,
                    local_content_percent=content,
                    fulfilled_at=now,
                ),
            )
            await webhooks.enqueue(
                session,
                order.buyer_code,
                "order.fulfilled",
                {
                    "order_id": order.id,
                    "po_number": order.po_number,
                    "local_content_percent": content,
                    "fulfilled_at": now.isoformat(),
                },
            )


async def refresh_metrics(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Recomputes orders by status and lines at risk from the database, so every replica reports the same."""
    async with sessions() as session:
        by_status = await store.count_orders_by_status(session)
        risks = await store.open_order_risks(session)
        await metrics.refresh_business(session, clock.today())
    metrics.set_orders(by_status, len(risks), sum(r["shortfall"] for r in risks))


# --- buyers' webhook endpoints: the secret is shown once, to whoever set or rotated it ----------------------


def destination_rules(settings: Settings) -> DestinationRules:
    return DestinationRules.of(settings.webhooks_require_https(), settings.orders_webhook_allowed_networks)


@dataclass(frozen=True)
class EndpointSet:
    endpoint: WebhookEndpoint
    new_secret: str | None  # a secret made for the caller, shown in this answer only


async def set_webhook_endpoint(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, buyer_code: str, url: str, secret: str | None, enabled: bool
) -> EndpointSet:
    """Creates or changes the endpoint. A secret the buyer sends replaces the current one, which keeps signing
    for the grace period; without one the current secret stays, or a new one is made and shown once."""
    try:
        await webhooks.checked_destination(destination_rules(settings), url)
    except RefusedDestination as exc:
        raise Unprocessable(str(exc), errors=[FieldError(field="body.url", message=str(exc), type="value_error")]) from exc
    now = clock.now()
    async with sessions.begin() as session:
        current = await store.webhook_endpoint(session, buyer_code, for_update=True)
        made = webhooks.new_secret() if current is None and secret is None else None
        if current is None:
            endpoint = WebhookEndpoint(buyer_code, url, secret or made or "", enabled, now)
        else:
            keyed = current.rotated(secret, now, _grace(settings)) if secret else current
            endpoint = replace(keyed, url=url, enabled=enabled, updated_at=now)
        await store.save_webhook_endpoint(session, endpoint)
        await _audit(session, "webhook_endpoint.set", "webhook_endpoint", buyer_code, current, endpoint, now)
    log.info("webhook endpoint set", buyer_code=buyer_code, enabled=enabled, secret_changed=bool(secret or made))
    return EndpointSet(endpoint, made)


async def rotate_webhook_secret(sessions: async_sessionmaker[AsyncSession], settings: Settings, buyer_code: str) -> EndpointSet:
    """A new secret signs from now on, shown once; the old one signs too until the grace period ends."""
    secret = webhooks.new_secret()
    now = clock.now()
    async with sessions.begin() as session:
        current = await store.webhook_endpoint(session, buyer_code, for_update=True)
        if current is None:
            raise NotFound(f"{buyer_code} has no webhook endpoint yet")
        rotated = current.rotated(secret, now, _grace(settings))
        await store.save_webhook_endpoint(session, rotated)
        await _audit(session, "webhook_endpoint.secret_rotated", "webhook_endpoint", buyer_code, current, rotated, now)
    log.info("webhook secret rotated", buyer_code=buyer_code, grace_s=settings.orders_webhook_secret_grace_s)
    return EndpointSet(rotated, secret)


def _grace(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.orders_webhook_secret_grace_s)


async def _audit(
    session: AsyncSession, action: str, entity_type: str, entity_id: str, before: Any, after: Any, at: datetime
) -> None:
    """One audit row in the change's transaction; `before` and `after` are domain objects with a `public()` view."""
    await audit.record(
        session,
        store.audit_log,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        before=before.public() if before is not None else None,
        after=after.public() if after is not None else None,
        at=at,
    )
