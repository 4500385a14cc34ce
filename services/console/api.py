"""The console's HTTP surface: one route and one template per page, the fragments htmx refreshes when a live
event says something changed, the staff's actions, CSV exports, and the live stream (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from asgi_csrf import SCOPE_KEY as CSRF_SCOPE_KEY
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from shared import clock
from shared.auth import public
from shared.http import problem_responses
from shared.service import Runtime, ServiceRuntime

from . import charts, handlers
from .domain import (
    CONSOLE_ROLES,
    STAGES,
    ActionLedger,
    EventFeed,
    FeedItem,
    Person,
    Reference,
    UntilNextEvent,
    heat_rows,
    overall_rate,
    view_of,
)
from .domain import channels as channels_of
from .i18n import LOCALES, N_, Translator, pick_locale, template_globals
from .people import (
    CSRF_FIELD,
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    AnyRole,
    BuyersViewer,
    BuyersWriter,
    CapacityReporter,
    DashboardViewer,
    ItemsViewer,
    ItemsWriter,
    Language,
    MembersViewer,
    Operator,
    OrdersDecider,
    OrdersViewer,
    QualityOverrider,
    QualityRecorder,
    QualityViewer,
    ShipmentsManager,
    ShipmentsViewer,
    SignedIn,
    SignInNeeded,
    WhatIfAsker,
    authorization_of,
    clear_session_cookie,
    seconds_left,
    session_keys,
    set_session_cookie,
)
from .sentences import describe, link_of, plan_reason, quality_reason
from .store import Upstream, UpstreamProblem, metrics_text, readiness

router = APIRouter()
HERE = Path(__file__).parent
STATIC = HERE / "static"

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html", "svg"]),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.install_null_translations(newstyle=True)  # each render passes the person's own gettext


def _feed(runtime: ServiceRuntime) -> EventFeed:
    return runtime.state.setdefault("feed", EventFeed())


def _ledger(runtime: ServiceRuntime) -> ActionLedger:
    return runtime.state.setdefault("ledger", ActionLedger())


def _reference(runtime: ServiceRuntime) -> Reference:
    return runtime.state.setdefault("reference", Reference())


def upstream(request: Request, runtime: ServiceRuntime) -> Upstream:
    return Upstream(runtime.settings, runtime.state["http"], authorization_of(request))


NAV = (
    ("/", "dashboard.view", N_("Dashboard")),
    ("/orders", "orders.view", N_("Orders")),
    ("/what-if", "orders.what_if", N_("What-if")),
    ("/members", "members.view", N_("Members")),
    ("/quality", "quality.view", N_("Quality")),
    ("/items", "items.view", N_("Items")),
    ("/buyers", "buyers.view", N_("Buyers")),
    ("/shipments", "shipments.view", N_("Shipments")),
    ("/operations", "operations.view", N_("Operations")),
)


def csrf_token(request: Request) -> str:
    """The CSRF token forms carry back (double submit: it must match the signed cookie the middleware sets)."""
    make = request.scope.get(CSRF_SCOPE_KEY)
    return str(make()) if callable(make) else ""


def render(
    request: Request, template: str, tr: Translator, person: Person | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    page = templates.get_template(template).render(
        **template_globals(tr),
        request=request,
        person=person,
        csrf_token=csrf_token(request),
        csrf_field=CSRF_FIELD,
        nav=[(href, title) for href, action, title in NAV if person is not None and person.may(action)],
        path=request.url.path,
        locales=LOCALES,
        new_key=lambda: uuid.uuid4().hex,
        stages=STAGES,
        plan_reason=lambda reason: plan_reason(reason, tr),
        quality_reason=lambda status: quality_reason(status, tr),
        **context,
    )
    return HTMLResponse(page, status_code=status_code)


def not_found(request: Request, tr: Translator, person: Person) -> HTMLResponse:
    return render(request, "not_found.html", tr, person, status_code=404)


def unavailable(request: Request, tr: Translator, person: Person | None, problem: UpstreamProblem) -> HTMLResponse:
    """A page a service would not or could not give: back to sign-in when it refused the person's token, "not
    allowed" when its own rules refused their role, else which service is unavailable."""
    if problem.status == 401:
        raise SignInNeeded(ended=True)
    if problem.status == 403 and person is not None:
        return render(request, "forbidden.html", tr, person, status_code=403)
    return render(
        request, "unavailable.html", tr, person, status_code=503, problem=problem, summary=handlers.problem_summary(problem, tr)
    )


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def done(request: Request, to: str) -> Response:
    """After an action: htmx follows `HX-Redirect`, a plain form post a 303."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": to})
    return RedirectResponse(to, status_code=303)


# --- language -------------------------------------------------------------------------------------------------


@router.post("/language", include_in_schema=False, dependencies=[Depends(public())])
async def switch_language(request: Request, locale: Annotated[str, Form()], back: Annotated[str, Form()] = "/") -> Response:
    target = back if back.startswith("/") and not back.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(LANGUAGE_COOKIE, pick_locale(locale), max_age=365 * 24 * 3600, httponly=True, samesite="lax")
    return response


# --- signing in ------------------------------------------------------------------------------------------------


def safe_next(target: str) -> str:
    """Where to go after signing in: a path of this console only, never another site."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def login_form(
    request: Request, tr: Translator, target: str, status_code: int = 200, notice: str = "", error: str = "", username: str = ""
) -> HTMLResponse:
    return render(
        request,
        "login.html",
        tr,
        None,
        status_code=status_code,
        next=safe_next(target),
        notice=notice,
        error=error,
        username=username,
    )


@router.get("/login", response_class=HTMLResponse, include_in_schema=False, dependencies=[Depends(public())])
async def login_page(
    request: Request,
    tr: Language,
    target: Annotated[str, Query(alias="next", max_length=2000)] = "/",
    ended: bool = False,
    out: bool = False,
) -> Response:
    notice = tr.text("Your session has ended. Sign in again.") if ended else tr.text("You have signed out.") if out else ""
    return login_form(request, tr, target, notice=notice)


@router.post("/login", include_in_schema=False, dependencies=[Depends(public())])
async def login(
    request: Request,
    runtime: Runtime,
    tr: Language,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    target: Annotated[str, Form(alias="next", max_length=2000)] = "/",
) -> Response:
    username = username.strip()
    if not username or not password:
        return login_form(request, tr, target, 422, error=tr.text("Enter your name and password."), username=username)
    address = request.client.host if request.client else "unknown"
    try:
        answer = await handlers.sign_in(runtime.state["http"], runtime.settings, username, password, address)
    except UpstreamProblem as problem:
        status, error = handlers.sign_in_refusal(problem, tr)
        form = login_form(request, tr, target, status, error=error, username=username)
        if problem.status == 429 and problem.retry_after:
            form.headers["Retry-After"] = str(problem.retry_after)
        return form
    if not CONSOLE_ROLES & set(answer.get("roles") or []):
        return login_form(request, tr, target, 403, error=tr.text("This account cannot use the console."), username=username)
    response = RedirectResponse(safe_next(target), status_code=303)
    session = SignedIn(
        answer["access_token"], str(answer.get("username") or username), clock.now().timestamp(), answer.get("refresh_token")
    )
    set_session_cookie(response, session_keys(request), session, runtime.settings)
    return response


@router.post("/logout", include_in_schema=False, dependencies=[Depends(public())])
async def logout(request: Request, runtime: Runtime) -> Response:
    sealed = request.cookies.get(SESSION_COOKIE)
    session = session_keys(request).open(sealed, runtime.settings.console_session_hours * 3600) if sealed else None
    if session is not None and session.refresh:
        # The sign-in ends at identity too, so a copy of the cookie renews nothing any more; when identity is
        # unavailable the cookie is cleared all the same, and the sign-in ends at its limit.
        with contextlib.suppress(UpstreamProblem):
            await handlers.sign_out(runtime.state["http"], runtime.settings, session.refresh)
    response = RedirectResponse("/login?out=1", status_code=303)
    clear_session_cookie(response, runtime.settings)
    return response


# --- dashboard ------------------------------------------------------------------------------------------------


async def _dashboard_context(
    request: Request, runtime: ServiceRuntime, person: Person, tr: Translator, family: str
) -> dict[str, Any]:
    today = clock.today()
    figures: UntilNextEvent = runtime.state.setdefault("figures", UntilNextEvent())
    board = await figures.get(
        ("dashboard", person.role, family, today),
        lambda: handlers.dashboard(upstream(request, runtime), person, today, family, None),
        following=bool(runtime.state.get("following")),
    )
    board = replace(board, dead_letters=runtime.state.get("dead_letter_count"))
    rows = heat_rows(board.availability)
    return {
        "board": board,
        "heat_map": charts.heat_map(rows, board.availability["weeks"], tr, tr.text("Capacity utilisation by member and week")),
        "heat_legend": charts.heat_legend(tr),
        "heat_members": len(rows),
        "pass_chart": charts.pass_rate_bars(board.pass_rates, tr, tr.text("Lot pass rate, last 13 weeks")),
        "pass_rate": overall_rate(board.pass_rates),
    }


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page(
    request: Request, runtime: Runtime, person: AnyRole, tr: Language, family: str = handlers.DEFAULT_FAMILY
) -> Response:
    if not person.may("dashboard.view"):
        home = next(href for href, action, _ in NAV if person.may(action))  # a foundry's members page, a lab's quality
        return RedirectResponse(home, status_code=303)
    try:
        context = await _dashboard_context(request, runtime, person, tr, family)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    return render(request, "dashboard.html", tr, person, **context)


@router.get("/dashboard/figures", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_figures(
    request: Request, runtime: Runtime, person: DashboardViewer, tr: Language, family: str = handlers.DEFAULT_FAMILY
) -> Response:
    try:
        context = await _dashboard_context(request, runtime, person, tr, family)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    return render(request, "_dashboard_figures.html", tr, person, **context)


# --- orders -----------------------------------------------------------------------------------------------------


@router.get("/orders", response_class=HTMLResponse, include_in_schema=False)
async def orders_page(
    request: Request,
    runtime: Runtime,
    person: OrdersViewer,
    tr: Language,
    buyer: str = "",
    status: str = "",
    po: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    try:
        found = await handlers.order_list(
            upstream(request, runtime), person, buyer=buyer, status=status, po_number=po.strip(), page=page
        )
    except UpstreamProblem as problem:
        if problem.status == 422:
            found = handlers.OrderList([], 0, 1, 1)
        else:
            return unavailable(request, tr, person, problem)
    return render(request, "orders.html", tr, person, found=found, buyer=buyer, status=status, po=po)


@router.get("/orders/{order_id}", response_class=HTMLResponse, include_in_schema=False)
async def order_page(request: Request, order_id: str, runtime: Runtime, person: OrdersViewer, tr: Language) -> Response:
    try:
        detail = await handlers.order_detail(upstream(request, runtime), person, order_id, tr)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None:
        return not_found(request, tr, person)
    return render(request, "order.html", tr, person, **detail, errors={}, values={})


@router.get("/orders/{order_id}/live", response_class=HTMLResponse, include_in_schema=False)
async def order_live(request: Request, order_id: str, runtime: Runtime, person: OrdersViewer, tr: Language) -> Response:
    try:
        detail = await handlers.order_detail(upstream(request, runtime), person, order_id, tr)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None:
        return not_found(request, tr, person)
    return render(request, "_order_live.html", tr, person, **detail)


async def _order_action(
    request: Request,
    runtime: ServiceRuntime,
    person: Person,
    tr: Translator,
    order_id: str,
    form: str,
    act: Any,
    values: dict[str, Any],
) -> Response:
    try:
        await handlers.perform(_ledger(runtime), values.get("key"), act)
    except UpstreamProblem as problem:
        try:
            detail = await handlers.order_detail(upstream(request, runtime), person, order_id, tr)
        except UpstreamProblem as again:
            return unavailable(request, tr, person, again)
        if detail is None:
            return not_found(request, tr, person)
        errors = {**handlers.field_errors(problem, tr), "_form": form, "_summary": handlers.problem_summary(problem, tr)}
        return render(request, f"_form_{form}.html", tr, person, **detail, errors=errors, values=values)
    return done(request, f"/orders/{order_id}")


@router.post("/orders/{order_id}/replan", include_in_schema=False)
async def order_replan(
    request: Request, order_id: str, runtime: Runtime, person: OrdersDecider, tr: Language,
    reason: Annotated[str, Form()] = "", key: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    up = upstream(request, runtime)
    return await _order_action(
        request, runtime, person, tr, order_id, "replan", lambda: handlers.replan(up, order_id, reason.strip(), key or None),
        {"reason": reason, "key": key},
    )  # fmt: skip


@router.post("/orders/{order_id}/reject", include_in_schema=False)
async def order_reject(
    request: Request, order_id: str, runtime: Runtime, person: OrdersDecider, tr: Language,
    reason: Annotated[str, Form()] = "", key: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    up = upstream(request, runtime)
    return await _order_action(
        request, runtime, person, tr, order_id, "reject", lambda: handlers.reject(up, order_id, reason.strip(), key or None),
        {"reason": reason, "key": key},
    )  # fmt: skip


@router.post("/orders/{order_id}/shipments", include_in_schema=False)
async def order_ship(request: Request, order_id: str, runtime: Runtime, person: ShipmentsManager, tr: Language) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    items = []
    for name, value in form.items():
        if name.startswith("lot.") and value.strip():
            quantity = handlers.parse_number(value, tr)
            items.append(
                {"lot_code": name[4:], "quantity": int(quantity) if quantity is not None and quantity == int(quantity) else value}
            )
    body = {
        "surat_jalan_number": form.get("surat_jalan_number", "").strip(),
        "site_code": form.get("site_code", ""),
        "vehicle_plate": form.get("vehicle_plate", "").strip(),
        "driver_name": form.get("driver_name", "").strip() or None,
        "items": items,
    }
    up = upstream(request, runtime)
    return await _order_action(
        request,
        runtime,
        person,
        tr,
        order_id,
        "shipment",
        lambda: handlers.create_shipment(up, order_id, body, form.get("key") or None),
        form,
    )


@router.post("/shipments/{shipment_id}/dispatch", include_in_schema=False)
async def shipment_dispatch(
    request: Request, shipment_id: str, runtime: Runtime, person: ShipmentsManager, tr: Language, key: Annotated[str, Form()] = ""
) -> Response:
    up = upstream(request, runtime)
    try:
        await handlers.perform(_ledger(runtime), key or None, lambda: handlers.dispatch(up, shipment_id, key or None))
    except UpstreamProblem as problem:
        return await _shipment_with_errors(request, runtime, person, tr, shipment_id, problem, {})
    return done(request, f"/shipments/{shipment_id}")


@router.post("/shipments/{shipment_id}/handover", include_in_schema=False)
async def shipment_handover(
    request: Request, shipment_id: str, runtime: Runtime, person: ShipmentsManager, tr: Language
) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    items: dict[str, dict[str, Any]] = {}
    for name, value in form.items():
        for part in ("received", "rejected"):
            if name.startswith(f"{part}."):
                number = handlers.parse_number(value, tr)
                items.setdefault(name[len(part) + 1 :], {"received": 0, "rejected": 0})[part] = (
                    int(number) if number is not None and number == int(number) else value
                )
    body = {
        "bast_number": form.get("bast_number", "").strip(),
        "signed_by": form.get("signed_by", "").strip(),
        "signed_on": form.get("signed_on", "") or None,
        "items": [{"lot_code": code, **figures} for code, figures in items.items()],
    }
    up = upstream(request, runtime)
    key = form.get("key") or None
    try:
        await handlers.perform(_ledger(runtime), key, lambda: handlers.handover(up, shipment_id, body, key))
    except UpstreamProblem as problem:
        return await _shipment_with_errors(request, runtime, person, tr, shipment_id, problem, form)
    return done(request, f"/shipments/{shipment_id}")


async def _shipment_with_errors(
    request: Request,
    runtime: ServiceRuntime,
    person: Person,
    tr: Translator,
    shipment_id: str,
    problem: UpstreamProblem,
    values: dict[str, Any],
) -> Response:
    detail = await handlers.shipment_detail(upstream(request, runtime), person, shipment_id)
    if detail is None:
        return not_found(request, tr, person)
    errors = {**handlers.field_errors(problem, tr), "_summary": handlers.problem_summary(problem, tr)}
    return render(request, "_form_handover.html", tr, person, **detail, errors=errors, values=values)


# --- members ----------------------------------------------------------------------------------------------------


@router.get("/members", response_class=HTMLResponse, include_in_schema=False)
async def members_page(
    request: Request, runtime: Runtime, person: MembersViewer, tr: Language,
    village: str = "", family: str = "", membership: str = "", quality: str = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:  # fmt: skip
    if person.foundry_filter:
        return RedirectResponse(f"/members/{person.foundry_filter}", status_code=303)
    try:
        found = await handlers.member_list(
            upstream(request, runtime),
            person,
            village=village,
            family=family or None,
            membership=membership or None,
            quality=quality,
            page=page,
        )
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    filters = {"village": village, "family": family, "membership": membership, "quality": quality}
    return render(request, "members.html", tr, person, found=found, filters=filters)


async def _member_context(
    request: Request, runtime: ServiceRuntime, person: Person, tr: Translator, code: str
) -> dict[str, Any] | None:
    detail = await handlers.member_detail(upstream(request, runtime), person, code, clock.today())
    if detail is None:
        return None
    detail["charts"] = [
        (
            c["family"],
            charts.capacity_calendar(
                c["weeks"], c["capacity"], c["reserved"], tr,
                tr.text("%(family)s: weekly capacity and reserved units", family=tr.label("product_family", c["family"])),
            ),
        )
        for c in detail["calendar"]
    ]  # fmt: skip
    return detail


@router.get("/members/{code}", response_class=HTMLResponse, include_in_schema=False)
async def member_page(request: Request, code: str, runtime: Runtime, person: MembersViewer, tr: Language) -> Response:
    try:
        detail = await _member_context(request, runtime, person, tr, code)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None:
        return not_found(request, tr, person)
    return render(request, "member.html", tr, person, **detail, errors={}, values={})


@router.get("/members/{code}/live", response_class=HTMLResponse, include_in_schema=False)
async def member_live(request: Request, code: str, runtime: Runtime, person: MembersViewer, tr: Language) -> Response:
    try:
        detail = await _member_context(request, runtime, person, tr, code)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None:
        return not_found(request, tr, person)
    return render(request, "_member_live.html", tr, person, **detail)


@router.post("/members/{code}/capacity-changes", include_in_schema=False)
async def member_report_capacity(
    request: Request, code: str, runtime: Runtime, person: CapacityReporter, tr: Language
) -> Response:
    if not person.owns_foundry(code):
        return not_found(request, tr, person)
    form = {k: str(v) for k, v in (await request.form()).items()}
    kind = form.get("kind", "")
    body: dict[str, Any] = {"kind": kind, "reason": form.get("reason", ""), "note": form.get("note", "").strip() or None}
    errors: dict[str, str] = {}
    if kind == "withdrawal":
        body["withdraws"] = form.get("withdraws") or None
    else:
        body["product_family"] = form.get("product_family") or None
        units = handlers.parse_number(form.get("weekly_units", ""), tr)
        if units is None or units != int(units):
            errors["weekly_units"] = tr.text("Enter a whole number.")
        else:
            body["weekly_units"] = int(units)
        if kind == "standard":
            body["from_week"] = form.get("from_week", "").strip() or None
        else:
            body["from_date"] = form.get("from_date") or None
            body["to_date"] = form.get("to_date") or None
    body["reported_by"] = person.name if person.name != "dev" else None
    key = form.get("key") or None
    if not errors:
        try:
            await handlers.perform(
                _ledger(runtime), key, lambda: handlers.report_capacity(upstream(request, runtime), code, body, key)
            )
            return done(request, f"/members/{code}")
        except UpstreamProblem as problem:
            errors = {**handlers.field_errors(problem, tr), "_summary": handlers.problem_summary(problem, tr)}
    try:
        detail = await _member_context(request, runtime, person, tr, code)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None:
        return not_found(request, tr, person)
    return render(request, "_form_capacity.html", tr, person, **detail, errors=errors, values=form)


# --- quality ----------------------------------------------------------------------------------------------------


@router.get("/quality", response_class=HTMLResponse, include_in_schema=False)
async def quality_page(
    request: Request, runtime: Runtime, person: QualityViewer, tr: Language, certificates: str = "expiring"
) -> Response:
    try:
        overview = await handlers.quality_overview(upstream(request, runtime), person, certificates)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    return render(request, "quality.html", tr, person, **overview, certificate_state=certificates, errors={}, values={})


@router.get("/quality/lots/{lot_code}", response_class=HTMLResponse, include_in_schema=False)
async def lot_page(request: Request, lot_code: str, runtime: Runtime, person: QualityViewer, tr: Language) -> Response:
    try:
        detail = await handlers.lot_detail(upstream(request, runtime), person, lot_code)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None:
        return not_found(request, tr, person)
    return render(request, "lot.html", tr, person, **detail, errors={}, values={"tested_on": clock.today().isoformat()})


@router.post("/quality/lots/{lot_code}/results", include_in_schema=False)
async def lot_results(request: Request, lot_code: str, runtime: Runtime, person: QualityRecorder, tr: Language) -> Response:
    up = upstream(request, runtime)
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        detail = await handlers.lot_detail(up, person, lot_code)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None:
        return not_found(request, tr, person)
    samples, errors = handlers.samples_of(form, detail["spec"]["parameters"], detail["lot"]["sampling_plan"]["sample_size"], tr)
    body = {
        "report_number": form.get("report_number", "").strip(),
        "laboratory": form.get("laboratory", "").strip(),
        "tested_on": form.get("tested_on") or None,
        "samples": samples,
    }
    key = form.get("key") or None
    if not errors:
        try:
            await handlers.perform(_ledger(runtime), key, lambda: handlers.record_results(up, lot_code, body, key))
            return done(request, f"/quality/lots/{lot_code}")
        except UpstreamProblem as problem:
            errors = {**handlers.field_errors(problem, tr), "_summary": handlers.problem_summary(problem, tr)}
    return render(request, "_form_results.html", tr, person, **detail, errors=errors, values=form)


@router.post("/quality/override", include_in_schema=False)
async def quality_override(
    request: Request, runtime: Runtime, person: QualityOverrider, tr: Language, foundry_code: Annotated[str, Form()],
    status: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "", key: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    code = foundry_code
    up = upstream(request, runtime)
    try:
        await handlers.perform(
            _ledger(runtime), key or None, lambda: handlers.override_status(up, code, status or None, reason.strip(), key or None)
        )
    except UpstreamProblem as problem:
        try:
            overview = await handlers.quality_overview(up, person, "expiring")
        except UpstreamProblem as again:
            return unavailable(request, tr, person, again)
        errors = {**handlers.field_errors(problem, tr), "_summary": handlers.problem_summary(problem, tr), "_foundry": code}
        return render(
            request,
            "_form_override.html",
            tr,
            person,
            **overview,
            errors=errors,
            values={"status": status, "reason": reason, "key": key, "foundry_code": code},
        )
    return done(request, "/quality")


# --- the item catalogue --------------------------------------------------------------------------------------------


async def _items_page(
    request: Request, runtime: ServiceRuntime, person: Person, tr: Translator, status_code: int = 200, **context: Any
) -> Response:
    """The catalogue with the new item's form; after a refusal, htmx gets the form alone (it swaps only 2xx)."""
    context = {"values": dict(handlers.NEW_ITEM), "errors": {}, **context, **handlers.ITEM_CHOICES}
    if is_htmx(request):
        return render(request, "_form_item.html", tr, person, **context)
    try:
        items = await handlers.item_list(upstream(request, runtime))
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    return render(request, "items.html", tr, person, status_code=status_code, items=items, **context)


async def _item_page(
    request: Request, runtime: ServiceRuntime, person: Person, tr: Translator, code: str, status_code: int = 200, **context: Any
) -> Response:
    """One item with its version and retire forms; after a refusal, htmx gets the refused form alone."""
    try:
        detail = await handlers.item_detail(upstream(request, runtime), code)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None:
        return not_found(request, tr, person)
    errors = context.pop("errors", {})
    context = {"values": handlers.item_values(detail["item"], tr), **context, **handlers.ITEM_CHOICES}
    if is_htmx(request) and errors:
        fragment = "_form_retire_item.html" if errors.get("_form") == "retire" else "_form_item.html"
        return render(request, fragment, tr, person, **detail, errors=errors, **context)
    return render(request, "item.html", tr, person, status_code=status_code, **detail, errors=errors, **context)


async def _item_form(request: Request) -> dict[str, Any]:
    form = await request.form()
    values: dict[str, Any] = {k: str(v) for k, v in form.items() if k != CSRF_FIELD}
    values["required_certificates"] = [str(v) for v in form.getlist("required_certificates")]
    return values


@router.get("/items", response_class=HTMLResponse, include_in_schema=False)
async def items_page(request: Request, runtime: Runtime, person: ItemsViewer, tr: Language) -> Response:
    return await _items_page(request, runtime, person, tr)


@router.post("/items", include_in_schema=False)
async def item_create(request: Request, runtime: Runtime, person: ItemsWriter, tr: Language) -> Response:
    values = await _item_form(request)
    code = values.get("code", "").strip()
    body, errors = handlers.item_terms(values, tr)
    key = values.get("key") or None
    if not errors:
        up = upstream(request, runtime)
        try:
            await handlers.perform(_ledger(runtime), key, lambda: handlers.create_item(up, {"code": code, **body}, key))
            return done(request, f"/items/{code}")
        except UpstreamProblem as problem:
            errors = handlers.item_errors(problem, tr)
            if problem.status == 409:  # the code is taken: said where the code is typed
                errors["code"] = tr.text("An item with this code exists already; publish a new version of it instead.")
    return await _items_page(request, runtime, person, tr, 422, values=values, errors=errors)


@router.get("/items/{item_code}", response_class=HTMLResponse, include_in_schema=False)
async def item_page(request: Request, item_code: str, runtime: Runtime, person: ItemsViewer, tr: Language) -> Response:
    return await _item_page(request, runtime, person, tr, item_code)


@router.post("/items/{item_code}/versions", include_in_schema=False)
async def item_publish_version(request: Request, item_code: str, runtime: Runtime, person: ItemsWriter, tr: Language) -> Response:
    if not handlers.ITEM_CODE.match(item_code):
        return not_found(request, tr, person)
    values = await _item_form(request)
    body, errors = handlers.item_terms(values, tr)
    key = values.get("key") or None
    if not errors:
        up = upstream(request, runtime)
        try:
            await handlers.perform(_ledger(runtime), key, lambda: handlers.publish_item_version(up, item_code, body, key))
            return done(request, f"/items/{item_code}")
        except UpstreamProblem as problem:
            errors = handlers.item_errors(problem, tr)
            if problem.status == 409 and await handlers.publishes_nothing(up, item_code, body):
                # Said in the person's language: the form was sent as it came, or changed back to the version in force.
                errors["_summary"] = tr.text("The new version would say what the version in force says: change something first.")
    return await _item_page(request, runtime, person, tr, item_code, 422, values=values, errors={**errors, "_form": "version"})


@router.post("/items/{item_code}/retire", include_in_schema=False)
async def item_retire(
    request: Request, item_code: str, runtime: Runtime, person: ItemsWriter, tr: Language, key: Annotated[str, Form()] = ""
) -> Response:
    if not handlers.ITEM_CODE.match(item_code):
        return not_found(request, tr, person)
    up = upstream(request, runtime)
    try:
        await handlers.perform(_ledger(runtime), key or None, lambda: handlers.retire_item(up, item_code, key or None))
    except UpstreamProblem as problem:
        errors = {"_summary": handlers.problem_summary(problem, tr), "_form": "retire"}
        return await _item_page(request, runtime, person, tr, item_code, 422, errors=errors, retire_key=key)
    return done(request, f"/items/{item_code}")


# --- buyers and delivery sites -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """Which of the buyers page's forms a refusal is about: its id, and the buyer and site it changes."""

    form: str
    buyer: str | None
    site: str | None

    @property
    def template(self) -> str:
        return "_form_site.html" if self.form.startswith("site-") else "_form_buyer.html"

    @property
    def adds(self) -> bool:
        return self.form == "buyer-new" or self.form.startswith("site-new-")


async def _buyers_page(
    request: Request,
    runtime: ServiceRuntime,
    person: Person,
    tr: Translator,
    status_code: int = 200,
    refused: Refused | None = None,
    **context: Any,
) -> Response:
    """The buyers with their sites and, for admins, their forms. After a refusal, htmx gets the refused form alone,
    a 200 (htmx swaps only 2xx)."""
    try:
        buyers = await handlers.buyers_with_sites(upstream(request, runtime))
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    context = {"values": {}, "errors": {}, "buyer_values": handlers.buyer_values, "site_values": handlers.site_values, **context}
    if refused is not None and is_htmx(request):
        site = next((s for b in buyers for s in b["sites"] if s["code"] == refused.site), None)
        buyer = next((b for b in buyers if b["code"] == (site["buyer_code"] if site else refused.buyer)), None)
        return render(request, refused.template, tr, person, buyer=buyer, site=site, **context)
    return render(request, "buyers.html", tr, person, status_code=status_code, buyers=buyers, **context)


async def _buyers_action(
    request: Request,
    runtime: ServiceRuntime,
    person: Person,
    tr: Translator,
    refused: Refused,
    act: Any,
    values: dict[str, str],
) -> Response:
    """Sends a buyer's or a site's form once per key; a refusal comes back on that form, its fields kept."""
    key = values.get("key") or None
    try:
        await handlers.perform(_ledger(runtime), key, act)
    except UpstreamProblem as problem:
        errors = {**handlers.field_errors(problem, tr), "_summary": handlers.problem_summary(problem, tr), "_form": refused.form}
        if problem.status == 409 and refused.adds:  # the code is taken: said where it is typed
            errors["code"] = tr.text("This code is taken already; change the one that has it instead.")
        return await _buyers_page(request, runtime, person, tr, 422, refused, values=values, errors=errors)
    return done(request, "/buyers")


async def _buyers_form(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items() if k != CSRF_FIELD}


@router.get("/buyers", response_class=HTMLResponse, include_in_schema=False)
async def buyers_page(request: Request, runtime: Runtime, person: BuyersViewer, tr: Language) -> Response:
    return await _buyers_page(request, runtime, person, tr)


@router.post("/buyers", include_in_schema=False)
async def buyer_add(request: Request, runtime: Runtime, person: BuyersWriter, tr: Language) -> Response:
    values = await _buyers_form(request)
    body = {"code": values.get("code", "").strip(), **handlers.buyer_body(values)}
    up, key = upstream(request, runtime), values.get("key") or None
    return await _buyers_action(
        request, runtime, person, tr, Refused("buyer-new", None, None), lambda: handlers.add_buyer(up, body, key), values
    )


@router.post("/buyers/{buyer_code}", include_in_schema=False)
async def buyer_change(request: Request, buyer_code: str, runtime: Runtime, person: BuyersWriter, tr: Language) -> Response:
    if not handlers.BUYER_CODE.match(buyer_code):
        return not_found(request, tr, person)
    values = await _buyers_form(request)
    body = handlers.buyer_body(values)
    up, key = upstream(request, runtime), values.get("key") or None
    return await _buyers_action(
        request, runtime, person, tr, Refused(f"buyer-{buyer_code}", buyer_code, None),
        lambda: handlers.change_buyer(up, buyer_code, body, key), values,
    )  # fmt: skip


@router.post("/buyers/{buyer_code}/sites", include_in_schema=False)
async def site_add(request: Request, buyer_code: str, runtime: Runtime, person: BuyersWriter, tr: Language) -> Response:
    if not handlers.BUYER_CODE.match(buyer_code):
        return not_found(request, tr, person)
    values = await _buyers_form(request)
    body = {"code": values.get("code", "").strip(), "buyer_code": buyer_code, **handlers.site_body(values)}
    up, key = upstream(request, runtime), values.get("key") or None
    return await _buyers_action(
        request, runtime, person, tr, Refused(f"site-new-{buyer_code}", buyer_code, None),
        lambda: handlers.add_site(up, body, key), values,
    )  # fmt: skip


@router.post("/sites/{site_code}", include_in_schema=False)
async def site_change(request: Request, site_code: str, runtime: Runtime, person: BuyersWriter, tr: Language) -> Response:
    if not handlers.SITE_CODE.match(site_code):
        return not_found(request, tr, person)
    values = await _buyers_form(request)
    body = handlers.site_body(values)
    up, key = upstream(request, runtime), values.get("key") or None
    return await _buyers_action(
        request, runtime, person, tr, Refused(f"site-{site_code}", None, site_code),
        lambda: handlers.change_site(up, site_code, body, key), values,
    )  # fmt: skip


# --- what-if ------------------------------------------------------------------------------------------------------


async def _what_if_page(
    request: Request, runtime: ServiceRuntime, person: Person, tr: Translator, status_code: int = 200, **context: Any
) -> Response:
    try:
        choices = await handlers.what_if_choices(upstream(request, runtime), _reference(runtime))
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    # htmx swaps only 2xx answers: a refused question comes back as a 200 fragment with its errors.
    template, status_code = ("_what_if.html", 200) if is_htmx(request) else ("what_if.html", status_code)
    context = {"values": {}, "errors": {}, "answer": None, "added": None, **context}
    return render(
        request,
        template,
        tr,
        person,
        status_code=status_code,
        **choices,
        certificate_kinds=handlers.CERTIFICATE_KINDS,
        rows=handlers.what_if_rows(context["values"]),
        max_rows=handlers.MAX_ROWS,
        add_row=handlers.ADD_ROW,
        **context,
    )


@router.get("/what-if", response_class=HTMLResponse, include_in_schema=False)
async def what_if_page(request: Request, runtime: Runtime, person: WhatIfAsker, tr: Language) -> Response:
    return await _what_if_page(request, runtime, person, tr)


@router.post("/what-if", response_class=HTMLResponse, include_in_schema=False)
async def what_if_ask(request: Request, runtime: Runtime, person: WhatIfAsker, tr: Language) -> Response:
    """A planner's question, answered by orders without changing anything: no idempotency key is needed."""
    form = {k: str(v) for k, v in (await request.form()).items() if k != CSRF_FIELD}
    if form.get(handlers.ADD_ROW) in handlers.HYPOTHESES:
        # One more row of a kind: the form again, as it was filled in, with the new row's first field in focus.
        kind = form[handlers.ADD_ROW]
        return await _what_if_page(request, runtime, person, tr, values=form, added=(kind, handlers.what_if_rows(form)[kind] - 1))
    body, errors = handlers.what_if_question(form, tr, clock.today())
    if errors:
        return await _what_if_page(request, runtime, person, tr, 422, values=form, errors=errors)
    try:
        answer = await handlers.what_if(upstream(request, runtime), body)
    except UpstreamProblem as problem:
        if problem.status in (401, 403):
            return unavailable(request, tr, person, problem)
        errors = handlers.what_if_errors(problem, form, tr)
        return await _what_if_page(
            request, runtime, person, tr, 422 if problem.status == 422 else 503, values=form, errors=errors
        )
    return await _what_if_page(request, runtime, person, tr, values=form, answer=answer)


# --- shipments ----------------------------------------------------------------------------------------------------


@router.get("/shipments", response_class=HTMLResponse, include_in_schema=False)
async def shipments_page(request: Request, runtime: Runtime, person: ShipmentsViewer, tr: Language) -> Response:
    try:
        shipments = await handlers.shipments_of(upstream(request, runtime), person)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    return render(request, "shipments.html", tr, person, shipments=shipments)


@router.get("/shipments/{shipment_id}", response_class=HTMLResponse, include_in_schema=False)
async def shipment_page(request: Request, shipment_id: str, runtime: Runtime, person: ShipmentsViewer, tr: Language) -> Response:
    try:
        detail = await handlers.shipment_detail(upstream(request, runtime), person, shipment_id)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None:
        return not_found(request, tr, person)
    return render(request, "shipment.html", tr, person, **detail, errors={}, values={})


@router.get("/shipments/{shipment_id}/{document}", response_class=HTMLResponse, include_in_schema=False)
async def shipment_document(
    request: Request, shipment_id: str, document: str, runtime: Runtime, person: ShipmentsViewer, tr: Language
) -> Response:
    if document not in ("surat-jalan", "bast"):
        return not_found(request, tr, person)
    try:
        detail = await handlers.shipment_detail(upstream(request, runtime), person, shipment_id)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    if detail is None or (document == "bast" and detail["shipment"]["status"] != "delivered"):
        return not_found(request, tr, person)
    return render(request, f"print_{document.replace('-', '_')}.html", tr, person, **detail, printed_at=clock.now())


@router.get("/exports/{what}.csv", include_in_schema=False)
async def export_csv(request: Request, what: str, runtime: Runtime, person: OrdersViewer, tr: Language) -> Response:
    if what not in ("orders", "plans", "shipments"):
        return not_found(request, tr, person)
    try:
        text = await handlers.export(upstream(request, runtime), person, what)
    except UpstreamProblem as problem:
        return unavailable(request, tr, person, problem)
    name = f"ceper-{what}-{clock.today().isoformat()}.csv"
    return Response(text, media_type="text/csv; charset=utf-8", headers={"content-disposition": f'attachment; filename="{name}"'})


# --- operations ---------------------------------------------------------------------------------------------------


async def _operations_context(request: Request, runtime: ServiceRuntime) -> dict[str, Any]:
    authorization = authorization_of(request)
    client = runtime.state["http"]
    bases = {
        "orders": runtime.settings.orders_url,
        "capacity": runtime.settings.capacity_url,
        "quality": runtime.settings.quality_url,
    }
    health, metrics, letters = await asyncio.gather(
        asyncio.gather(*(readiness(client, name, base, authorization) for name, base in bases.items())),
        asyncio.gather(*(metrics_text(client, base, authorization) for base in bases.values())),
        handlers.dead_letters(runtime.settings),
    )
    runtime.state["dead_letter_count"] = sum(len(v) for v in letters.values())
    services = [
        {"name": name, **ready, "lag": handlers.consumer_lag(text)}
        for (name, _), ready, text in zip(bases.items(), health, metrics, strict=True)
    ]
    return {"services": services, "letters": letters}


@router.get("/operations", response_class=HTMLResponse, include_in_schema=False)
async def operations_page(request: Request, runtime: Runtime, person: Operator, tr: Language) -> Response:
    return render(request, "operations.html", tr, person, **await _operations_context(request, runtime))


@router.post("/operations/dead-letters/redrive", include_in_schema=False)
async def operations_redrive(
    request: Request, runtime: Runtime, person: Operator, tr: Language,
    service: Annotated[str, Form()], partition: Annotated[int, Form()], offset: Annotated[int, Form()],
    key: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    if service not in ("orders", "capacity", "quality"):
        return not_found(request, tr, person)
    # The message is republished once per form, however often it is sent (its consumers skip repeats anyway).
    await handlers.perform(_ledger(runtime), key or None, lambda: handlers.redrive(runtime.settings, service, partition, offset))
    return done(request, "/operations")


# --- live -----------------------------------------------------------------------------------------------------------


def feed_entries(items: list[Any], person: Person, tr: Translator) -> list[dict[str, Any]]:
    out = []
    for item in items:
        view = view_of(item, person)
        if view is not None:
            out.append({"id": view.id, "time": tr.time(view.time), "sentence": describe(view, tr), "link": link_of(view, person)})
    return out


@router.get("/feed", response_class=HTMLResponse, include_in_schema=False)
async def feed_fragment(request: Request, runtime: Runtime, person: AnyRole, tr: Language) -> Response:
    return render(request, "_feed.html", tr, person, entries=feed_entries(_feed(runtime).recent(30), person, tr))


def live_messages(item: FeedItem, person: Person, tr: Translator) -> list[dict[str, str]]:
    """What the stream sends one person about one event: nothing if it is none of their business, else the
    channels it moves and its sentence for the feed."""
    view = view_of(item, person)
    if view is None:
        return []
    messages = [{"event": channel, "data": view.id} for channel in sorted(channels_of(view) - {"feed"})]
    line = {"id": view.id, "time": tr.time(view.time), "sentence": describe(view, tr), "link": link_of(view, person)}
    entry = templates.get_template("_feed_entry.html").render(**template_globals(tr), entry=line)
    return [*messages, {"event": "feed", "id": view.id, "data": entry}]


@router.get("/live", include_in_schema=False)
async def live(request: Request, runtime: Runtime, person: AnyRole, tr: Language) -> EventSourceResponse:
    """Server-sent events for one person: for each event they may see, the channels it moves (pages refetch
    what changed, with the person's own token) and its sentence for the feed. Never the event's data. The stream
    ends when the person's sign-in does; the browser's reconnection then needs a new one."""
    feed = _feed(runtime)
    queue = feed.listen()

    async def stream() -> AsyncIterator[dict[str, str]]:
        try:
            yield {"event": "hello", "data": ""}
            while True:
                left = seconds_left(person)
                if left is not None and left <= 0:
                    return
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=left)
                except TimeoutError:
                    return
                for message in live_messages(item, person, tr):
                    yield message
        finally:
            feed.forget(queue)

    return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class FeedItemOut(BaseModel):
    id: str
    type: str
    source: str
    subject: str
    time: str
    topic: str
    sentence: str


@router.get(
    "/v1/events/recent",
    response_model=list[FeedItemOut],
    tags=["live"],
    summary="The most recent platform events the caller may see, newest first, as sentences (never the event data)",
    responses=problem_responses(401, 403, 422),
)
async def recent_events(
    runtime: Runtime, person: AnyRole, tr: Language, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    out = []
    for item in _feed(runtime).recent(200):
        view = view_of(item, person)
        if view is not None:
            out.append({**view.as_json(), "sentence": describe(view, tr)})
        if len(out) >= limit:
            break
    return out


@router.get(
    "/v1/services",
    tags=["operations"],
    summary="Readiness of the orders, capacity and quality services (admins)",
    responses=problem_responses(401, 403),
)
async def services(request: Request, runtime: Runtime, _person: Operator) -> dict[str, dict[str, object]]:
    client = runtime.state["http"]
    bases = {
        "orders": runtime.settings.orders_url,
        "capacity": runtime.settings.capacity_url,
        "quality": runtime.settings.quality_url,
    }
    found = await asyncio.gather(*(readiness(client, name, base, authorization_of(request)) for name, base in bases.items()))
    return dict(zip(bases, found, strict=True))
