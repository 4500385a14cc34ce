"""Quality's tables and queries, and `publish()` into its outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.db import BigId, UtcDateTime, backbone_tables
from shared.events import EventData
from shared.events.quality import CertificateKind, QualityStatus
from shared.idempotency import IdempotencyKeys
from shared.outbox import stage
from shared.projections import foundry_projection_table
from shared.weeks import local_midnight

from .domain import (
    Certificate,
    FoundryQuality,
    Item,
    ItemTerms,
    Lot,
    LotStatus,
    Notice,
    Parameter,
    RuleKind,
    SamplingRule,
    Specification,
)
from .sampling import SamplingPlan

metadata = sa.MetaData()
backbone = backbone_tables(metadata)
# Who changed what, when, from what to what: written in the transaction of each change.
audit_log = audit.audit_table(metadata)
foundry_projection = foundry_projection_table(metadata)

# Every version of every item of the catalogue. `announced` is false only for versions a migration wrote: the
# service publishes those once when it starts (a version made through the API is published as it is written).
items = sa.Table(
    "items",
    metadata,
    sa.Column("code", sa.String(20), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name_id", sa.String(200), nullable=False),
    sa.Column("name_en", sa.String(200), nullable=False),
    sa.Column("product_family", sa.String(40), nullable=False),
    sa.Column("unit", sa.String(10), nullable=False),
    sa.Column("min_lot", sa.Integer, nullable=False),
    sa.Column("required_certificates", sa.JSON, nullable=False),
    sa.Column("min_tkdn_percent", sa.Float, nullable=True),
    sa.Column("inspection_level", sa.String(4), nullable=False),
    sa.Column("aql", sa.Float, nullable=False),
    sa.Column("retired", sa.Boolean, nullable=False),
    sa.Column("published_at", UtcDateTime, nullable=False),
    sa.Column("announced", sa.Boolean, nullable=False),
)

# Every version of every item's specification; a lot points at the version it was registered under.
specifications = sa.Table(
    "specifications",
    metadata,
    sa.Column("item_code", sa.String(20), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("inspection_level", sa.String(4), nullable=False),
    sa.Column("aql", sa.Float, nullable=False),
    sa.Column("note", sa.String(500), nullable=False),
    sa.Column("effective_from", UtcDateTime, nullable=False),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("foundry_code", sa.String(20), nullable=False, index=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("number", sa.String(100), nullable=False),
    sa.Column("issuer", sa.String(200), nullable=False),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_until", sa.Date, nullable=False, index=True),
    sa.Column("tkdn_percent", sa.Float, nullable=True),
    sa.Column("certified_workers", sa.Integer, nullable=True),
    sa.Column("items", sa.JSON, nullable=False),
    sa.Column("granted_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("revoke_reason", sa.String(500), nullable=True),
    sa.UniqueConstraint("kind", "issuer", "number", name="uq_certificates_kind_issuer_number"),
)

# The expiry notices already given: written with the event's outbox row, so each is published exactly once.
certificate_notices = sa.Table(
    "certificate_notices",
    metadata,
    sa.Column("certificate_id", sa.String(40), sa.ForeignKey("certificates.id"), primary_key=True),
    sa.Column("notice", sa.String(10), primary_key=True),
    sa.Column("given_on", sa.Date, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

lots = sa.Table(
    "lots",
    metadata,
    sa.Column("lot_code", sa.String(40), primary_key=True),
    sa.Column("foundry_code", sa.String(20), nullable=False, index=True),
    sa.Column("item_code", sa.String(20), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("order_id", sa.String(64), nullable=True, index=True),
    sa.Column("allocation_id", sa.String(100), nullable=True),
    sa.Column("spec_version", sa.Integer, nullable=False),
    sa.Column("inspection_level", sa.String(4), nullable=False),
    sa.Column("aql", sa.Float, nullable=False),
    sa.Column("code_letter", sa.String(1), nullable=False),
    sa.Column("plan_letter", sa.String(1), nullable=False),
    sa.Column("sample_size", sa.Integer, nullable=False),
    sa.Column("acceptance_number", sa.Integer, nullable=False),
    sa.Column("rejection_number", sa.Integer, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("registered_at", UtcDateTime, nullable=False),
    sa.Column("decided_at", UtcDateTime, nullable=True),
    sa.ForeignKeyConstraint(["item_code", "spec_version"], ["specifications.item_code", "specifications.version"]),
)

# One test report per lot; `seq` orders decisions even when the clock stands still.
lot_results = sa.Table(
    "lot_results",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("lot_code", sa.String(40), sa.ForeignKey("lots.lot_code"), nullable=False, unique=True),
    sa.Column("foundry_code", sa.String(20), nullable=False, index=True),
    sa.Column("report_number", sa.String(100), nullable=False),
    sa.Column("laboratory", sa.String(200), nullable=False),
    sa.Column("tested_on", sa.Date, nullable=False),
    sa.Column("outcome", sa.String(12), nullable=False),
    sa.Column("samples", sa.JSON, nullable=False),
    sa.Column("nonconforming", sa.Integer, nullable=False),
    sa.Column("findings", sa.JSON, nullable=False),
    sa.Column("certificates", sa.JSON, nullable=False),  # the foundry's certificates valid on the test day
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("laboratory", "report_number", name="uq_lot_results_laboratory_report"),
)

foundry_quality = sa.Table(
    "foundry_quality",
    metadata,
    sa.Column("foundry_code", sa.String(20), primary_key=True),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("computed_status", sa.String(12), nullable=False),
    sa.Column("pass_rate", sa.Float, nullable=False),
    sa.Column("lots_considered", sa.Integer, nullable=False),
    sa.Column("lots_passed", sa.Integer, nullable=False),
    sa.Column("overridden", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(1000), nullable=False),
    sa.Column("changed_at", UtcDateTime, nullable=True),
)

# Every status change, so eligibility on a past date sees the status then in force.
quality_status_changes = sa.Table(
    "quality_status_changes",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("foundry_code", sa.String(20), nullable=False, index=True),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("previous_status", sa.String(12), nullable=False),
    sa.Column("pass_rate", sa.Float, nullable=False),
    sa.Column("overridden", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(1000), nullable=False),
    sa.Column("changed_at", UtcDateTime, nullable=False),
)
# The staff's results and overrides sent with an Idempotency-Key: a double click or a retry acts once.
idempotency_keys = IdempotencyKeys(metadata)


async def publish(session: AsyncSession, *events: EventData) -> None:
    await stage(session, backbone.outbox, *events)


# --- foundries (projection) ---------------------------------------------------------------------------------


async def get_foundry(session: AsyncSession, code: str) -> Any:
    return (await session.execute(sa.select(foundry_projection).where(foundry_projection.c.code == code))).first()


async def foundries(session: AsyncSession) -> list[Any]:
    return list((await session.execute(sa.select(foundry_projection).order_by(foundry_projection.c.code))).all())


# --- specifications ---------------------------------------------------------------------------------------


def _to_item(row: Any) -> Item:
    terms = ItemTerms(
        name_id=row.name_id,
        name_en=row.name_en,
        product_family=row.product_family,
        unit=row.unit,
        min_lot=row.min_lot,
        required_certificates=tuple(CertificateKind(k) for k in row.required_certificates),
        min_tkdn_percent=row.min_tkdn_percent,
        sampling=SamplingRule(row.inspection_level, row.aql),
    )
    return Item(row.code, row.version, terms, row.published_at, retired=row.retired)


async def add_item(session: AsyncSession, item: Item, *, before: Item | None) -> None:
    """A new version (`before`: the one it follows), audited; the (code, version) key makes a second writer of the
    same version fail."""
    terms = item.terms
    await session.execute(
        sa.insert(items).values(
            code=item.code,
            version=item.version,
            name_id=terms.name_id,
            name_en=terms.name_en,
            product_family=terms.product_family,
            unit=terms.unit,
            min_lot=terms.min_lot,
            required_certificates=[k.value for k in terms.required_certificates],
            min_tkdn_percent=terms.min_tkdn_percent,
            inspection_level=terms.sampling.inspection_level,
            aql=terms.sampling.aql,
            retired=item.retired,
            published_at=item.published_at,
            announced=True,
        )
    )
    await audit.record_change(
        session,
        audit_log,
        entity_type="item",
        entity_id=item.code,
        before=asdict(before) if before is not None else None,
        after=asdict(item),
        action="item.retired" if item.retired else ("item.created" if before is None else "item.versioned"),
    )


def _in_force() -> sa.Select[Any]:
    newest = sa.select(items.c.code, sa.func.max(items.c.version).label("version")).group_by(items.c.code).subquery()
    return sa.select(items).join(newest, sa.and_(items.c.code == newest.c.code, items.c.version == newest.c.version))


async def get_item(session: AsyncSession, code: str) -> Item | None:
    """The item's version in force (retired or not)."""
    row = (await session.execute(_in_force().where(items.c.code == code))).first()
    return _to_item(row) if row else None


async def catalogue(session: AsyncSession, *, retired: bool = True) -> dict[str, Item]:
    """Every item's version in force, by code; without retired items when `retired` is false."""
    query = _in_force().order_by(items.c.code)
    if not retired:
        query = query.where(items.c.retired.is_(False))
    return {row.code: _to_item(row) for row in await session.execute(query)}


async def item_versions(session: AsyncSession, code: str) -> list[Item]:
    rows = await session.execute(sa.select(items).where(items.c.code == code).order_by(items.c.version))
    return [_to_item(row) for row in rows]


async def take_unannounced_items(session: AsyncSession) -> list[Item]:
    """Marks the versions nobody published yet as announced and returns them. One UPDATE: a replica running it at
    the same moment waits for this transaction's row locks and then finds them announced, so each goes out once."""
    rows = await session.execute(sa.update(items).where(items.c.announced.is_(False)).values(announced=True).returning(*items.c))
    return sorted((_to_item(row) for row in rows), key=lambda item: (item.code, item.version))


def _parameter_json(p: Parameter) -> dict[str, Any]:
    return {
        "code": p.code,
        "name": p.name,
        "unit": p.unit,
        "rule": p.rule.value,
        "minimum": p.minimum,
        "maximum": p.maximum,
        "target": p.target,
        "tolerance": p.tolerance,
        "possible_min": p.possible_min,
        "possible_max": p.possible_max,
    }


def _to_specification(row: Any) -> Specification:
    return Specification(
        item_code=row.item_code,
        version=row.version,
        parameters=tuple(Parameter(**{**p, "rule": RuleKind(p["rule"])}) for p in row.parameters),
        sampling=SamplingRule(row.inspection_level, row.aql),
        note=row.note,
        effective_from=row.effective_from,
    )


async def add_specification(session: AsyncSession, spec: Specification) -> None:
    await session.execute(
        sa.insert(specifications).values(
            item_code=spec.item_code,
            version=spec.version,
            parameters=[_parameter_json(p) for p in spec.parameters],
            inspection_level=spec.sampling.inspection_level,
            aql=spec.sampling.aql,
            note=spec.note,
            effective_from=spec.effective_from,
        )
    )
    await audit.record_change(
        session,
        audit_log,
        entity_type="specification",
        entity_id=f"{spec.item_code}/v{spec.version}",
        before=None,
        after=asdict(spec),
    )


async def get_specification(session: AsyncSession, item_code: str, version: int | None = None) -> Specification | None:
    query = sa.select(specifications).where(specifications.c.item_code == item_code)
    if version is None:
        query = query.order_by(specifications.c.version.desc()).limit(1)
    else:
        query = query.where(specifications.c.version == version)
    row = (await session.execute(query)).first()
    return _to_specification(row) if row else None


async def specification_versions(session: AsyncSession, item_code: str) -> list[Specification]:
    rows = await session.execute(
        sa.select(specifications).where(specifications.c.item_code == item_code).order_by(specifications.c.version)
    )
    return [_to_specification(r) for r in rows]


# --- certificates ---------------------------------------------------------------------------------------------


def _to_certificate(row: Any) -> Certificate:
    return Certificate(
        id=row.id,
        foundry_code=row.foundry_code,
        kind=CertificateKind(row.kind),
        number=row.number,
        issuer=row.issuer,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        tkdn_percent=row.tkdn_percent,
        certified_workers=row.certified_workers,
        items=tuple(row.items),
        granted_at=row.granted_at,
        revoked_at=row.revoked_at,
        revoke_reason=row.revoke_reason,
    )


def certificate_json(c: Certificate) -> dict[str, Any]:
    return {
        "id": c.id,
        "foundry_code": c.foundry_code,
        "kind": c.kind.value,
        "number": c.number,
        "issuer": c.issuer,
        "valid_from": c.valid_from.isoformat(),
        "valid_until": c.valid_until.isoformat(),
        "tkdn_percent": c.tkdn_percent,
        "certified_workers": c.certified_workers,
        "items": list(c.items),
    }


async def add_certificate(session: AsyncSession, c: Certificate) -> None:
    await session.execute(
        sa.insert(certificates).values(
            id=c.id,
            foundry_code=c.foundry_code,
            kind=c.kind.value,
            number=c.number,
            issuer=c.issuer,
            valid_from=c.valid_from,
            valid_until=c.valid_until,
            tkdn_percent=c.tkdn_percent,
            certified_workers=c.certified_workers,
            items=list(c.items),
            granted_at=c.granted_at,
        )
    )
    await audit.record_change(session, audit_log, entity_type="certificate", entity_id=c.id, before=None, after=asdict(c))


async def save_revocation(session: AsyncSession, c: Certificate) -> None:
    before = (await audit.rows_by_key(session, certificates, certificates.c.id, [c.id])).get(c.id)
    values = {"revoked_at": c.revoked_at, "revoke_reason": c.revoke_reason}
    await session.execute(sa.update(certificates).where(certificates.c.id == c.id).values(**values))
    await audit.record_change(session, audit_log, entity_type="certificate", entity_id=c.id, before=before, after=values)


async def get_certificate(session: AsyncSession, certificate_id: str, *, for_update: bool = False) -> Certificate | None:
    query = sa.select(certificates).where(certificates.c.id == certificate_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return _to_certificate(row) if row else None


async def find_certificate(session: AsyncSession, kind: CertificateKind, issuer: str, number: str) -> Certificate | None:
    row = (
        await session.execute(
            sa.select(certificates).where(
                certificates.c.kind == kind.value, certificates.c.issuer == issuer, certificates.c.number == number
            )
        )
    ).first()
    return _to_certificate(row) if row else None


async def list_certificates(
    session: AsyncSession, *, foundry_code: str | None = None, kind: CertificateKind | None = None
) -> list[Certificate]:
    query = sa.select(certificates)
    if foundry_code:
        query = query.where(certificates.c.foundry_code == foundry_code)
    if kind:
        query = query.where(certificates.c.kind == kind.value)
    rows = await session.execute(
        query.order_by(certificates.c.foundry_code, certificates.c.kind, certificates.c.valid_until, certificates.c.id)
    )
    return [_to_certificate(r) for r in rows]


async def certificates_by_foundry(session: AsyncSession) -> dict[str, list[Certificate]]:
    out: dict[str, list[Certificate]] = {}
    for c in await list_certificates(session):
        out.setdefault(c.foundry_code, []).append(c)
    return out


async def certificates_due_notice(session: AsyncSession, warn_until: date) -> list[tuple[Certificate, set[Notice]]]:
    """Unrevoked certificates that end by `warn_until` and have not had their expiry notice, with the notices
    they had. Certificates that had it are done for good, so the query stays small as history grows."""
    expired_given = sa.exists().where(
        certificate_notices.c.certificate_id == certificates.c.id, certificate_notices.c.notice == Notice.EXPIRED.value
    )
    rows = (
        await session.execute(
            sa.select(certificates)
            .where(certificates.c.revoked_at.is_(None), certificates.c.valid_until <= warn_until, ~expired_given)
            .order_by(certificates.c.valid_until, certificates.c.id)
        )
    ).all()
    due = [_to_certificate(r) for r in rows]
    given: dict[str, set[Notice]] = {c.id: set() for c in due}
    if due:
        notices = await session.execute(
            sa.select(certificate_notices.c.certificate_id, certificate_notices.c.notice).where(
                certificate_notices.c.certificate_id.in_(list(given))
            )
        )
        for certificate_id, notice in notices:
            given[certificate_id].add(Notice(notice))
    return [(c, given[c.id]) for c in due]


async def add_notice(session: AsyncSession, certificate_id: str, notice: Notice, given_on: date, now: datetime) -> None:
    await session.execute(
        sa.insert(certificate_notices).values(
            certificate_id=certificate_id, notice=notice.value, given_on=given_on, created_at=now
        )
    )


# --- lots and results -------------------------------------------------------------------------------------------


def _to_lot(row: Any) -> Lot:
    plan = SamplingPlan(
        lot_size=row.quantity,
        inspection_level=row.inspection_level,
        aql=row.aql,
        code_letter=row.code_letter,
        plan_letter=row.plan_letter,
        sample_size=row.sample_size,
        acceptance_number=row.acceptance_number,
        rejection_number=row.rejection_number,
    )
    return Lot(
        lot_code=row.lot_code,
        foundry_code=row.foundry_code,
        item_code=row.item_code,
        quantity=row.quantity,
        order_id=row.order_id,
        allocation_id=row.allocation_id,
        spec_version=row.spec_version,
        plan=plan,
        status=LotStatus(row.status),
        registered_at=row.registered_at,
        decided_at=row.decided_at,
    )


async def add_lot(session: AsyncSession, lot: Lot) -> None:
    await session.execute(
        sa.insert(lots).values(
            lot_code=lot.lot_code,
            foundry_code=lot.foundry_code,
            item_code=lot.item_code,
            quantity=lot.quantity,
            order_id=lot.order_id,
            allocation_id=lot.allocation_id,
            spec_version=lot.spec_version,
            inspection_level=lot.plan.inspection_level,
            aql=lot.plan.aql,
            code_letter=lot.plan.code_letter,
            plan_letter=lot.plan.plan_letter,
            sample_size=lot.plan.sample_size,
            acceptance_number=lot.plan.acceptance_number,
            rejection_number=lot.plan.rejection_number,
            status=lot.status.value,
            registered_at=lot.registered_at,
        )
    )
    await audit.record_change(session, audit_log, entity_type="lot", entity_id=lot.lot_code, before=None, after=asdict(lot))


async def save_decision(session: AsyncSession, lot: Lot) -> None:
    before = (await audit.rows_by_key(session, lots, lots.c.lot_code, [lot.lot_code])).get(lot.lot_code)
    values = {"status": lot.status.value, "decided_at": lot.decided_at}
    await session.execute(sa.update(lots).where(lots.c.lot_code == lot.lot_code).values(**values))
    await audit.record_change(session, audit_log, entity_type="lot", entity_id=lot.lot_code, before=before, after=values)


async def get_lot(session: AsyncSession, lot_code: str, *, for_update: bool = False) -> Lot | None:
    query = sa.select(lots).where(lots.c.lot_code == lot_code)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return _to_lot(row) if row else None


async def list_lots(
    session: AsyncSession,
    *,
    foundry_code: str | None,
    item_code: str | None,
    status: str | None,
    order_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Lot], int]:
    conditions = []
    if foundry_code:
        conditions.append(lots.c.foundry_code == foundry_code)
    if item_code:
        conditions.append(lots.c.item_code == item_code)
    if status:
        conditions.append(lots.c.status == status)
    if order_id:
        conditions.append(lots.c.order_id == order_id)
    total = (await session.execute(sa.select(sa.func.count()).select_from(lots).where(*conditions))).scalar_one()
    rows = await session.execute(
        sa.select(lots).where(*conditions).order_by(lots.c.registered_at.desc(), lots.c.lot_code).limit(limit).offset(offset)
    )
    return [_to_lot(r) for r in rows], total


async def add_result(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(lot_results).values(**values))
    await audit.record_change(
        session, audit_log, entity_type="lot_result", entity_id=values["lot_code"], before=None, after=values
    )


async def get_result(session: AsyncSession, lot_code: str) -> Any:
    return (await session.execute(sa.select(lot_results).where(lot_results.c.lot_code == lot_code))).first()


async def results_of(session: AsyncSession, lot_codes: Sequence[str]) -> dict[str, Any]:
    if not lot_codes:
        return {}
    rows = await session.execute(sa.select(lot_results).where(lot_results.c.lot_code.in_(list(lot_codes))))
    return {r.lot_code: r for r in rows}


async def report_used(session: AsyncSession, laboratory: str, report_number: str) -> str | None:
    return (
        await session.execute(
            sa.select(lot_results.c.lot_code).where(
                lot_results.c.laboratory == laboratory, lot_results.c.report_number == report_number
            )
        )
    ).scalar()


async def recent_outcomes(session: AsyncSession, foundry_code: str, window: int) -> list[bool]:
    """The foundry's decided lots, newest first: True for passed."""
    rows = await session.execute(
        sa.select(lot_results.c.outcome)
        .where(lot_results.c.foundry_code == foundry_code)
        .order_by(lot_results.c.seq.desc())
        .limit(window)
    )
    return [outcome == LotStatus.PASSED.value for outcome in rows.scalars()]


# --- quality status -----------------------------------------------------------------------------------------------


def _to_quality(row: Any) -> FoundryQuality:
    return FoundryQuality(
        foundry_code=row.foundry_code,
        status=QualityStatus(row.status),
        computed_status=QualityStatus(row.computed_status),
        pass_rate=row.pass_rate,
        lots_considered=row.lots_considered,
        lots_passed=row.lots_passed,
        overridden=row.overridden,
        reason=row.reason,
        changed_at=row.changed_at,
    )


def _quality_values(q: FoundryQuality) -> dict[str, Any]:
    return {
        "foundry_code": q.foundry_code,
        "status": q.status.value,
        "computed_status": q.computed_status.value,
        "pass_rate": q.pass_rate,
        "lots_considered": q.lots_considered,
        "lots_passed": q.lots_passed,
        "overridden": q.overridden,
        "reason": q.reason,
        "changed_at": q.changed_at,
    }


async def get_quality(session: AsyncSession, foundry_code: str) -> FoundryQuality | None:
    row = (await session.execute(sa.select(foundry_quality).where(foundry_quality.c.foundry_code == foundry_code))).first()
    return _to_quality(row) if row else None


async def lock_quality(session: AsyncSession, initial: FoundryQuality) -> FoundryQuality:
    """The foundry's quality row, locked for this transaction (created first if missing), so two decisions
    for one foundry at once are applied one after the other instead of one overwriting the other."""
    query = sa.select(foundry_quality).where(foundry_quality.c.foundry_code == initial.foundry_code).with_for_update()
    row = (await session.execute(query)).first()
    if row is None:
        try:
            async with session.begin_nested():
                await session.execute(sa.insert(foundry_quality).values(**_quality_values(initial)))
        except sa.exc.IntegrityError:
            pass  # created by a concurrent transaction a moment ago
        row = (await session.execute(query)).first()
    return _to_quality(row)


async def save_quality(session: AsyncSession, q: FoundryQuality) -> None:
    code = q.foundry_code
    before = (await audit.rows_by_key(session, foundry_quality, foundry_quality.c.foundry_code, [code])).get(code)
    await session.execute(sa.update(foundry_quality).where(foundry_quality.c.foundry_code == code).values(**_quality_values(q)))
    await audit.record_change(
        session, audit_log, entity_type="foundry_quality", entity_id=code, before=before, after=_quality_values(q)
    )


async def list_quality(session: AsyncSession) -> dict[str, FoundryQuality]:
    return {r.foundry_code: _to_quality(r) for r in await session.execute(sa.select(foundry_quality))}


async def add_status_change(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(quality_status_changes).values(**values))


async def statuses_on(session: AsyncSession, day: date) -> dict[str, QualityStatus]:
    """Each foundry's status in force at the end of `day`, from its recorded changes."""
    latest = (
        sa.select(quality_status_changes.c.foundry_code, sa.func.max(quality_status_changes.c.seq).label("seq"))
        .where(quality_status_changes.c.changed_at < local_midnight(day + timedelta(days=1)))
        .group_by(quality_status_changes.c.foundry_code)
        .subquery()
    )
    rows = await session.execute(
        sa.select(quality_status_changes.c.foundry_code, quality_status_changes.c.status).join(
            latest, quality_status_changes.c.seq == latest.c.seq
        )
    )
    return {code: QualityStatus(status) for code, status in rows}


# --- figures for metrics ---------------------------------------------------------------------------------------


async def decided_lots_by_item(session: AsyncSession, since: datetime) -> dict[tuple[str, str], int]:
    rows = await session.execute(
        sa.select(lots.c.item_code, lots.c.status, sa.func.count())
        .where(lots.c.decided_at >= since)
        .group_by(lots.c.item_code, lots.c.status)
    )
    return {(item, status): n for item, status, n in rows}


async def expiring_by_kind(session: AsyncSession, today: date, until: date) -> dict[str, int]:
    rows = await session.execute(
        sa.select(certificates.c.kind, sa.func.count())
        .where(
            certificates.c.revoked_at.is_(None),
            certificates.c.valid_from <= today,
            certificates.c.valid_until >= today,
            certificates.c.valid_until <= until,
        )
        .group_by(certificates.c.kind)
    )
    return dict(rows.all())


async def status_counts(session: AsyncSession) -> tuple[int, dict[str, int]]:
    known = (await session.execute(sa.select(sa.func.count()).select_from(foundry_projection))).scalar_one()
    rows = await session.execute(sa.select(foundry_quality.c.status, sa.func.count()).group_by(foundry_quality.c.status))
    return known, dict(rows.all())
