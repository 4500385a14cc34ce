"""Capacity's HTTP API: member foundries, their capacity calendars, availability and reservations.

Each route names who may call it. A member foundry sees and reports only its own capacity: another member's
entry answers 404. NPWP and owners' names are answered to admins and planners only.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shared.audit_api import trail_router
from shared.auth import Principal, require
from shared.http import FieldError, NotFound, Unprocessable, problem_responses
from shared.idempotency import OptionalIdempotencyKey, fingerprint, mark_replayed
from shared.paging import Page, Paging, paging_query
from shared.roles import Role
from shared.service import Runtime, Sessions

from . import handlers, store
from .domain import (
    MAX_WEEKLY_UNITS,
    CapacityChange,
    CapacityChangeKind,
    CapacityChangeReason,
    CapacityChangeRequest,
    DomainError,
    Foundry,
    Furnace,
    FurnaceKind,
    MembershipStatus,
    ProductFamily,
    Reservation,
    ReservationRequest,
    ReservationSource,
    ReservationState,
    add_weeks,
    iso_week,
    parse_week,
)

router = APIRouter(prefix="/v1")
internal = APIRouter(prefix="/internal", tags=["operations"], dependencies=[Depends(require(Role.ADMIN))])

# Who may call: staff for every member, a foundry for itself.
MemberReader = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER, Role.QA_OFFICER, Role.FOUNDRY))]
CapacityReporter = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER, Role.FOUNDRY))]
Planner = Annotated[Principal, Depends(require(Role.ADMIN, Role.PLANNER))]
AUTH_ERRORS = (401, 403)
SEES_IDENTITIES = (Role.ADMIN, Role.PLANNER)  # NPWP and owners' names are personal data
SEES_ALL = (Role.ADMIN, Role.PLANNER, Role.QA_OFFICER)


def _for_foundry(caller: Principal, code: str, missing: str) -> None:
    """404 when the caller may not act for the member, worded as for one that does not exist."""
    if not caller.acts_for_foundry(code):
        raise NotFound(missing)


def _scoped(caller: Principal, requested: str | None) -> tuple[bool, str | None]:
    """The member a list is narrowed to: a foundry sees only itself. False when it asked for another member."""
    if requested is not None and not caller.acts_for_foundry(requested):
        return False, None
    return True, requested if caller.acts_for_foundry(requested or "") else caller.foundry_code


FoundryCode = Annotated[str, Field(pattern=r"^IKM-\d{3,4}$", examples=["IKM-001"])]
Week = Annotated[str, Field(pattern=r"^\d{4}-W\d{2}$", examples=["2027-W10"], description="ISO week")]
Units = Annotated[int, Field(strict=True, gt=0, le=MAX_WEEKLY_UNITS, description="Whole units")]
MAX_AVAILABILITY_WEEKS = 104


# --- foundries ------------------------------------------------------------------------------------------------


class FurnaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: FurnaceKind
    tonnes_per_day: float = Field(gt=0, examples=[4.0], description="Molten iron per working day")


class FoundryIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "IKM-001",
                    "name": "CV Logam Jaya",
                    "village": "Batur",
                    "product_families": ["BRAKE_BLOCK_COMPOSITE", "BRAKE_BLOCK_CAST_IRON"],
                    "owner": "Agus Purwanto",
                    "npwp": "3310012345678901",
                    "furnaces": [{"kind": "cupola", "tonnes_per_day": 4.0}],
                    "presses": 2,
                }
            ]
        },
    )

    code: str = Field(pattern=r"^IKM-\d{3,4}$", examples=["IKM-001"])
    name: str = Field(min_length=1, max_length=200, examples=["CV Logam Jaya"])
    village: str = Field(min_length=1, max_length=100, examples=["Batur"])
    product_families: list[ProductFamily] = Field(min_length=1, examples=[["BRAKE_BLOCK_COMPOSITE"]])
    owner: str | None = Field(default=None, min_length=1, max_length=200, examples=["Agus Purwanto"])
    npwp: str | None = Field(
        default=None, max_length=32, examples=["3310012345678901"], description="16 digits, or the old form 99.999.999.9-999.999"
    )
    membership_status: MembershipStatus = MembershipStatus.ACTIVE
    furnaces: list[FurnaceIn] | None = Field(default=None, max_length=20)
    presses: int | None = Field(default=None, strict=True, ge=0, le=1_000, description="Hot presses for composite brake blocks")


class FoundryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    village: str | None = Field(default=None, min_length=1, max_length=100)
    product_families: list[ProductFamily] | None = Field(default=None, min_length=1)
    owner: str | None = Field(default=None, min_length=1, max_length=200)
    npwp: str | None = Field(default=None, max_length=32)
    membership_status: MembershipStatus | None = None
    furnaces: list[FurnaceIn] | None = Field(default=None, max_length=20)
    presses: int | None = Field(default=None, strict=True, ge=0, le=1_000)


class FurnaceOut(BaseModel):
    kind: FurnaceKind
    tonnes_per_day: float


class FoundryOut(BaseModel):
    code: str
    name: str
    village: str
    product_families: list[ProductFamily]
    owner: str | None
    npwp: str | None
    membership_status: MembershipStatus
    furnaces: list[FurnaceOut] | None
    presses: int | None
    revision: int
    registered_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, foundry: Foundry, caller: Principal) -> FoundryOut:
        identities = caller.has_any(SEES_IDENTITIES)
        return cls(
            code=foundry.code,
            name=foundry.name,
            village=foundry.village,
            product_families=list(foundry.product_families),
            owner=foundry.owner if identities else None,
            npwp=foundry.npwp if identities else None,
            membership_status=foundry.membership_status,
            furnaces=[FurnaceOut(kind=f.kind, tonnes_per_day=f.tonnes_per_day) for f in foundry.furnaces]
            if foundry.furnaces is not None
            else None,
            presses=foundry.presses,
            revision=foundry.revision,
            registered_at=foundry.registered_at,
            updated_at=foundry.updated_at,
        )


class FoundryPage(Page[FoundryOut]):
    pass


def _furnaces(furnaces: list[FurnaceIn] | None) -> list[Furnace] | None:
    return [Furnace(f.kind, f.tonnes_per_day) for f in furnaces] if furnaces is not None else None


@router.post(
    "/foundries",
    status_code=201,
    response_model=FoundryOut,
    tags=["foundries"],
    summary="Register a member foundry",
    responses=problem_responses(*AUTH_ERRORS, 409, 422),
)
async def register_foundry(body: FoundryIn, caller: Planner, sessions: Sessions, response: Response) -> FoundryOut:
    entry = body.model_dump(exclude={"furnaces"})
    foundry = await handlers.register(sessions, **entry, furnaces=_furnaces(body.furnaces))
    response.headers["Location"] = f"/v1/foundries/{foundry.code}"
    return FoundryOut.of(foundry, caller)


@router.get(
    "/foundries",
    response_model=FoundryPage,
    tags=["foundries"],
    summary="List member foundries",
    description="A member foundry sees its own entry only; NPWP and owner are given to admins and planners only.",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def list_foundries(
    caller: MemberReader,
    sessions: Sessions,
    paging: Annotated[Paging, paging_query(default_limit=50)],
    village: str | None = None,
    product_family: ProductFamily | None = None,
    membership_status: MembershipStatus | None = None,
) -> FoundryPage:
    async with sessions() as session:
        items, total = await store.list_foundries(
            session,
            village=village,
            product_family=product_family,
            membership_status=membership_status.value if membership_status else None,
            code=None if caller.has_any(SEES_ALL) else caller.foundry_code,
            limit=paging.limit,
            offset=paging.offset,
        )
    return FoundryPage.of((FoundryOut.of(f, caller) for f in items), total, paging)


@router.get(
    "/foundries/{code}",
    response_model=FoundryOut,
    tags=["foundries"],
    summary="One member foundry",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_foundry(code: str, caller: MemberReader, sessions: Sessions) -> FoundryOut:
    _for_foundry(caller, code, f"no foundry {code}")
    async with sessions() as session:
        foundry = await store.get_foundry(session, code)
    if foundry is None:
        raise NotFound(f"no foundry {code}")
    return FoundryOut.of(foundry, caller)


@router.patch(
    "/foundries/{code}",
    response_model=FoundryOut,
    tags=["foundries"],
    summary="Change a member foundry's register entry",
    description="A foundry that stops being active, or drops a product family, offers that capacity no more: "
    "its open reservations from this week on are revoked (`reservation_revoked`).",
    responses=problem_responses(*AUTH_ERRORS, 404, 422),
)
async def patch_foundry(code: str, body: FoundryPatch, caller: Planner, sessions: Sessions) -> FoundryOut:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude_none=True, exclude={"furnaces"})
    if body.furnaces is not None:
        changes["furnaces"] = _furnaces(body.furnaces)
    foundry = await handlers.change(sessions, code, **changes)
    return FoundryOut.of(foundry, caller)


# --- capacity calendar ------------------------------------------------------------------------------------------


class CapacityChangeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "standard",
                    "product_family": "BRAKE_BLOCK_COMPOSITE",
                    "weekly_units": 576,
                    "from_week": "2027-W01",
                    "reason": "declared",
                },
                {
                    "kind": "exception",
                    "product_family": "BRAKE_BLOCK_COMPOSITE",
                    "weekly_units": 0,
                    "from_date": "2027-03-08",
                    "to_date": "2027-03-14",
                    "reason": "lebaran_closure",
                },
                {"kind": "withdrawal", "withdraws": "chg_0123456789abcdef0123", "reason": "repaired"},
            ]
        },
    )

    kind: CapacityChangeKind
    reason: CapacityChangeReason
    product_family: ProductFamily | None = Field(default=None, description="Required except for a withdrawal")
    weekly_units: int | None = Field(default=None, strict=True, description="Units per ISO week (standard and exception)")
    from_week: Week | None = Field(default=None, description="Standard: the first week it applies (default: this week)")
    from_date: date | None = Field(default=None, description="Exception: first day, inclusive")
    to_date: date | None = Field(default=None, description="Exception: last day, inclusive")
    withdraws: str | None = Field(default=None, max_length=40, description="Withdrawal: the change taken back")
    note: str | None = Field(default=None, max_length=500)
    reported_by: str | None = Field(default=None, max_length=200, examples=["IKM-001 (Pak Agus)"])


class WeekCapacityOut(BaseModel):
    week: str
    capacity: int


class RevocationOut(BaseModel):
    reservation_id: str
    week: str
    revoked_quantity: int
    remaining_quantity: int
    order_id: str | None
    allocation_id: str | None


class CapacityChangeOut(BaseModel):
    change_id: str
    foundry_code: str
    product_family: ProductFamily
    kind: CapacityChangeKind
    reason: CapacityChangeReason
    weekly_units: int | None
    from_week: str | None
    from_date: date | None
    to_date: date | None
    withdraws: str | None
    note: str | None
    reported_by: str | None
    recorded_at: datetime

    @classmethod
    def of(cls, change: CapacityChange, **extra: Any) -> Any:
        return cls(
            change_id=change.change_id,
            foundry_code=change.foundry_code,
            product_family=change.product_family,
            kind=change.kind,
            reason=change.reason,
            weekly_units=change.weekly_units,
            from_week=change.from_week,
            from_date=change.from_date,
            to_date=change.to_date,
            withdraws=change.withdraws,
            note=change.note,
            reported_by=change.reported_by,
            recorded_at=change.recorded_at,
            **extra,
        )


class CapacityChangeResult(CapacityChangeOut):
    weeks: list[WeekCapacityOut] = Field(description="The resulting capacity of every week the change touches")
    revoked: list[RevocationOut] = Field(description="Reservations cut back because capacity fell below them")


class CapacityChangePage(Page[CapacityChangeOut]):
    pass


@router.post(
    "/foundries/{code}/capacity-changes",
    status_code=201,
    response_model=CapacityChangeResult,
    tags=["capacity"],
    summary="Report a capacity change (a new standard figure, an exception over dates, or a withdrawal)",
    description=(
        "Recorded, never overwritten: the calendar is the history of changes. The same change again (or a retry with "
        "the same `Idempotency-Key`) answers 200 with the recorded one and changes nothing. An exception overlapping "
        "another with a different figure is refused (409): withdraw that one first. When capacity falls below what is "
        "reserved, the excess is revoked — latest due date first, then the newest — and listed in `revoked`."
    ),
    responses={
        **problem_responses(*AUTH_ERRORS, 404, 409, 422),
        200: {"model": CapacityChangeResult, "description": "Already recorded"},
    },
)
async def report_capacity_change(
    code: str,
    body: CapacityChangeIn,
    caller: CapacityReporter,
    sessions: Sessions,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> CapacityChangeResult:
    _for_foundry(caller, code, f"no foundry {code}")
    from_week = body.from_week
    if body.kind is CapacityChangeKind.STANDARD and from_week is None:
        from_week = handlers.current_week()
    request = CapacityChangeRequest(
        kind=body.kind,
        product_family=body.product_family,
        reason=body.reason,
        weekly_units=body.weekly_units,
        from_week=from_week,
        from_date=body.from_date,
        to_date=body.to_date,
        withdraws=body.withdraws,
        note=body.note,
        reported_by=body.reported_by,
    )
    result = await handlers.record_change(
        sessions, code, request, idempotency_key=idempotency_key, fingerprint=fingerprint(body.model_dump(mode="json"))
    )
    if not result.created:
        response.status_code = 200
        mark_replayed(response)
    response.headers["Location"] = f"/v1/foundries/{code}/capacity-changes"
    return CapacityChangeResult.of(
        result.change,
        weeks=[WeekCapacityOut(week=w, capacity=c) for w, c in result.weeks],
        revoked=[
            RevocationOut(
                reservation_id=e.reservation_id,
                week=e.week,
                revoked_quantity=e.revoked_quantity,
                remaining_quantity=e.remaining_quantity,
                order_id=e.order_id,
                allocation_id=e.allocation_id,
            )
            for e in result.revoked
        ],
    )


@router.get(
    "/foundries/{code}/capacity-changes",
    response_model=CapacityChangePage,
    tags=["capacity"],
    summary="A foundry's capacity change history, oldest first",
    responses=problem_responses(*AUTH_ERRORS, 404, 422),
)
async def list_capacity_changes(
    code: str,
    caller: MemberReader,
    sessions: Sessions,
    paging: Annotated[Paging, paging_query(default_limit=100)],
    product_family: ProductFamily | None = None,
) -> CapacityChangePage:
    _for_foundry(caller, code, f"no foundry {code}")
    changes, total = await handlers.list_changes(
        sessions, code, product_family=product_family.value if product_family else None, limit=paging.limit, offset=paging.offset
    )
    return CapacityChangePage.of((CapacityChangeOut.of(c) for c in changes), total, paging)


# --- availability -------------------------------------------------------------------------------------------------


class WeeklyFigures(BaseModel):
    capacity: list[int] = Field(description="Units it can make, one figure per week of `weeks`")
    reserved: list[int] = Field(description="Units held by hold, confirmed and consumed reservations")
    free: list[int] = Field(description="capacity − reserved, never below 0")


class FoundryAvailabilityOut(WeeklyFigures):
    foundry_code: str
    name: str
    village: str


class AvailabilityOut(BaseModel):
    """Figures are arrays aligned with `weeks`: a year of 170 members stays a small, fast document."""

    product_family: ProductFamily
    from_week: str
    to_week: str
    weeks: list[str] = Field(examples=[["2027-W10", "2027-W11"]])
    foundries: list[FoundryAvailabilityOut] = Field(description="Active members making the family, by code")
    totals: WeeklyFigures = Field(description="All those foundries together")


def _week_of(text: str, name: str) -> str:
    try:
        if "W" in text:
            return parse_week(text, name)
        return iso_week(date.fromisoformat(text))
    except (DomainError, ValueError):
        message = f"{text!r} is neither an ISO week (2027-W10) nor a date (2027-03-08)"
        raise Unprocessable(f"{name}: {message}", errors=[FieldError(field=f"query.{name}", message=message)]) from None


@router.get(
    "/availability",
    response_model=AvailabilityOut,
    tags=["capacity"],
    summary="Capacity, reserved and free units per foundry and ISO week",
    description=f"`from` and `to` are ISO weeks or dates (the week containing them), both included; at most {MAX_AVAILABILITY_WEEKS} weeks. "
    "Defaults: this week and the 11 after it. A member foundry sees its own figures only.",
    responses=problem_responses(*AUTH_ERRORS, 404, 422),
)
async def get_availability(
    caller: MemberReader,
    sessions: Sessions,
    runtime: Runtime,
    product_family: ProductFamily,
    from_: Annotated[str | None, Query(alias="from", examples=["2027-W01"])] = None,
    to: Annotated[str | None, Query(examples=["2027-W52"])] = None,
    foundry_code: FoundryCode | None = None,
    village: str | None = None,
) -> Response:
    allowed, foundry_code = _scoped(caller, foundry_code)
    if not allowed:
        raise NotFound("no such foundry")
    first = _week_of(from_, "from") if from_ else handlers.current_week()
    last = _week_of(to, "to") if to else add_weeks(first, 11)
    if last < first:
        raise Unprocessable(
            "to: must not be before from", errors=[FieldError(field="query.to", message="must not be before from")]
        )
    if last > add_weeks(first, MAX_AVAILABILITY_WEEKS - 1):
        message = f"at most {MAX_AVAILABILITY_WEEKS} weeks at a time"
        raise Unprocessable(f"to: {message}", errors=[FieldError(field="query.to", message=message)])
    snapshots = runtime.state.setdefault("availability_snapshots", handlers.AvailabilitySnapshots())
    found = await handlers.availability(
        sessions, product_family, first, last, foundry_code=foundry_code, village=village, snapshots=snapshots
    )
    weeks = len(found.weeks)
    totals = {"capacity": [0] * weeks, "reserved": [0] * weeks, "free": [0] * weeks}
    foundries = []
    for row in found.foundries:
        free = [max(0, c - r) for c, r in zip(row.capacity, row.reserved, strict=False)]
        for name, figures in (("capacity", row.capacity), ("reserved", row.reserved), ("free", free)):
            column = totals[name]
            for i, units in enumerate(figures):
                column[i] += units
        foundries.append(
            {
                "foundry_code": row.foundry.code,
                "name": row.foundry.name,
                "village": row.foundry.village,
                "capacity": row.capacity,
                "reserved": row.reserved,
                "free": free,
            }
        )
    # Plain data straight to JSON: validating 170 × 52 figures against the model would cost more than the query.
    return JSONResponse(
        {
            "product_family": product_family.value,
            "from_week": first,
            "to_week": last,
            "weeks": found.weeks,
            "foundries": foundries,
            "totals": totals,
        }
    )


# --- reservations -------------------------------------------------------------------------------------------------


class ReservationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "foundry_code": "IKM-001",
                    "product_family": "BRAKE_BLOCK_COMPOSITE",
                    "week": "2027-W12",
                    "quantity": 200,
                    "due_date": "2027-04-30",
                }
            ]
        },
    )

    foundry_code: FoundryCode
    product_family: ProductFamily
    week: Week
    quantity: Units
    due_date: date | None = Field(default=None, description="Delivery this production serves; orders revocation")
    order_id: str | None = Field(default=None, max_length=64)
    allocation_id: str | None = Field(default=None, max_length=64)
    item_code: str | None = Field(default=None, max_length=40, examples=["BB-COMP-K"])
    note: str | None = Field(default=None, max_length=500)


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="released_on_request", min_length=1, max_length=200)


class ReservationOut(BaseModel):
    id: str
    foundry_code: str
    product_family: ProductFamily
    week: str
    quantity: int = Field(description="Units it holds now, consumed ones included")
    consumed_quantity: int
    state: ReservationState
    source: ReservationSource
    order_id: str | None
    allocation_id: str | None
    plan_version: int | None
    due_date: date | None
    item_code: str | None
    hold_expires_at: datetime | None
    reason: str | None = Field(description="Why it last changed state")
    note: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: Reservation) -> ReservationOut:
        return cls(
            id=r.id,
            foundry_code=r.foundry_code,
            product_family=r.product_family,
            week=r.week,
            quantity=r.quantity,
            consumed_quantity=r.consumed_quantity,
            state=r.state,
            source=r.source,
            order_id=r.order_id,
            allocation_id=r.allocation_id,
            plan_version=r.plan_version,
            due_date=r.due_date,
            item_code=r.item_code,
            hold_expires_at=r.hold_expires_at,
            reason=r.reason,
            note=r.note,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class ReservationPage(Page[ReservationOut]):
    pass


@router.post(
    "/reservations",
    status_code=201,
    response_model=ReservationOut,
    tags=["reservations"],
    summary="Hold capacity; confirm the hold before it expires",
    description="The hold counts against the week's capacity until confirmed, released or expired "
    "(`CEPER_CAPACITY_HOLD_MINUTES`, default 60). A request that does not fit whole is refused (409) with the free quantity.",
    responses=problem_responses(*AUTH_ERRORS, 409, 422),
)
async def hold_capacity(
    body: ReservationIn,
    caller: Planner,
    sessions: Sessions,
    runtime: Runtime,
    response: Response,
    idempotency_key: OptionalIdempotencyKey = None,
) -> ReservationOut:
    request = ReservationRequest(
        foundry_code=body.foundry_code,
        product_family=body.product_family.value,
        week=body.week,
        quantity=body.quantity,
        order_id=body.order_id,
        allocation_id=body.allocation_id,
        due_date=body.due_date,
        item_code=body.item_code,
        note=body.note,
    )
    held = await handlers.hold(
        sessions,
        request,
        runtime.settings,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint(body.model_dump(mode="json")),
    )
    response.headers["Location"] = f"/v1/reservations/{held.reservation.id}"
    if held.replayed:
        mark_replayed(response)
    return ReservationOut.of(held.reservation)


@router.get(
    "/reservations",
    response_model=ReservationPage,
    tags=["reservations"],
    summary="List reservations",
    description="A member foundry sees its own reservations only.",
    responses=problem_responses(*AUTH_ERRORS, 422),
)
async def list_reservations(
    caller: MemberReader,
    sessions: Sessions,
    paging: Annotated[Paging, paging_query(default_limit=100)],
    foundry_code: str | None = None,
    product_family: ProductFamily | None = None,
    week: Week | None = None,
    order_id: str | None = None,
    state: ReservationState | None = None,
) -> ReservationPage:
    allowed, foundry_code = _scoped(caller, foundry_code)
    if not allowed:
        return ReservationPage.of([], 0, paging)
    async with sessions() as session:
        items, total = await store.list_reservations(
            session,
            foundry_code=foundry_code,
            product_family=product_family.value if product_family else None,
            week=week,
            order_id=order_id,
            state=state.value if state else None,
            limit=paging.limit,
            offset=paging.offset,
        )
    return ReservationPage.of((ReservationOut.of(r) for r in items), total, paging)


@router.get(
    "/reservations/{reservation_id}",
    response_model=ReservationOut,
    tags=["reservations"],
    summary="One reservation",
    responses=problem_responses(*AUTH_ERRORS, 404),
)
async def get_reservation(reservation_id: str, caller: MemberReader, sessions: Sessions) -> ReservationOut:
    reservation = await handlers.get_reservation(sessions, reservation_id)
    _for_foundry(caller, reservation.foundry_code, f"no reservation {reservation_id}")
    return ReservationOut.of(reservation)


@router.post(
    "/reservations/{reservation_id}/confirm",
    response_model=ReservationOut,
    tags=["reservations"],
    summary="Confirm a hold (publishes reservation_confirmed); confirming again changes nothing",
    responses=problem_responses(*AUTH_ERRORS, 404, 409),
)
async def confirm_reservation(reservation_id: str, caller: Planner, sessions: Sessions) -> ReservationOut:
    return ReservationOut.of(await handlers.confirm(sessions, reservation_id))


@router.post(
    "/reservations/{reservation_id}/release",
    response_model=ReservationOut,
    tags=["reservations"],
    summary="Give a hold or a confirmed reservation back (publishes reservation_released); made units stay",
    responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def release_reservation(
    reservation_id: str, caller: Planner, sessions: Sessions, body: ReleaseIn | None = None
) -> ReservationOut:
    reason = body.reason if body is not None else ReleaseIn().reason
    return ReservationOut.of(await handlers.release(sessions, reservation_id, reason))


# --- internal: the clock-driven job's trigger ----------------------------------------------------------------------


class HoldExpiryOut(BaseModel):
    expired: list[str] = Field(description="Holds expired in this run")


@internal.post(
    "/jobs/hold-expiry",
    response_model=HoldExpiryOut,
    summary="Expire unconfirmed holds and refresh the business metrics now (this also runs periodically)",
    responses=problem_responses(*AUTH_ERRORS),
)
async def run_hold_expiry(sessions: Sessions) -> HoldExpiryOut:
    expired = await handlers.expire_holds(sessions)
    await handlers.refresh_metrics(sessions)
    return HoldExpiryOut(expired=[r.id for r in expired])


# The audit trail of this service's changes, for admins: `GET /v1/audit`.
audit_trail = trail_router(store.audit_log, entities=("foundry", "capacity_change", "reservation"))
