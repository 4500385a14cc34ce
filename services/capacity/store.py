"""Capacity's tables and queries, and the locks that keep reservations within capacity.

Locking (PostgreSQL; on SQLite every write transaction already holds the database's one write lock):
- `capacity_calendars` has one row per foundry and family. A capacity change locks it FOR UPDATE; everything
  that locks ledger rows first locks it FOR SHARE. So a reservation never reads a calendar that a concurrent
  change is about to alter, even for weeks that have no ledger row yet.
- `capacity_ledger` has one row per foundry, family and week with the units reserved. Reservations, releases,
  expiries, consumption and revocations lock it FOR UPDATE before reading or changing that week's reservations.
Rows are always locked in key order (calendars before ledger rows), so two transactions cannot wait on each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.db import UtcDateTime, backbone_tables
from shared.events import EventData
from shared.idempotency import IdempotencyKeys
from shared.outbox import stage

from .domain import (
    HOLDING_STATES,
    CapacityCalendar,
    CapacityChange,
    CapacityChangeKind,
    CapacityChangeReason,
    Foundry,
    Furnace,
    FurnaceKind,
    MembershipStatus,
    ProductFamily,
    Reservation,
    ReservationSource,
    ReservationState,
)

metadata = sa.MetaData()
backbone = backbone_tables(metadata)
# Who changed what, when, from what to what: written in the transaction of each change.
audit_log = audit.audit_table(metadata)

# Quality's item catalogue: each item's highest version published, which product family makes it. A migration
# seeds the items the platform starts with; `ceper replay capacity` rebuilds it from quality's events.
item_projection = sa.Table(
    "item_projection",
    metadata,
    sa.Column("item_code", sa.String(20), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("product_family", sa.String(40), nullable=False),
    sa.Column("unit", sa.String(10), nullable=False),
    sa.Column("min_lot", sa.Integer, nullable=False),
    sa.Column("retired", sa.Boolean, nullable=False),
    sa.Column("published_at", UtcDateTime, nullable=False),
)

foundries = sa.Table(
    "foundries",
    metadata,
    sa.Column("code", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("village", sa.String(100), nullable=False),
    sa.Column("product_families", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("registered_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("npwp", sa.String(32), nullable=True),
    sa.Column("membership_status", sa.String(20), nullable=False),
    sa.Column("furnaces", sa.JSON, nullable=True),
    sa.Column("presses", sa.Integer, nullable=True),
)

# The lock row of one foundry's calendar of one family; `revision` counts its recorded changes.
capacity_calendars = sa.Table(
    "capacity_calendars",
    metadata,
    sa.Column("foundry_code", sa.String(20), primary_key=True),
    sa.Column("product_family", sa.String(40), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
)

# Every capacity change ever reported, never updated: the calendar is folded from it.
capacity_changes = sa.Table(
    "capacity_changes",
    metadata,
    sa.Column("change_id", sa.String(40), primary_key=True),
    sa.Column("foundry_code", sa.String(20), nullable=False),
    sa.Column("product_family", sa.String(40), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("weekly_units", sa.Integer, nullable=True),
    sa.Column("from_week", sa.String(8), nullable=True),
    sa.Column("from_date", sa.Date, nullable=True),
    sa.Column("to_date", sa.Date, nullable=True),
    sa.Column("withdraws", sa.String(40), nullable=True),
    sa.Column("note", sa.String(500), nullable=True),
    sa.Column("reported_by", sa.String(200), nullable=True),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("foundry_code", "product_family", "seq", name="uq_capacity_changes_calendar_seq"),
    sa.Index("ix_capacity_changes_family", "product_family"),
)

# Units reserved per foundry, family and week (holds, confirmed and consumed reservations): the row locked per week.
capacity_ledger = sa.Table(
    "capacity_ledger",
    metadata,
    sa.Column("foundry_code", sa.String(20), primary_key=True),
    sa.Column("product_family", sa.String(40), primary_key=True),
    sa.Column("week", sa.String(8), primary_key=True),
    sa.Column("reserved", sa.Integer, nullable=False),
    sa.Index("ix_capacity_ledger_family_week", "product_family", "week"),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("foundry_code", sa.String(20), nullable=False),
    sa.Column("product_family", sa.String(40), nullable=False),
    sa.Column("week", sa.String(8), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("consumed_quantity", sa.Integer, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=True),
    sa.Column("allocation_id", sa.String(100), nullable=True),
    sa.Column("plan_version", sa.Integer, nullable=True),
    sa.Column("due_date", sa.Date, nullable=True),
    sa.Column("item_code", sa.String(40), nullable=True),
    sa.Column("hold_expires_at", UtcDateTime, nullable=True),
    sa.Column("reason", sa.String(200), nullable=True),
    sa.Column("note", sa.String(500), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_reservations_cell", "foundry_code", "product_family", "week"),
    sa.Index("ix_reservations_order", "order_id"),
    sa.Index("ix_reservations_state", "state"),
)

# The newest plan version applied per order, so an older version arriving late is ignored.
order_plans = sa.Table(
    "order_plans",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("plan_version", sa.Integer, nullable=False),
    sa.Column("cancelled_at", UtcDateTime, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Which lot counted against which reservation: a lot is counted once even if it is announced again.
lot_consumptions = sa.Table(
    "lot_consumptions",
    metadata,
    sa.Column("lot_code", sa.String(64), primary_key=True),
    sa.Column("reservation_id", sa.String(40), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
)

# A client's Idempotency-Key per endpoint (`reservations`, `capacity-changes:<foundry>`) and what it made.
idempotency_keys = IdempotencyKeys(metadata)

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _insert_ignoring_duplicates(session: AsyncSession, table: sa.Table) -> Any:
    insert = _INSERTS[session.get_bind().dialect.name]
    return insert(table).on_conflict_do_nothing(index_elements=list(table.primary_key.columns))


async def publish(session: AsyncSession, *events: EventData) -> None:
    await stage(session, backbone.outbox, *events)


# --- foundries --------------------------------------------------------------------------------------------


def _to_foundry(row: Any) -> Foundry:
    return Foundry(
        code=row.code,
        name=row.name,
        village=row.village,
        product_families=tuple(ProductFamily(f) for f in row.product_families),
        revision=row.revision,
        registered_at=row.registered_at,
        updated_at=row.updated_at,
        owner=row.owner,
        npwp=row.npwp,
        membership_status=MembershipStatus(row.membership_status),
        furnaces=tuple(Furnace(FurnaceKind(f["kind"]), float(f["tonnes_per_day"])) for f in row.furnaces)
        if row.furnaces is not None
        else None,
        presses=row.presses,
    )


def _values(foundry: Foundry) -> dict[str, Any]:
    return {
        "code": foundry.code,
        "name": foundry.name,
        "village": foundry.village,
        "product_families": [f.value for f in foundry.product_families],
        "revision": foundry.revision,
        "registered_at": foundry.registered_at,
        "updated_at": foundry.updated_at,
        "owner": foundry.owner,
        "npwp": foundry.npwp,
        "membership_status": foundry.membership_status.value,
        "furnaces": [{"kind": f.kind.value, "tonnes_per_day": f.tonnes_per_day} for f in foundry.furnaces]
        if foundry.furnaces is not None
        else None,
        "presses": foundry.presses,
    }


async def get_foundry(session: AsyncSession, code: str) -> Foundry | None:
    row = (await session.execute(sa.select(foundries).where(foundries.c.code == code))).first()
    return _to_foundry(row) if row else None


async def get_foundries(session: AsyncSession, codes: Iterable[str]) -> dict[str, Foundry]:
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = (await session.execute(sa.select(foundries).where(foundries.c.code.in_(wanted)))).all()
    return {row.code: _to_foundry(row) for row in rows}


async def add_foundry(session: AsyncSession, foundry: Foundry) -> None:
    await session.execute(sa.insert(foundries).values(**_values(foundry)))
    await audit.record_change(
        session, audit_log, entity_type="foundry", entity_id=foundry.code, before=None, after=_values(foundry)
    )


async def save_foundry(session: AsyncSession, foundry: Foundry) -> None:
    before = (await audit.rows_by_key(session, foundries, foundries.c.code, [foundry.code])).get(foundry.code)
    await session.execute(sa.update(foundries).where(foundries.c.code == foundry.code).values(**_values(foundry)))
    await audit.record_change(
        session, audit_log, entity_type="foundry", entity_id=foundry.code, before=before, after=_values(foundry)
    )


async def list_foundries(
    session: AsyncSession,
    *,
    village: str | None = None,
    product_family: str | None = None,
    membership_status: str | None = None,
    code: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[Foundry], int]:
    query = sa.select(foundries)
    if code:
        query = query.where(foundries.c.code == code)
    if village:
        query = query.where(foundries.c.village == village)
    if membership_status:
        query = query.where(foundries.c.membership_status == membership_status)
    rows = [_to_foundry(r) for r in (await session.execute(query.order_by(foundries.c.code))).all()]
    # Families live in a JSON list; filtered here so the query stays portable across SQLite and PostgreSQL.
    if product_family:
        rows = [f for f in rows if product_family in f.product_families]
    end = None if limit is None else offset + limit
    return rows[offset:end], len(rows)


# --- calendars ----------------------------------------------------------------------------------------------


def _to_change(row: Any) -> CapacityChange:
    return CapacityChange(
        change_id=row.change_id,
        foundry_code=row.foundry_code,
        product_family=ProductFamily(row.product_family),
        seq=row.seq,
        kind=CapacityChangeKind(row.kind),
        reason=CapacityChangeReason(row.reason),
        recorded_at=row.recorded_at,
        weekly_units=row.weekly_units,
        from_week=row.from_week,
        from_date=row.from_date,
        to_date=row.to_date,
        withdraws=row.withdraws,
        note=row.note,
        reported_by=row.reported_by,
    )


async def lock_calendar_for_change(session: AsyncSession, foundry_code: str, family: str) -> None:
    """Creates the calendar's lock row if needed and takes it exclusively: one change at a time per calendar."""
    await session.execute(
        _insert_ignoring_duplicates(session, capacity_calendars),
        [{"foundry_code": foundry_code, "product_family": family, "revision": 0}],
    )
    await session.execute(
        sa.select(capacity_calendars.c.revision)
        .where(capacity_calendars.c.foundry_code == foundry_code, capacity_calendars.c.product_family == family)
        .with_for_update()
    )


async def share_calendars(session: AsyncSession, pairs: Iterable[tuple[str, str]]) -> None:
    """Locks calendars FOR SHARE (in key order) so no capacity change alters them until this transaction ends."""
    wanted = sorted(set(pairs))
    if not wanted:
        return
    await session.execute(
        sa.select(capacity_calendars.c.foundry_code)
        .where(sa.tuple_(capacity_calendars.c.foundry_code, capacity_calendars.c.product_family).in_(wanted))
        .order_by(capacity_calendars.c.foundry_code, capacity_calendars.c.product_family)
        .with_for_update(read=True)
    )


async def bump_calendar_revision(session: AsyncSession, foundry_code: str, family: str) -> None:
    await session.execute(
        sa.update(capacity_calendars)
        .where(capacity_calendars.c.foundry_code == foundry_code, capacity_calendars.c.product_family == family)
        .values(revision=capacity_calendars.c.revision + 1)
    )


async def get_calendar(session: AsyncSession, foundry_code: str, family: ProductFamily) -> CapacityCalendar:
    rows = (
        await session.execute(
            sa.select(capacity_changes)
            .where(capacity_changes.c.foundry_code == foundry_code, capacity_changes.c.product_family == family.value)
            .order_by(capacity_changes.c.seq)
        )
    ).all()
    return CapacityCalendar(foundry_code, family, tuple(_to_change(r) for r in rows))


async def get_calendars(session: AsyncSession, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], CapacityCalendar]:
    wanted = sorted(set(pairs))
    calendars = {(code, family): CapacityCalendar(code, ProductFamily(family)) for code, family in wanted}
    if not wanted:
        return calendars
    by_pair: dict[tuple[str, str], list[CapacityChange]] = {}
    # Chunks keep the statement's parameter count modest for plans with many foundries.
    for i in range(0, len(wanted), 200):
        chunk = wanted[i : i + 200]
        rows = (
            await session.execute(
                sa.select(capacity_changes)
                .where(sa.tuple_(capacity_changes.c.foundry_code, capacity_changes.c.product_family).in_(chunk))
                .order_by(capacity_changes.c.seq)
            )
        ).all()
        for row in rows:
            by_pair.setdefault((row.foundry_code, row.product_family), []).append(_to_change(row))
    for pair, changes in by_pair.items():
        calendars[pair] = CapacityCalendar(pair[0], ProductFamily(pair[1]), tuple(changes))
    return calendars


async def find_change(session: AsyncSession, change_id: str) -> CapacityChange | None:
    row = (await session.execute(sa.select(capacity_changes).where(capacity_changes.c.change_id == change_id))).first()
    return _to_change(row) if row else None


async def add_change(session: AsyncSession, change: CapacityChange) -> None:
    values = {
        "change_id": change.change_id,
        "foundry_code": change.foundry_code,
        "product_family": change.product_family.value,
        "seq": change.seq,
        "kind": change.kind.value,
        "reason": change.reason.value,
        "weekly_units": change.weekly_units,
        "from_week": change.from_week,
        "from_date": change.from_date,
        "to_date": change.to_date,
        "withdraws": change.withdraws,
        "note": change.note,
        "reported_by": change.reported_by,
        "recorded_at": change.recorded_at,
    }
    await session.execute(sa.insert(capacity_changes).values(**values))
    await audit.record_change(
        session, audit_log, entity_type="capacity_change", entity_id=change.change_id, before=None, after=values
    )


async def list_changes(
    session: AsyncSession, foundry_code: str, *, product_family: str | None, limit: int, offset: int
) -> tuple[list[CapacityChange], int]:
    conditions = [capacity_changes.c.foundry_code == foundry_code]
    if product_family:
        conditions.append(capacity_changes.c.product_family == product_family)
    total = (await session.execute(sa.select(sa.func.count()).select_from(capacity_changes).where(*conditions))).scalar_one()
    rows = (
        await session.execute(
            sa.select(capacity_changes)
            .where(*conditions)
            .order_by(capacity_changes.c.recorded_at, capacity_changes.c.product_family, capacity_changes.c.seq)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    return [_to_change(r) for r in rows], total


# --- the ledger ----------------------------------------------------------------------------------------------

Cell = tuple[str, str, str]  # foundry code, product family, week


async def lock_cells(session: AsyncSession, cells: Iterable[Cell]) -> dict[Cell, int]:
    """Creates missing ledger rows, locks all of them FOR UPDATE in key order, and returns what each has reserved."""
    wanted = sorted(set(cells))
    if not wanted:
        return {}
    await session.execute(
        _insert_ignoring_duplicates(session, capacity_ledger),
        [{"foundry_code": f, "product_family": p, "week": w, "reserved": 0} for f, p, w in wanted],
    )
    reserved: dict[Cell, int] = {}
    for i in range(0, len(wanted), 300):
        chunk = wanted[i : i + 300]
        rows = (
            await session.execute(
                sa.select(
                    capacity_ledger.c.foundry_code,
                    capacity_ledger.c.product_family,
                    capacity_ledger.c.week,
                    capacity_ledger.c.reserved,
                )
                .where(
                    sa.tuple_(capacity_ledger.c.foundry_code, capacity_ledger.c.product_family, capacity_ledger.c.week).in_(chunk)
                )
                .order_by(capacity_ledger.c.foundry_code, capacity_ledger.c.product_family, capacity_ledger.c.week)
                .with_for_update()
            )
        ).all()
        for row in rows:
            reserved[(row.foundry_code, row.product_family, row.week)] = row.reserved
    return reserved


async def lock_calendar_cells_from(
    session: AsyncSession, foundry_code: str, family: str, first_week: str, last_week: str | None
) -> dict[Cell, int]:
    """Locks the existing ledger rows of one calendar from `first_week` (to `last_week`): the only weeks with reservations."""
    conditions = [
        capacity_ledger.c.foundry_code == foundry_code,
        capacity_ledger.c.product_family == family,
        capacity_ledger.c.week >= first_week,
    ]
    if last_week is not None:
        conditions.append(capacity_ledger.c.week <= last_week)
    rows = (
        await session.execute(
            sa.select(capacity_ledger.c.week, capacity_ledger.c.reserved)
            .where(*conditions)
            .order_by(capacity_ledger.c.week)
            .with_for_update()
        )
    ).all()
    return {(foundry_code, family, row.week): row.reserved for row in rows}


async def add_reserved(session: AsyncSession, deltas: dict[Cell, int]) -> None:
    for (foundry_code, family, week), delta in sorted(deltas.items()):
        if delta:
            await session.execute(
                sa.update(capacity_ledger)
                .where(
                    capacity_ledger.c.foundry_code == foundry_code,
                    capacity_ledger.c.product_family == family,
                    capacity_ledger.c.week == week,
                )
                .values(reserved=capacity_ledger.c.reserved + delta)
            )


async def reserved_in_range(session: AsyncSession, family: str, first_week: str, last_week: str) -> list[tuple[str, str, int]]:
    """(foundry code, week, units reserved) of every week of the range with something reserved."""
    result = await session.execute(
        sa.select(capacity_ledger.c.foundry_code, capacity_ledger.c.week, capacity_ledger.c.reserved).where(
            capacity_ledger.c.product_family == family,
            capacity_ledger.c.week >= first_week,
            capacity_ledger.c.week <= last_week,
            capacity_ledger.c.reserved != 0,
        )
    )
    return [(code, week, reserved) for code, week, reserved in result]


async def foundry_revisions(session: AsyncSession) -> dict[str, int]:
    return dict((await session.execute(sa.select(foundries.c.code, foundries.c.revision))).all())


async def calendar_revisions(session: AsyncSession, family: str) -> dict[str, int]:
    rows = await session.execute(
        sa.select(capacity_calendars.c.foundry_code, capacity_calendars.c.revision).where(
            capacity_calendars.c.product_family == family
        )
    )
    return dict(rows.all())


async def register_version(session: AsyncSession, family: str) -> tuple[int, ...]:
    """Changes whenever a foundry or one of the family's calendars changes: revisions only ever grow, rows are never
    deleted. Lets a replica keep what it read of them while this stays the same."""
    calendars = capacity_calendars.c
    row = (
        await session.execute(
            sa.select(
                sa.select(sa.func.count()).select_from(foundries).scalar_subquery(),
                sa.select(sa.func.coalesce(sa.func.sum(foundries.c.revision), 0)).scalar_subquery(),
                sa.select(sa.func.count())
                .select_from(capacity_calendars)
                .where(calendars.product_family == family)
                .scalar_subquery(),
                sa.select(sa.func.coalesce(sa.func.sum(calendars.revision), 0))
                .where(calendars.product_family == family)
                .scalar_subquery(),
            )
        )
    ).one()
    return tuple(int(value) for value in row)


# --- reservations --------------------------------------------------------------------------------------------


def _to_reservation(row: Any) -> Reservation:
    return Reservation(
        id=row.id,
        foundry_code=row.foundry_code,
        product_family=ProductFamily(row.product_family),
        week=row.week,
        quantity=row.quantity,
        state=ReservationState(row.state),
        source=ReservationSource(row.source),
        created_at=row.created_at,
        updated_at=row.updated_at,
        consumed_quantity=row.consumed_quantity,
        order_id=row.order_id,
        allocation_id=row.allocation_id,
        plan_version=row.plan_version,
        due_date=row.due_date,
        item_code=row.item_code,
        hold_expires_at=row.hold_expires_at,
        reason=row.reason,
        note=row.note,
    )


def _reservation_values(r: Reservation) -> dict[str, Any]:
    return {
        "id": r.id,
        "foundry_code": r.foundry_code,
        "product_family": r.product_family.value,
        "week": r.week,
        "quantity": r.quantity,
        "consumed_quantity": r.consumed_quantity,
        "state": r.state.value,
        "source": r.source.value,
        "order_id": r.order_id,
        "allocation_id": r.allocation_id,
        "plan_version": r.plan_version,
        "due_date": r.due_date,
        "item_code": r.item_code,
        "hold_expires_at": r.hold_expires_at,
        "reason": r.reason[:200] if r.reason else None,
        "note": r.note,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }


async def add_reservations(session: AsyncSession, added: Sequence[Reservation]) -> None:
    if added:
        await session.execute(sa.insert(reservations), [_reservation_values(r) for r in added])
    for r in added:
        await audit.record_change(
            session, audit_log, entity_type="reservation", entity_id=r.id, before=None, after=_reservation_values(r)
        )


async def save_reservations(session: AsyncSession, changed: Sequence[Reservation]) -> None:
    befores = await audit.rows_by_key(session, reservations, reservations.c.id, [r.id for r in changed])
    for r in changed:
        values = _reservation_values(r)
        del values["id"]
        await session.execute(sa.update(reservations).where(reservations.c.id == r.id).values(**values))
        await audit.record_change(
            session, audit_log, entity_type="reservation", entity_id=r.id, before=befores.get(r.id), after=values
        )


async def get_reservation(session: AsyncSession, reservation_id: str) -> Reservation | None:
    row = (await session.execute(sa.select(reservations).where(reservations.c.id == reservation_id))).first()
    return _to_reservation(row) if row else None


async def reservations_in_cells(
    session: AsyncSession, cells: Iterable[Cell], states: Iterable[ReservationState]
) -> list[Reservation]:
    wanted = sorted(set(cells))
    found: list[Reservation] = []
    for i in range(0, len(wanted), 300):
        chunk = wanted[i : i + 300]
        rows = (
            await session.execute(
                sa.select(reservations).where(
                    sa.tuple_(reservations.c.foundry_code, reservations.c.product_family, reservations.c.week).in_(chunk),
                    reservations.c.state.in_([s.value for s in states]),
                )
            )
        ).all()
        found += [_to_reservation(r) for r in rows]
    return found


async def open_reservations_of_order(session: AsyncSession, order_id: str) -> list[Reservation]:
    rows = (
        await session.execute(
            sa.select(reservations)
            .where(
                reservations.c.order_id == order_id,
                reservations.c.state.in_([ReservationState.HOLD.value, ReservationState.CONFIRMED.value]),
            )
            .order_by(reservations.c.created_at, reservations.c.id)
        )
    ).all()
    return [_to_reservation(r) for r in rows]


async def plan_reservations_of_order(session: AsyncSession, order_id: str) -> list[Reservation]:
    """The order's open reservations and the consumed ones: what a new plan version is reconciled against."""
    rows = (
        await session.execute(
            sa.select(reservations)
            .where(
                reservations.c.order_id == order_id,
                reservations.c.state.in_(
                    [ReservationState.HOLD.value, ReservationState.CONFIRMED.value, ReservationState.CONSUMED.value]
                ),
            )
            .order_by(reservations.c.created_at, reservations.c.id)
        )
    ).all()
    return [_to_reservation(r) for r in rows]


async def open_reservations_from_week(
    session: AsyncSession, foundry_code: str, families: Sequence[str], first_week: str
) -> list[Reservation]:
    rows = (
        await session.execute(
            sa.select(reservations).where(
                reservations.c.foundry_code == foundry_code,
                reservations.c.product_family.in_(list(families)),
                reservations.c.week >= first_week,
                reservations.c.state.in_([ReservationState.HOLD.value, ReservationState.CONFIRMED.value]),
            )
        )
    ).all()
    return [_to_reservation(r) for r in rows]


async def confirmed_reservations_for_lot(
    session: AsyncSession, foundry_code: str, order_id: str | None, allocation_id: str | None
) -> list[Reservation]:
    conditions = [reservations.c.foundry_code == foundry_code, reservations.c.state == ReservationState.CONFIRMED.value]
    if allocation_id is not None:
        conditions.append(reservations.c.allocation_id == allocation_id)
    elif order_id is not None:
        conditions.append(reservations.c.order_id == order_id)
    else:
        return []
    rows = (await session.execute(sa.select(reservations).where(*conditions))).all()
    return [_to_reservation(r) for r in rows]


async def holds_expired_by(session: AsyncSession, now: datetime, limit: int) -> list[Reservation]:
    rows = (
        await session.execute(
            sa.select(reservations)
            .where(reservations.c.state == ReservationState.HOLD.value, reservations.c.hold_expires_at <= now)
            .order_by(reservations.c.hold_expires_at, reservations.c.id)
            .limit(limit)
        )
    ).all()
    return [_to_reservation(r) for r in rows]


async def list_reservations(
    session: AsyncSession,
    *,
    foundry_code: str | None,
    product_family: str | None,
    week: str | None,
    order_id: str | None,
    state: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Reservation], int]:
    conditions = []
    for column, value in (
        (reservations.c.foundry_code, foundry_code),
        (reservations.c.product_family, product_family),
        (reservations.c.week, week),
        (reservations.c.order_id, order_id),
        (reservations.c.state, state),
    ):
        if value is not None:
            conditions.append(column == value)
    total = (await session.execute(sa.select(sa.func.count()).select_from(reservations).where(*conditions))).scalar_one()
    rows = (
        await session.execute(
            sa.select(reservations)
            .where(*conditions)
            .order_by(reservations.c.week, reservations.c.foundry_code, reservations.c.created_at, reservations.c.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    return [_to_reservation(r) for r in rows], total


async def count_reservations_by_state(session: AsyncSession) -> dict[str, int]:
    rows = (await session.execute(sa.select(reservations.c.state, sa.func.count()).group_by(reservations.c.state))).all()
    return dict(rows)


async def reserved_by_family_and_week(session: AsyncSession, first_week: str, last_week: str) -> dict[tuple[str, str], int]:
    rows = (
        await session.execute(
            sa.select(capacity_ledger.c.product_family, capacity_ledger.c.week, sa.func.sum(capacity_ledger.c.reserved))
            .where(capacity_ledger.c.week >= first_week, capacity_ledger.c.week <= last_week)
            .group_by(capacity_ledger.c.product_family, capacity_ledger.c.week)
        )
    ).all()
    return {(family, week): int(total or 0) for family, week, total in rows}


async def held_and_made_by_cell(
    session: AsyncSession, first_week: str, last_week: str
) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(foundry, family, week) → (units held, units of them already made), for the weeks given."""
    held = sa.func.sum(reservations.c.quantity)
    made = sa.func.sum(reservations.c.consumed_quantity)
    rows = (
        await session.execute(
            sa.select(reservations.c.foundry_code, reservations.c.product_family, reservations.c.week, held, made)
            .where(
                reservations.c.week >= first_week,
                reservations.c.week <= last_week,
                reservations.c.state.in_([s.value for s in HOLDING_STATES]),
            )
            .group_by(reservations.c.foundry_code, reservations.c.product_family, reservations.c.week)
        )
    ).all()
    return {(code, family, week): (int(h or 0), int(m or 0)) for code, family, week, h, m in rows}


async def all_changes(session: AsyncSession) -> list[CapacityChange]:
    rows = (await session.execute(sa.select(capacity_changes).order_by(capacity_changes.c.seq))).all()
    return [_to_change(r) for r in rows]


# --- orders' plans and lots ------------------------------------------------------------------------------------


async def lock_order_plan(session: AsyncSession, order_id: str, now: datetime) -> Any:
    """The order's plan row, created if new and locked: one plan change of an order at a time."""
    await session.execute(
        _insert_ignoring_duplicates(session, order_plans),
        [{"order_id": order_id, "plan_version": 0, "cancelled_at": None, "updated_at": now}],
    )
    return (await session.execute(sa.select(order_plans).where(order_plans.c.order_id == order_id).with_for_update())).one()


async def save_order_plan(
    session: AsyncSession, order_id: str, now: datetime, *, plan_version: int | None = None, cancelled_at: datetime | None = None
) -> None:
    values: dict[str, Any] = {"updated_at": now}
    if plan_version is not None:
        values["plan_version"] = plan_version
    if cancelled_at is not None:
        values["cancelled_at"] = cancelled_at
    await session.execute(sa.update(order_plans).where(order_plans.c.order_id == order_id).values(**values))


async def lot_already_counted(session: AsyncSession, lot_code: str) -> bool:
    row = (
        await session.execute(sa.select(lot_consumptions.c.lot_code).where(lot_consumptions.c.lot_code == lot_code).limit(1))
    ).first()
    return row is not None


async def add_lot_consumptions(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(sa.insert(lot_consumptions), rows)


# --- quality's item catalogue -------------------------------------------------------------------------------------


async def item_version(session: AsyncSession, item_code: str) -> int | None:
    return (await session.execute(sa.select(item_projection.c.version).where(item_projection.c.item_code == item_code))).scalar()


async def set_item(session: AsyncSession, values: dict[str, Any]) -> None:
    """Inserts or replaces the item's row, audited as the event being applied."""
    key = item_projection.c.item_code == values["item_code"]
    found = (await session.execute(sa.select(item_projection).where(key))).first()
    if found is None:
        await session.execute(sa.insert(item_projection).values(**values))
    else:
        await session.execute(sa.update(item_projection).where(key).values(**values))
    before = dict(found._mapping) if found is not None else None
    await audit.record_change(
        session, audit_log, entity_type="item_projection", entity_id=values["item_code"], before=before, after=values
    )


async def item_family(session: AsyncSession, item_code: str) -> str | None:
    """The product family that makes the item, as quality's catalogue last said; None for an item not known here."""
    return (
        await session.execute(sa.select(item_projection.c.product_family).where(item_projection.c.item_code == item_code))
    ).scalar()
