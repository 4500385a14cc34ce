"""Quality's use cases (commands from the API, the expiry job) and reactions (events from other services).

Each use case is one transaction: the state change and the events it causes commit together or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import clock
from shared.events import Envelope
from shared.events.quality import CertificateKind, QualityStatus
from shared.http import Conflict, FieldError, NotFound, Unprocessable
from shared.idempotency import Command
from shared.logging import get_logger
from shared.projections import project_foundry
from shared.settings import Settings

from . import metrics, store
from .domain import (
    Candidate,
    Certificate,
    Evaluation,
    FoundryQuality,
    Item,
    ItemTerms,
    LabReport,
    Lot,
    Notice,
    Parameter,
    Rejected,
    SamplingRule,
    Specification,
    StateConflict,
    StatusRule,
    Verdict,
    create_item,
    decide_lot,
    default_specification,
    expiry_notices,
    grant_certificate,
    initial_quality,
    judge_eligibility,
    override_status,
    publish_version,
    published,
    read_samples,
    reassess,
    register_lot,
    release_override,
    retire_item,
    revise_specification,
    revoke_certificate,
    unknown_item,
)

log = get_logger(__name__)

Sessions = async_sessionmaker[AsyncSession]


def status_rule(settings: Settings) -> StatusRule:
    return StatusRule(
        window=settings.quality_status_window,
        prior_weight=settings.quality_status_prior_weight,
        prior_pass_rate=settings.quality_status_prior_pass_rate,
        good_at=settings.quality_status_good_at,
        suspend_below=settings.quality_status_suspend_below,
    )


def _invalid(exc: Rejected, prefix: str = "body") -> Unprocessable:
    return Unprocessable(str(exc), errors=[FieldError(field=f"{prefix}.{v.field}", message=v.message) for v in exc.violations])


def _unknown_foundry(code: str) -> Unprocessable:
    message = f"unknown foundry {code}: not in capacity's register as quality knows it"
    return Unprocessable(message, errors=[FieldError(field="body.foundry_code", message=message)])


# --- reactions ----------------------------------------------------------------------------------------------


async def on_foundry_changed(session: AsyncSession, envelope: Envelope[Any]) -> None:
    await project_foundry(session, store.foundry_projection, envelope, store.audit_log)


# --- the item catalogue -----------------------------------------------------------------------------------------


def _unknown_item(item_code: str, catalogue: Mapping[str, Item], field: str = "body.item_code") -> Unprocessable:
    message = unknown_item(item_code, catalogue)
    return Unprocessable(message, errors=[FieldError(field=field, message=message)])


async def announce_items(sessions: Sessions) -> list[Item]:
    """Publishes once the item versions a migration wrote, so a fresh platform's orders and capacity learn the
    catalogue; a replica starting at the same time finds them announced already."""
    async with sessions.begin() as session:
        announced = await store.take_unannounced_items(session)
        for item in announced:
            await store.publish(session, published(item))
    if announced:
        log.info("item versions announced", items=len(announced))
    return announced


async def add_item(sessions: Sessions, code: str, terms: ItemTerms, command: Command | None = None) -> Item:
    """Version 1 of a new item, with its first specification. Another replica creating the same code at the same
    moment fails on the key of (code, version)."""
    now = clock.now()
    try:
        async with sessions.begin() as session:
            if command is not None:
                if await command.recall(store.idempotency_keys, session) is not None:
                    created = await store.get_item(session, code)
                    assert created is not None
                    return created  # created by the first request with this key
                await command.remember(store.idempotency_keys, session, code, now)  # undone on refusal
            try:
                item, event = create_item(await store.get_item(session, code), code, terms, now)
            except Rejected as exc:
                raise _invalid(exc) from exc
            except StateConflict as exc:
                raise Conflict(str(exc)) from exc
            await store.add_item(session, item, before=None)
            await store.publish(session, event)
            if await store.get_specification(session, code) is None:
                await store.add_specification(session, default_specification(code, now, item.terms.sampling))
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"item {code} was created by a concurrent request") from exc
    return item


async def change_item(sessions: Sessions, code: str, terms: ItemTerms | None, command: Command | None = None) -> Item:
    """The next version of an item: `terms`, or the same terms retired when None."""
    now = clock.now()
    try:
        async with sessions.begin() as session:
            current = await store.get_item(session, code)
            if current is None:
                raise NotFound(unknown_item(code, await store.catalogue(session)))
            if command is not None:
                if await command.recall(store.idempotency_keys, session) is not None:
                    return current  # published by the first request with this key
                await command.remember(store.idempotency_keys, session, code, now)  # undone on refusal
            try:
                item, event = publish_version(current, terms, now) if terms is not None else retire_item(current, now)
            except Rejected as exc:
                raise _invalid(exc) from exc
            except StateConflict as exc:
                raise Conflict(str(exc)) from exc
            await store.add_item(session, item, before=current)
            await store.publish(session, event)
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"another version of {code} was published at the same moment; read it and retry") from exc
    return item


# --- specifications ---------------------------------------------------------------------------------------


async def ensure_default_specifications(sessions: Sessions) -> list[str]:
    """Version 1 of every item that has no specification yet: the domain's defaults."""
    created = []
    async with sessions() as session:
        items = await store.catalogue(session)
    for item in items.values():
        try:
            async with sessions.begin() as session:
                if await store.get_specification(session, item.code) is None:
                    await store.add_specification(session, default_specification(item.code, clock.now(), item.terms.sampling))
                    created.append(item.code)
        except sa.exc.IntegrityError:
            pass  # another replica wrote it first
    return created


async def _specification_in_force(session: AsyncSession, item: Item) -> Specification:
    spec = await store.get_specification(session, item.code)
    if spec is None:
        spec = default_specification(item.code, clock.now(), item.terms.sampling)
        await store.add_specification(session, spec)
    return spec


async def revise(
    sessions: Sessions, item_code: str, parameters: Sequence[Parameter], sampling: SamplingRule, note: str
) -> Specification:
    try:
        async with sessions.begin() as session:
            item = await store.get_item(session, item_code)
            if item is None:
                raise NotFound(unknown_item(item_code, await store.catalogue(session)))
            current = await _specification_in_force(session, item)
            try:
                spec = revise_specification(current, item_code, parameters, sampling, note, clock.now())
            except Rejected as exc:
                raise _invalid(exc) from exc
            await store.add_specification(session, spec)
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"another revision of {item_code}'s specification was saved at the same moment; retry") from exc
    return spec


# --- certificates --------------------------------------------------------------------------------------------


async def grant(
    sessions: Sessions,
    settings: Settings,
    *,
    foundry_code: str,
    kind: CertificateKind,
    number: str,
    issuer: str,
    valid_from: date,
    valid_until: date,
    tkdn_percent: float | None,
    certified_workers: int | None,
    items: Sequence[str],
) -> Certificate:
    now, today = clock.now(), clock.today()
    try:
        async with sessions.begin() as session:
            if await store.get_foundry(session, foundry_code) is None:
                raise _unknown_foundry(foundry_code)
            try:
                certificate, granted = grant_certificate(
                    f"cert_{uuid.uuid4().hex[:20]}",
                    foundry_code,
                    kind,
                    number,
                    issuer,
                    valid_from,
                    valid_until,
                    now,
                    tkdn_percent=tkdn_percent,
                    certified_workers=certified_workers,
                    items=items,
                    catalogue=await store.catalogue(session),
                )
            except Rejected as exc:
                raise _invalid(exc) from exc
            existing = await store.find_certificate(session, certificate.kind, certificate.issuer, certificate.number)
            if existing is not None:
                raise Conflict(
                    f"{issuer} {kind.value} certificate {number} is already recorded as {existing.id} ({existing.foundry_code})"
                )
            await store.add_certificate(session, certificate)
            await store.publish(session, granted)
            # A certificate recorded close to or after its end gets its notice now, not at the job's next run.
            for notice, event in expiry_notices(certificate, set(), today, settings.quality_expiry_warning_days):
                await store.add_notice(session, certificate.id, notice, today, now)
                await store.publish(session, event)
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"{issuer} {kind.value} certificate {number} was recorded by a concurrent request") from exc
    await refresh_metrics(sessions, settings)
    return certificate


async def revoke(sessions: Sessions, settings: Settings, certificate_id: str, reason: str) -> Certificate:
    async with sessions.begin() as session:
        # Locked: two replicas revoking it at once would both find it valid and announce the revocation twice.
        certificate = await store.get_certificate(session, certificate_id, for_update=True)
        if certificate is None:
            raise NotFound(f"no certificate {certificate_id}")
        try:
            revoked, event = revoke_certificate(certificate, reason, clock.now())
        except Rejected as exc:
            raise _invalid(exc) from exc
        except StateConflict as exc:
            raise Conflict(str(exc)) from exc
        await store.save_revocation(session, revoked)
        await store.publish(session, event)
    await refresh_metrics(sessions, settings)
    return revoked


@dataclass
class ExpiryReport:
    on: date
    expiring: list[str] = field(default_factory=list)  # certificate ids warned now
    expired: list[str] = field(default_factory=list)


async def check_certificate_expiry(sessions: Sessions, settings: Settings) -> ExpiryReport:
    """The clock-driven job: gives each certificate its expiring and expired notice once, ever.

    The notice row and the event's outbox row commit together, and a notice given once is never given again:
    a restart, a second run the same day or a second replica publishes nothing twice.
    """
    today, now = clock.today(), clock.now()
    warning_days = settings.quality_expiry_warning_days
    report = ExpiryReport(today)
    async with sessions.begin() as session:
        for certificate, given in await store.certificates_due_notice(session, today + timedelta(days=warning_days)):
            for notice, event in expiry_notices(certificate, given, today, warning_days):
                try:
                    async with session.begin_nested():
                        await store.add_notice(session, certificate.id, notice, today, now)
                        await store.publish(session, event)
                except sa.exc.IntegrityError:
                    continue  # another replica gave this notice a moment ago
                (report.expiring if notice is Notice.EXPIRING else report.expired).append(certificate.id)
    if report.expiring or report.expired:
        log.info(
            "certificate expiry notices given", on=today.isoformat(), expiring=len(report.expiring), expired=len(report.expired)
        )
    return report


# --- lots and results --------------------------------------------------------------------------------------------


async def register(
    sessions: Sessions,
    *,
    lot_code: str | None,
    foundry_code: str,
    item_code: str,
    quantity: int,
    order_id: str | None,
    allocation_id: str | None,
) -> Lot:
    now = clock.now()
    code = lot_code or f"{foundry_code}-{clock.today():%y%m%d}-{uuid.uuid4().hex[:6].upper()}"
    try:
        async with sessions.begin() as session:
            foundry = await store.get_foundry(session, foundry_code)
            if foundry is None:
                raise _unknown_foundry(foundry_code)
            if await store.get_lot(session, code) is not None:
                raise Conflict(f"lot {code} is already registered")
            catalogue = await store.catalogue(session)
            item = catalogue.get(item_code)
            spec = await _specification_in_force(session, item) if item is not None else None
            try:
                lot, registered = register_lot(
                    code,
                    foundry_code,
                    foundry.product_families,
                    item_code,
                    quantity,
                    order_id,
                    allocation_id,
                    spec,
                    now,
                    catalogue,
                )
            except Rejected as exc:
                raise _invalid(exc) from exc
            await store.add_lot(session, lot)
            await store.publish(session, registered)
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"lot {code} was registered by a concurrent request") from exc
    return lot


@dataclass(frozen=True)
class Decision:
    lot: Lot
    evaluation: Evaluation
    quality: FoundryQuality


async def record_result(
    sessions: Sessions,
    settings: Settings,
    lot_code: str,
    *,
    report_number: str,
    laboratory: str,
    tested_on: date | None,
    samples: Sequence[Mapping[str, Any]],
    command: Command | None = None,
) -> Decision | None:
    """Judges the lot against its specification version and sampling plan, publishes lot_passed or lot_failed,
    and moves the foundry's quality status with it. None: an earlier request with the same key recorded it."""
    now = clock.now()
    rule = status_rule(settings)
    try:
        async with sessions.begin() as session:
            lot = await store.get_lot(session, lot_code, for_update=True)
            if lot is None:
                raise NotFound(f"no lot {lot_code}")
            if command is not None and await command.recall(store.idempotency_keys, session) is not None:
                return None
            if lot.decided_at is not None:
                raise Conflict(f"lot {lot_code} was already decided: {lot.status.value}; a result is recorded once")
            spec = await store.get_specification(session, lot.item_code, lot.spec_version)
            assert spec is not None, "a lot's specification version is kept for good"
            try:
                measured = read_samples(spec, lot.plan, samples)
                report = LabReport(report_number, laboratory, tested_on or clock.today(), measured)
                decided, evaluation, event = decide_lot(lot, spec, report, now)
            except Rejected as exc:
                raise _invalid(exc) from exc
            earlier = await store.report_used(session, report.laboratory.strip(), report.report_number.strip())
            if earlier is not None:
                raise Conflict(f"{laboratory} report {report_number} was already recorded for lot {earlier}")
            valid_then = [
                c
                for c in await store.list_certificates(session, foundry_code=lot.foundry_code)
                if c.is_valid_on(report.tested_on)
            ]
            await store.save_decision(session, decided)
            await store.add_result(
                session,
                {
                    "lot_code": lot.lot_code,
                    "foundry_code": lot.foundry_code,
                    "report_number": report.report_number.strip(),
                    "laboratory": report.laboratory.strip(),
                    "tested_on": report.tested_on,
                    "outcome": decided.status.value,
                    "samples": [dict(s) for s in measured],
                    "nonconforming": evaluation.nonconforming,
                    "findings": [
                        {"parameter": f.parameter, "rule": f.rule, "samples": list(f.samples), "observed": list(f.observed)}
                        for f in evaluation.findings
                    ],
                    "certificates": [store.certificate_json(c) for c in valid_then],
                    "recorded_at": now,
                },
            )
            await store.publish(session, event)
            quality = await _reassess(session, lot.foundry_code, rule)
            if command is not None:
                await command.remember(store.idempotency_keys, session, lot.lot_code, now)
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"a result for lot {lot_code} (or report {report_number}) was recorded by a concurrent request") from exc
    metrics.lot_decided(decided.item_code, decided.status)
    await refresh_metrics(sessions, settings)
    return Decision(decided, evaluation, quality)


async def _reassess(session: AsyncSession, foundry_code: str, rule: StatusRule) -> FoundryQuality:
    quality = await store.lock_quality(session, initial_quality(foundry_code, rule))
    outcomes = await store.recent_outcomes(session, foundry_code, rule.window)
    quality, changed = reassess(quality, outcomes, rule, clock.now())
    await store.save_quality(session, quality)
    if changed is not None:
        await _announce(session, changed)
    return quality


async def _announce(session: AsyncSession, changed: Any) -> None:
    await store.publish(session, changed)
    await store.add_status_change(
        session,
        {
            "foundry_code": changed.foundry_code,
            "status": changed.status.value,
            "previous_status": changed.previous_status.value,
            "pass_rate": changed.pass_rate,
            "overridden": changed.overridden,
            "reason": changed.reason,
            "changed_at": changed.changed_at,
        },
    )


# --- quality status ------------------------------------------------------------------------------------------------


async def quality_of(sessions: Sessions, settings: Settings, foundry_code: str) -> FoundryQuality:
    async with sessions() as session:
        if await store.get_foundry(session, foundry_code) is None:
            raise NotFound(f"no foundry {foundry_code} in capacity's register as quality knows it")
        quality = await store.get_quality(session, foundry_code)
    return quality or initial_quality(foundry_code, status_rule(settings))


async def all_quality(sessions: Sessions, settings: Settings) -> list[FoundryQuality]:
    rule = status_rule(settings)
    async with sessions() as session:
        known = await store.foundries(session)
        recorded = await store.list_quality(session)
    return [recorded.get(f.code) or initial_quality(f.code, rule) for f in known]


async def override(
    sessions: Sessions, settings: Settings, foundry_code: str, status: QualityStatus, reason: str, command: Command | None = None
) -> FoundryQuality:
    rule = status_rule(settings)
    async with sessions.begin() as session:
        if await store.get_foundry(session, foundry_code) is None:
            raise NotFound(f"no foundry {foundry_code} in capacity's register as quality knows it")
        quality = await store.lock_quality(session, initial_quality(foundry_code, rule))
        if command is not None:
            if await command.recall(store.idempotency_keys, session) is not None:
                return quality  # pinned by the first request with this key
            await command.remember(store.idempotency_keys, session, foundry_code, clock.now())  # undone on refusal
        try:
            quality, changed = override_status(quality, status, reason, clock.now())
        except Rejected as exc:
            raise _invalid(exc) from exc
        await store.save_quality(session, quality)
        if changed is not None:
            await _announce(session, changed)
    await refresh_metrics(sessions, settings)
    return quality


async def release(
    sessions: Sessions, settings: Settings, foundry_code: str, reason: str, command: Command | None = None
) -> FoundryQuality:
    rule = status_rule(settings)
    async with sessions.begin() as session:
        if await store.get_foundry(session, foundry_code) is None:
            raise NotFound(f"no foundry {foundry_code} in capacity's register as quality knows it")
        quality = await store.lock_quality(session, initial_quality(foundry_code, rule))
        if command is not None:
            if await command.recall(store.idempotency_keys, session) is not None:
                return quality  # released by the first request with this key
            await command.remember(store.idempotency_keys, session, foundry_code, clock.now())  # undone on refusal
        try:
            quality, changed = release_override(quality, reason, rule, clock.now())
        except StateConflict as exc:
            raise Conflict(str(exc)) from exc
        await store.save_quality(session, quality)
        if changed is not None:
            await _announce(session, changed)
    await refresh_metrics(sessions, settings)
    return quality


# --- eligibility and traceability -------------------------------------------------------------------------------------


async def eligibility(
    sessions: Sessions,
    settings: Settings,
    item_code: str,
    on: date,
    required: Sequence[CertificateKind] | None,
    min_tkdn_percent: float | None,
) -> tuple[list[Verdict], tuple[CertificateKind, ...], float]:
    default_status = initial_quality("", status_rule(settings)).status
    async with sessions() as session:
        catalogue = await store.catalogue(session)
        item = catalogue.get(item_code)
        if item is None:
            raise _unknown_item(item_code, catalogue, "query.item")
        known = await store.foundries(session)
        held = await store.certificates_by_foundry(session)
        statuses = await store.statuses_on(session, on)
    candidates = [
        Candidate(f.code, f.name, tuple(f.product_families), tuple(held.get(f.code, ())), statuses.get(f.code, default_status))
        for f in known
    ]
    # The item's own requirements unless the asker names others.
    kinds = tuple(dict.fromkeys(required)) if required else item.terms.required_certificates
    minimum = (item.terms.min_tkdn_percent or 0.0) if min_tkdn_percent is None else min_tkdn_percent
    return judge_eligibility(item, on, candidates, kinds, minimum), kinds, minimum


@dataclass(frozen=True)
class Trace:
    lot: Lot
    foundry: Any
    specification: Specification
    result: Any


async def trace(sessions: Sessions, lot_code: str) -> Trace:
    async with sessions() as session:
        lot = await store.get_lot(session, lot_code)
        if lot is None:
            raise NotFound(f"no lot {lot_code}")
        spec = await store.get_specification(session, lot.item_code, lot.spec_version)
        assert spec is not None
        foundry = await store.get_foundry(session, lot.foundry_code)
        result = await store.get_result(session, lot_code)
    return Trace(lot, foundry, spec, result)


# --- metrics ---------------------------------------------------------------------------------------------------------


async def refresh_metrics(sessions: Sessions, settings: Settings) -> None:
    default_status = initial_quality("", status_rule(settings)).status
    async with sessions() as session:
        await metrics.refresh(session, clock.now(), clock.today(), settings.quality_expiry_warning_days, default_status)
