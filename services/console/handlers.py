"""The console's use cases: each page's data composed from the services' APIs, read as the person (their
token, their tenant), and each staff action sent once, whatever the double clicks."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from babel.numbers import NumberFormatError, parse_decimal
from prometheus_client.parser import text_string_to_metric_families

from shared import dlq
from shared.settings import Settings
from shared.weeks import add_weeks, iso_week

from .domain import (
    OPEN_ORDER_STATUSES,
    ActionLedger,
    Person,
    Reference,
    WeekRate,
    WhatIfAnswer,
    item_history,
    open_value,
    pass_rate_by_week,
    plan_matrix,
    plan_moves,
    redact_member,
    units_by_stage,
    what_if_answer,
)
from .i18n import Translator
from .sentences import plan_reason
from .store import SERVICES, Upstream, UpstreamProblem
from .store import sign_in as identity_sign_in
from .store import sign_out as identity_sign_out

PAGE_SIZE = 25
DEFAULT_FAMILY = "BRAKE_BLOCK_COMPOSITE"


# --- signing in ------------------------------------------------------------------------------------------------


async def sign_in(client: Any, settings: Settings, username: str, password: str, address: str) -> dict[str, Any]:
    return await identity_sign_in(client, settings, username, password, address)


async def sign_out(client: Any, settings: Settings, refresh_token: str) -> None:
    await identity_sign_out(client, settings, refresh_token)


def sign_in_refusal(problem: UpstreamProblem, tr: Translator) -> tuple[int, str]:
    """The login page's answer to a refused sign-in. A wrong name, a wrong password and a disabled account read
    the same, and so does the lock-out whether the account exists or not: the page tells nothing about accounts."""
    if problem.status == 401:
        return 401, tr.text("The name or the password is not right, or the account is disabled.")
    if problem.status == 429:
        minutes = max(1, round((problem.retry_after or 60) / 60))
        return 429, tr.text(
            "Too many failed sign-ins for this name or from this address. Wait %(minutes)s minutes and try again, "
            "or ask an administrator.",
            minutes=tr.number(minutes),
        )
    if problem.status == 422:
        return 422, tr.text("Enter your name and password.")
    return 503, tr.text("Signing in is not possible right now; try again shortly.")


# --- shared pieces --------------------------------------------------------------------------------------------


async def orders_of(up: Upstream, person: Person, *, status: str | None = None) -> list[dict[str, Any]]:
    """Every purchase order the person may see (a buyer: its own), newest first."""
    orders = await up.all_pages("orders", "/v1/purchase-orders", {"buyer_code": person.buyer_filter, "status": status}, page=200)
    return sorted(orders, key=lambda o: o["received_at"], reverse=True)


async def lots_since(up: Upstream, cutoff: date, **filters: Any) -> list[dict[str, Any]]:
    """Lots registered on or after `cutoff` (newest first), read page by page until older ones begin."""
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = await up.get("quality", "/v1/lots", {**filters, "limit": 500, "offset": offset})
        for lot in page["items"]:
            if datetime.fromisoformat(lot["registered_at"]).date() < cutoff:
                return found
            found.append(lot)
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return found


# --- dashboard ------------------------------------------------------------------------------------------------


@dataclass
class Dashboard:
    open_orders: list[dict[str, Any]]
    stages: dict[str, int]
    open_value: int
    at_risk: list[dict[str, Any]]
    family: str
    availability: dict[str, Any]
    pass_rates: list[WeekRate]
    expiring: list[dict[str, Any]]
    dead_letters: int | None
    ordered: int = 0


async def dashboard(up: Upstream, person: Person, today: date, family: str, dead_letters: int | None) -> Dashboard:
    first = iso_week(today)

    async def open_orders() -> list[dict[str, Any]]:
        listed = [o for o in await orders_of(up, person) if o["status"] in OPEN_ORDER_STATUSES]
        return list(await asyncio.gather(*(up.get("orders", f"/v1/purchase-orders/{o['id']}") for o in listed)))

    details, availability, lots, expiring = await asyncio.gather(
        open_orders(),
        up.get("capacity", "/v1/availability", {"product_family": family, "from": first, "to": add_weeks(first, 11)}),
        lots_since(up, today - timedelta(weeks=13)),
        up.get("quality", "/v1/certificates", {"state": "expiring"}),
    )
    at_risk = [{"order": order, "line": line} for order in details for line in order["lines"] if line["risk"]["at_risk"]]
    return Dashboard(
        open_orders=details,
        stages=units_by_stage(line for order in details for line in order["lines"]),
        open_value=sum(open_value(order) for order in details),
        at_risk=at_risk,
        family=family,
        availability=availability,
        pass_rates=pass_rate_by_week(lots, today),
        expiring=sorted(expiring, key=lambda c: c["valid_until"]),
        dead_letters=dead_letters,
        ordered=sum(line["quantity"] for order in details for line in order["lines"]),
    )


# --- orders -----------------------------------------------------------------------------------------------------


@dataclass
class OrderList:
    items: list[dict[str, Any]]
    total: int
    page: int
    pages: int


async def order_list(
    up: Upstream, person: Person, *, buyer: str | None, status: str | None, po_number: str | None, page: int
) -> OrderList:
    buyer_code = person.buyer_filter or buyer or None
    found = await up.get(
        "orders",
        "/v1/purchase-orders",
        {
            "buyer_code": buyer_code,
            "status": status,
            "po_number": po_number,
            "limit": PAGE_SIZE,
            "offset": (page - 1) * PAGE_SIZE,
        },
    )
    pages = max(1, -(-found["total"] // PAGE_SIZE))
    return OrderList(found["items"], found["total"], page, pages)


async def order_or_none(up: Upstream, person: Person, order_id: str) -> dict[str, Any] | None:
    order = await up.get_or_none("orders", f"/v1/purchase-orders/{order_id}")
    if order is None or not person.owns_order(order["buyer_code"]):
        return None  # another buyer's order does not exist for this person
    return order


async def order_detail(up: Upstream, person: Person, order_id: str, tr: Translator) -> dict[str, Any] | None:
    # The order and what hangs off it are read at once: one round trip instead of two; what was read for an order
    # that does not exist (or is not the person's) is dropped unseen.
    order, lots, shipments, history = await asyncio.gather(
        order_or_none(up, person, order_id),
        up.all_pages("quality", "/v1/lots", {"order_id": order_id}),
        up.get("orders", f"/v1/purchase-orders/{order_id}/shipments"),
        plan_history(up, order_id),
        return_exceptions=True,
    )
    if isinstance(order, BaseException):
        raise order
    if order is None:
        return None
    for found in (lots, shipments, history):
        if isinstance(found, BaseException):
            raise found
    return {
        "order": order,
        "matrix": plan_matrix((order.get("plan") or {}).get("allocations", [])),
        "lots": lots,
        "shipments": shipments,
        "history": history,
        "timeline": timeline(order, history, lots, shipments, tr),
        "shippable_lots": shippable_lots(lots, shipments),
    }


async def plan_fragment(up: Upstream, person: Person, order_id: str) -> dict[str, Any] | None:
    order = await order_or_none(up, person, order_id)
    if order is None:
        return None
    history = await plan_history(up, order_id)
    return {"order": order, "matrix": plan_matrix((order.get("plan") or {}).get("allocations", [])), "history": history}


async def plan_history(up: Upstream, order_id: str) -> list[dict[str, Any]]:
    """Every plan version, newest first, with what it moved compared with the one before."""
    versions = await up.get("orders", f"/v1/purchase-orders/{order_id}/plans")
    out = []
    previous: dict[str, int] = {}
    for version in sorted(versions, key=lambda v: v["version"]):
        by_member = {m["foundry_code"]: m["quantity"] for m in version["members"]}
        out.append({**version, "moves": plan_moves(previous, by_member), "total": sum(by_member.values())})
        previous = by_member
    return out[::-1]


def shippable_lots(lots: list[dict[str, Any]], shipments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Passed lots with units not yet on a shipment, and how many."""
    shipped: dict[str, int] = {}
    for shipment in shipments:
        for item in shipment["items"]:
            shipped[item["lot_code"]] = shipped.get(item["lot_code"], 0) + item["quantity"]
    out = []
    for lot in lots:
        if lot["status"] == "passed" and (left := lot["quantity"] - shipped.get(lot["lot_code"], 0)) > 0:
            out.append({**lot, "shippable": left})
    return out


def timeline(
    order: dict[str, Any],
    history: list[dict[str, Any]],
    lots: list[dict[str, Any]],
    shipments: list[dict[str, Any]],
    tr: Translator,
) -> list[tuple[str, str]]:
    """The order's story from the services' records, newest first: (moment, sentence)."""
    events: list[tuple[str, str]] = [
        (
            order["received_at"],
            tr.text("Purchase order %(po)s received from %(buyer)s", po=order["po_number"], buyer=order["buyer_code"]),
        )
    ]
    for version in history:
        events.append(
            (
                version["created_at"],
                tr.text(
                    "Plan version %(version)s: %(units)s units; %(reason)s",
                    version=version["version"],
                    units=tr.number(version["total"]),
                    reason=plan_reason(version["reason"], tr),
                ),
            )
        )
    for lot in lots:
        events.append(
            (
                lot["registered_at"],
                tr.text(
                    "Lot %(lot)s registered by %(foundry)s: %(units)s units",
                    lot=lot["lot_code"],
                    foundry=lot["foundry_code"],
                    units=tr.number(lot["quantity"]),
                ),
            )
        )
        if lot.get("decided_at"):
            events.append(
                (
                    lot["decided_at"],
                    tr.text(
                        "Lot %(lot)s %(outcome)s", lot=lot["lot_code"], outcome=tr.label("lot_status", lot["status"]).lower()
                    ),
                )
            )
    for shipment in shipments:
        units = tr.number(sum(i["quantity"] for i in shipment["items"]))
        events.append(
            (
                shipment["created_at"],
                tr.text("Surat jalan %(number)s prepared: %(units)s units", number=shipment["surat_jalan_number"], units=units),
            )
        )
        if shipment.get("dispatched_at"):
            events.append(
                (
                    shipment["dispatched_at"],
                    tr.text(
                        "Surat jalan %(number)s dispatched to %(site)s",
                        number=shipment["surat_jalan_number"],
                        site=shipment["site_code"],
                    ),
                )
            )
        if shipment.get("delivered_at"):
            events.append(
                (
                    shipment["delivered_at"],
                    tr.text(
                        "BAST %(number)s signed by %(signed_by)s", number=shipment["bast_number"], signed_by=shipment["signed_by"]
                    ),
                )
            )
    return sorted(events, key=lambda e: datetime.fromisoformat(e[0]), reverse=True)


# --- actions ---------------------------------------------------------------------------------------------------


async def perform(ledger: ActionLedger, key: str | None, act: Callable[[], Awaitable[Any]]) -> Any:
    """Runs an action once per idempotency key: a repeat (double click, resubmit) gets the first outcome.
    A refused action is not remembered, so the corrected form may be sent with the same key."""
    if not key:
        return await act()
    async with ledger.lock(key):
        done = ledger.outcome(key)
        if done is not None:
            return done
        outcome = await act()
        ledger.record(key, outcome if outcome is not None else True)
        return outcome


async def replan(up: Upstream, order_id: str, reason: str, key: str | None) -> Any:
    return await up.send("orders", "POST", f"/v1/purchase-orders/{order_id}/replan", {"reason": reason}, idempotency_key=key)


async def reject(up: Upstream, order_id: str, reason: str, key: str | None) -> Any:
    return await up.send("orders", "POST", f"/v1/purchase-orders/{order_id}/reject", {"reason": reason}, idempotency_key=key)


async def create_shipment(up: Upstream, order_id: str, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("orders", "POST", f"/v1/purchase-orders/{order_id}/shipments", body, idempotency_key=key)


async def dispatch(up: Upstream, shipment_id: str, key: str | None) -> Any:
    return await up.send("orders", "POST", f"/v1/shipments/{shipment_id}/dispatch", idempotency_key=key)


async def handover(up: Upstream, shipment_id: str, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("orders", "POST", f"/v1/shipments/{shipment_id}/handover", body, idempotency_key=key)


async def report_capacity(up: Upstream, code: str, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("capacity", "POST", f"/v1/foundries/{code}/capacity-changes", body, idempotency_key=key)


async def record_results(up: Upstream, lot_code: str, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("quality", "POST", f"/v1/lots/{lot_code}/results", body, idempotency_key=key)


async def override_status(up: Upstream, code: str, status: str | None, reason: str, key: str | None) -> Any:
    path = f"/v1/foundries/{code}/quality-status/override"
    if status:
        return await up.send("quality", "PUT", path, {"status": status, "reason": reason}, idempotency_key=key)
    return await up.send("quality", "DELETE", path, params={"reason": reason}, idempotency_key=key)


# --- form errors in the person's language ------------------------------------------------------------------------

_LIMIT = re.compile(r"(-?\d+(?:\.\d+)?)")


def field_errors(problem: UpstreamProblem, tr: Translator) -> dict[str, str]:
    """The service's per-field errors, by form field name (`body.items.0.quantity` → `items.0.quantity`)."""
    out: dict[str, str] = {}
    for error in problem.errors:
        name = str(error.get("field", ""))
        for prefix in ("body.", "query."):
            name = name.removeprefix(prefix)
        out.setdefault(name, error_message(str(error.get("type") or ""), str(error.get("message") or ""), tr))
    return out


def error_message(kind: str, message: str, tr: Translator) -> str:
    limit = _LIMIT.search(message)
    value = tr.number(float(limit.group(1)), 0 if "." not in limit.group(1) else 2) if limit else ""
    known = {
        "missing": tr.text("Required."),
        "string_too_short": tr.text("Too short."),
        "string_too_long": tr.text("Too long."),
        "greater_than": tr.text("Must be more than %(limit)s.", limit=value),
        "greater_than_equal": tr.text("Must be at least %(limit)s.", limit=value),
        "less_than": tr.text("Must be less than %(limit)s.", limit=value),
        "less_than_equal": tr.text("Must be at most %(limit)s.", limit=value),
        "int_parsing": tr.text("Enter a whole number."),
        "int_type": tr.text("Enter a whole number."),
        "float_parsing": tr.text("Enter a number."),
        "date_parsing": tr.text("Enter a date."),
        "date_type": tr.text("Enter a date."),
        "date_from_datetime_parsing": tr.text("Enter a date."),
        "enum": tr.text("Choose one of the options."),
        "literal_error": tr.text("Choose one of the options."),
        "string_pattern_mismatch": tr.text("Not in the expected format."),
        "too_short": tr.text("Add at least one."),
    }
    return known.get(kind) or tr.text("Refused by the service: %(message)s", message=message)


def problem_summary(problem: UpstreamProblem, tr: Translator) -> str:
    """One sentence for a refusal, above the errors of its fields if it names any."""
    if problem.unavailable:
        return tr.text("%(service)s is unavailable; nothing was changed. Try again shortly.", service=problem.service)
    if problem.status == 404:
        return tr.text("Not found: %(detail)s", detail=problem.detail or problem.title)
    if problem.status == 409:
        return tr.text("Not possible in the current state: %(detail)s", detail=problem.detail or problem.title)
    if problem.status in (401, 403):
        return tr.text("You are not allowed to do this.")
    if problem.errors:
        # The fields say what is wrong, each in the person's language; the service's own sentence repeats them in
        # its words (pydantic's, in English).
        return tr.text("Some entries need correcting; nothing was changed:")
    return tr.text("Refused by the service: %(message)s", message=problem.detail or problem.title)


def parse_number(text: str, tr: Translator) -> float | None:
    """A number as the person typed it: `0,26` in Indonesian, `0.26` in English; None if it is not one."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(parse_decimal(text, locale=tr.locale, strict=False))
    except NumberFormatError:
        try:
            return float(text)
        except ValueError:
            return None


# --- what-if ----------------------------------------------------------------------------------------------------

# A hypothesis of each kind is a row of the form, named after the body's fields (`capacity_changes.2.weekly_units`),
# asked when the field beside its kind is filled in.
HYPOTHESES = {"capacity_changes": "foundry_code", "certificate_lapses": "foundry_code", "suspensions": "foundry_code",
              "new_orders": "buyer_code"}  # fmt: skip
MAX_ROWS = 10  # of each kind, as a person fills them in
ADD_ROW = "add_row"  # the form's button that asks for one more row of a kind instead of asking the question
CERTIFICATE_KINDS = ("SNI", "ISO9001", "TKDN", "SKKNI")
# The planner does not read prices, but a purchase-order body needs one; the answer never shows it.
WHAT_IF_UNIT_PRICE = 1


def what_if_rows(form: Mapping[str, str]) -> dict[str, int]:
    """How many rows of each kind the form shows: those it came with (at least one), and one more of the kind
    its `add_row` button names, up to `MAX_ROWS`."""
    rows = dict.fromkeys(HYPOTHESES, 1)
    for name in form:
        kind, _, rest = name.partition(".")
        index = rest.partition(".")[0]
        if kind in rows and index.isdigit():
            rows[kind] = max(rows[kind], min(MAX_ROWS, int(index) + 1))
    added = form.get(ADD_ROW)
    if added in rows:
        rows[added] = min(MAX_ROWS, rows[added] + 1)
    return rows


def _asked(form: Mapping[str, str], kind: str) -> list[int]:
    """The rows of a kind that are asked, in order: the body's n-th hypothesis of the kind is the form's row at
    position n."""
    field = HYPOTHESES[kind]
    return [i for i in range(what_if_rows(form)[kind]) if form.get(f"{kind}.{i}.{field}", "").strip()]


def what_if_question(form: dict[str, str], tr: Translator, today: date) -> tuple[dict[str, Any], dict[str, str]]:
    """The body of orders' `POST /v1/what-if` from the form, and the errors found before asking. Every row whose
    member (or, for a new order, buyer) is filled in is asked; empty rows are left out."""

    def value(name: str) -> str | None:
        return form.get(name, "").strip() or None

    body: dict[str, Any] = {kind: [] for kind in HYPOTHESES}
    errors: dict[str, str] = {}

    def whole(name: str) -> int | None:
        number = parse_number(form.get(name, ""), tr)
        if number is None or number != int(number):
            errors[name] = tr.text("Enter a whole number.")
            return None
        return int(number)

    for i in _asked(form, "capacity_changes"):
        f = f"capacity_changes.{i}."
        body["capacity_changes"].append(
            {
                "foundry_code": value(f + "foundry_code"),
                "product_family": value(f + "product_family"),
                "from_date": value(f + "from_date"),
                "to_date": value(f + "to_date"),
                "weekly_units": whole(f + "weekly_units"),
            }
        )
    for i in _asked(form, "certificate_lapses"):
        f = f"certificate_lapses.{i}."
        body["certificate_lapses"].append(
            {"foundry_code": value(f + "foundry_code"), "kind": value(f + "kind"), "on": value(f + "on")}
        )
    for i in _asked(form, "suspensions"):
        f = f"suspensions.{i}."
        body["suspensions"].append({"foundry_code": value(f + "foundry_code"), "from_date": value(f + "from_date")})
    for i in _asked(form, "new_orders"):
        f, line = f"new_orders.{i}.", f"new_orders.{i}.lines.0."
        quantity = whole(line + "quantity")
        body["new_orders"].append(
            {
                "buyer_code": value(f + "buyer_code"),
                "po_number": f"WHAT-IF-{i + 1}",
                "issued_on": today.isoformat(),
                "currency": "IDR",
                "lines": [
                    {
                        "line_no": 1,
                        "item_code": value(line + "item_code"),
                        "quantity": quantity,
                        "unit_price": WHAT_IF_UNIT_PRICE,
                        "deliveries": [
                            {
                                "due_date": value(line + "deliveries.0.due_date"),
                                "quantity": quantity,
                                "site_code": value(line + "deliveries.0.site_code"),
                            }
                        ],
                    }
                ],
            }
        )
    if not any(body.values()):
        errors["_summary"] = tr.text(
            "Fill in at least one hypothesis: a member's capacity, a certificate, a suspension or a new order."
        )
    return body, errors


def what_if_errors(problem: UpstreamProblem, form: Mapping[str, str], tr: Translator) -> dict[str, str]:
    """Orders' refusal by form field: the body's n-th hypothesis of a kind is the form's n-th asked row, and a new
    order's one quantity stands for its line and its delivery."""
    rows = {kind: _asked(form, kind) for kind in HYPOTHESES}
    errors: dict[str, str] = {}
    for name, message in field_errors(problem, tr).items():
        kind, _, rest = name.partition(".")
        index, _, tail = rest.partition(".")
        if kind in rows and index.isdigit() and int(index) < len(rows[kind]):
            row = rows[kind][int(index)]
            if kind == "new_orders" and tail == "lines.0.deliveries.0.quantity":
                tail = "lines.0.quantity"
            name = f"{kind}.{row}.{tail}" if tail else f"{kind}.{row}"
        errors.setdefault(name, message)
    return {**errors, "_summary": problem_summary(problem, tr)}


async def what_if_choices(up: Upstream, kept: Reference) -> dict[str, list[dict[str, Any]]]:
    """What the new order may name: quality's active items (named in both languages, so what is kept serves every
    person), orders' active buyers and their delivery sites (without buyers' NPWP, so what is kept is the same for
    every role)."""

    async def items() -> list[dict[str, Any]]:
        catalogue = await up.get("quality", "/v1/items")
        return sorted(
            ({k: i[k] for k in ("code", "name_id", "name_en", "product_family")} for i in catalogue if not i["retired"]),
            key=lambda i: i["code"],
        )

    async def buyers() -> list[dict[str, Any]]:
        found = await up.get("orders", "/v1/buyers", {"active": "true"})
        return sorted(({"code": b["code"], "legal_name": b["legal_name"]} for b in found), key=lambda b: b["code"])

    async def sites() -> list[dict[str, Any]]:
        found = await up.get("orders", "/v1/sites")
        return sorted(
            ({k: site[k] for k in ("code", "name", "buyer_code", "city")} for site in found if site["active"]),
            key=lambda site: (site["buyer_code"], site["code"]),
        )

    found = await asyncio.gather(kept.get("items", items), kept.get("buyers", buyers), kept.get("sites", sites))
    return dict(zip(("items", "buyers", "sites"), found, strict=True))


async def what_if(up: Upstream, body: dict[str, Any]) -> WhatIfAnswer:
    """Orders' answer, with the plan in force of each order it would replan, read in parallel."""
    answer = await up.send("orders", "POST", "/v1/what-if", body)
    replanned = [o["order_id"] for o in answer["orders"] if o["replanned"]]
    orders = await asyncio.gather(*(up.get_or_none("orders", f"/v1/purchase-orders/{order_id}") for order_id in replanned))
    in_force = {o["id"]: (o.get("plan") or {}).get("allocations", []) for o in orders if o is not None}
    return what_if_answer(answer, in_force)


# --- members -----------------------------------------------------------------------------------------------------


@dataclass
class MemberList:
    items: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    villages: list[str]


async def member_list(
    up: Upstream,
    person: Person,
    *,
    village: str | None,
    family: str | None,
    membership: str | None,
    quality: str | None,
    page: int,
) -> MemberList:
    members, statuses = await asyncio.gather(
        up.all_pages("capacity", "/v1/foundries", {"product_family": family, "membership_status": membership}),
        up.get("quality", "/v1/quality-status"),
    )
    by_code = {s["foundry_code"]: s for s in statuses}
    villages = sorted({m["village"] for m in members})
    rows = [
        {**redact_member(m, person), "quality": by_code.get(m["code"])}
        for m in members
        if person.owns_foundry(m["code"]) and (not village or m["village"] == village)
    ]
    if quality:
        rows = [r for r in rows if r["quality"] and r["quality"]["status"] == quality]
    rows.sort(key=lambda r: r["code"])
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    return MemberList(rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE], len(rows), page, pages, villages)


async def member_detail(up: Upstream, person: Person, code: str, today: date) -> dict[str, Any] | None:
    if not person.owns_foundry(code):
        return None
    member = await up.get_or_none("capacity", f"/v1/foundries/{code}")
    if member is None:
        return None
    first = iso_week(today)
    families = member["product_families"]
    calendars, reservations, certificates, lots, quality, changes = await asyncio.gather(
        asyncio.gather(
            *(
                up.get(
                    "capacity",
                    "/v1/availability",
                    {"product_family": f, "foundry_code": code, "from": first, "to": add_weeks(first, 25)},
                )
                for f in families
            )
        ),
        up.get("capacity", "/v1/reservations", {"foundry_code": code, "limit": 200}),
        up.get("quality", "/v1/certificates", {"foundry_code": code}),
        up.get("quality", "/v1/lots", {"foundry_code": code, "limit": 50}),
        up.get_or_none("quality", f"/v1/foundries/{code}/quality-status"),
        up.get("capacity", f"/v1/foundries/{code}/capacity-changes", {"limit": 500}),
    )
    calendar = []
    for family, found in zip(families, calendars, strict=True):
        row = next(iter(found["foundries"]), None)
        if row is not None:
            calendar.append({"family": family, "weeks": found["weeks"], "capacity": row["capacity"], "reserved": row["reserved"]})
    open_states = ("hold", "confirmed", "consumed")
    return {
        "member": redact_member(member, person),
        "calendar": calendar,
        "reservations": sorted(
            (r for r in reservations["items"] if r["state"] in open_states), key=lambda r: (r["week"], r["id"])
        ),
        "certificates": sorted(certificates, key=lambda c: c["valid_until"]),
        "lots": lots["items"],
        "lots_total": lots["total"],
        "quality": quality,
        "changes": [c for c in changes["items"] if c["kind"] != "withdrawal"][::-1],
        "this_week": first,
    }


# --- quality ------------------------------------------------------------------------------------------------------


async def quality_overview(up: Upstream, person: Person, certificate_state: str | None) -> dict[str, Any]:
    foundry = person.foundry_filter
    lots = up.get("quality", "/v1/lots", {"status": "registered", "foundry_code": foundry, "limit": 100})
    if not person.may("quality.standing"):  # a laboratory sees the lots it tests, not members' standing
        awaiting, certificates, statuses = await lots, [], []
    else:
        awaiting, certificates, statuses = await asyncio.gather(
            lots,
            up.get("quality", "/v1/certificates", {"state": certificate_state or None, "foundry_code": foundry}),
            up.get("quality", "/v1/quality-status"),
        )
    watched = [s for s in statuses if (s["status"] != "good" or s["overridden"]) and person.owns_foundry(s["foundry_code"])]
    return {
        "awaiting": awaiting["items"],
        "awaiting_total": awaiting["total"],
        "certificates": sorted(certificates, key=lambda c: (c["valid_until"], c["foundry_code"]))[:200],
        "certificates_total": len(certificates),
        "watched": sorted(watched, key=lambda s: (s["status"] != "suspended", s["foundry_code"])),
        "statuses": statuses,
    }


async def lot_detail(up: Upstream, person: Person, lot_code: str) -> dict[str, Any] | None:
    lot = await up.get_or_none("quality", f"/v1/lots/{lot_code}")
    if lot is None or not person.owns_foundry(lot["foundry_code"]):
        return None
    spec = await up.get("quality", f"/v1/specifications/{lot['item_code']}", {"version": lot["spec_version"]})
    return {"lot": lot, "spec": spec}


def samples_of(
    form: dict[str, str], parameters: list[dict[str, Any]], count: int, tr: Translator
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The result rows of a results form (`s3.density` = sample 3's density), and the cells that are not numbers."""
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for n in range(1, count + 1):
        row: dict[str, Any] = {}
        for p in parameters:
            name = f"s{n}.{p['code']}"
            raw = form.get(name, "").strip()
            if p["rule"] == "pass_fail":
                row[p["code"]] = raw or None
            elif raw == "":
                row[p["code"]] = None
            else:
                value = parse_number(raw, tr)
                if value is None:
                    errors[name] = tr.text("Enter a number.")
                row[p["code"]] = value
        rows.append(row)
    return rows, errors


# --- shipments ---------------------------------------------------------------------------------------------------


async def shipments_of(up: Upstream, person: Person) -> list[dict[str, Any]]:
    orders = await orders_of(up, person)
    per_order = await asyncio.gather(*(up.get("orders", f"/v1/purchase-orders/{o['id']}/shipments") for o in orders))
    by_id = {o["id"]: o for o in orders}
    out = [{**s, "po_number": by_id[s["order_id"]]["po_number"]} for found in per_order for s in found]
    return sorted(out, key=lambda s: s["created_at"], reverse=True)


async def shipment_detail(up: Upstream, person: Person, shipment_id: str) -> dict[str, Any] | None:
    shipment = await up.get_or_none("orders", f"/v1/shipments/{shipment_id}")
    if shipment is None or not person.owns_order(shipment["buyer_code"]):
        return None
    order, traces = await asyncio.gather(
        up.get("orders", f"/v1/purchase-orders/{shipment['order_id']}"),
        asyncio.gather(*(up.get_or_none("quality", f"/v1/lots/{item['lot_code']}/trace") for item in shipment["items"])),
    )
    return {"shipment": shipment, "order": order, "traces": [t for t in traces if t is not None]}


def csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


async def export(up: Upstream, person: Person, what: str) -> str:
    """Orders, plans or shipments as CSV: figures as plain numbers, dates in ISO form, for spreadsheets."""
    if what == "shipments":
        shipments = await shipments_of(up, person)
        return csv_text(
            [
                "surat_jalan_number",
                "po_number",
                "buyer_code",
                "site_code",
                "status",
                "lot_code",
                "foundry_code",
                "quantity",
                "received",
                "rejected",
                "dispatched_at",
                "bast_number",
            ],
            (
                [
                    s["surat_jalan_number"],
                    s["po_number"],
                    s["buyer_code"],
                    s["site_code"],
                    s["status"],
                    i["lot_code"],
                    i["foundry_code"],
                    i["quantity"],
                    i["received"],
                    i["rejected"],
                    s["dispatched_at"],
                    s["bast_number"],
                ]
                for s in shipments
                for i in s["items"]
            ),
        )
    orders = await orders_of(up, person)
    details = await asyncio.gather(*(up.get("orders", f"/v1/purchase-orders/{o['id']}") for o in orders))
    if what == "plans":
        return csv_text(
            ["po_number", "buyer_code", "plan_version", "line_no", "foundry_code", "week", "quantity", "due_date", "state"],
            (
                [
                    d["po_number"],
                    d["buyer_code"],
                    d["plan"]["version"],
                    a["line_no"],
                    a["foundry_code"],
                    a["week"],
                    a["quantity"],
                    a["due_date"],
                    a["state"],
                ]
                for d in details
                if d.get("plan")
                for a in d["plan"]["allocations"]
            ),
        )
    return csv_text(
        [
            "po_number",
            "buyer_code",
            "status",
            "issued_on",
            "line_no",
            "item_code",
            "quantity",
            "unit_price",
            "planned",
            "reserved",
            "produced",
            "passed",
            "shipped",
            "delivered",
            "at_risk",
            "expected_completion",
        ],
        (
            [
                d["po_number"],
                d["buyer_code"],
                d["status"],
                d["issued_on"],
                line["line_no"],
                line["item_code"],
                line["quantity"],
                line["unit_price"],
                *(line["quantities"][s] for s in ("planned", "reserved", "produced", "passed", "shipped", "delivered")),
                line["risk"]["at_risk"],
                line["risk"]["expected_completion"],
            ]
            for d in details
            for line in d["lines"]
        ),
    )


# --- operations --------------------------------------------------------------------------------------------------


async def dead_letters(settings: Settings) -> dict[str, list[dlq.DeadLetter]]:
    found = await asyncio.gather(*(dlq.list_dead_letters(settings, s) for s in SERVICES))
    return dict(zip(SERVICES, found, strict=True))


async def redrive(settings: Settings, service: str, partition: int, offset: int) -> int:
    return len(await dlq.redrive(settings, service, offsets={(partition, offset)}))


def consumer_lag(metrics: str | None) -> int | None:
    """Messages the service's consumer is behind, summed over partitions, from its Prometheus exposition."""
    if metrics is None:
        return None
    total = 0.0
    for family in text_string_to_metric_families(metrics):
        if family.name == "ceper_consumer_lag":
            total += sum(sample.value for sample in family.samples)
    return int(total)


# --- the item catalogue -------------------------------------------------------------------------------------------

ITEM_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,19}$")


async def item_list(up: Upstream) -> list[dict[str, Any]]:
    """Every item of quality's catalogue in its version in force, the active ones first, retired ones too."""
    items = await up.get("quality", "/v1/items", {"retired": "true"})
    return sorted(items, key=lambda i: (i["retired"], i["code"]))


async def item_detail(up: Upstream, code: str) -> dict[str, Any] | None:
    """An item with every version it had, and every version of its specification; newest first."""
    if not ITEM_CODE.match(code):
        return None
    item, specifications = await asyncio.gather(
        up.get_or_none("quality", f"/v1/items/{code}"), up.get_or_none("quality", f"/v1/specifications/{code}/versions")
    )
    if item is None:
        return None
    return {"item": item, "history": item_history(item["versions"]), "specifications": (specifications or [])[::-1]}


# Quality's choices for an item's terms (services do not import each other): its units are the console's `unit`
# labels, its certificate kinds CERTIFICATE_KINDS; ISO 2859-1's inspection levels and acceptance quality limits.
INSPECTION_LEVELS = ("S-1", "S-2", "S-3", "S-4", "I", "II", "III")
AQLS = (0.01, 0.015, 0.025, 0.04, 0.065, 0.1, 0.15, 0.25, 0.4, 0.65, 1, 1.5, 2.5, 4, 6.5, 10, 15, 25, 40, 65, 100, 150, 250,
        400, 650, 1000)  # fmt: skip
ITEM_CHOICES = {"certificate_kinds": CERTIFICATE_KINDS, "inspection_levels": INSPECTION_LEVELS, "aqls": AQLS}
NEW_ITEM = {"unit": "pcs", "min_lot": "1", "sampling.inspection_level": "II", "sampling.aql": "2.5"}


def item_values(item: Mapping[str, Any], tr: Translator) -> dict[str, Any]:
    """An item's terms as its form shows them, numbers written as the person writes them: a new version starts
    from the one in force."""
    sampling = item.get("sampling") or {}
    tkdn = item.get("min_tkdn_percent")
    return {
        "name_id": item["name_id"],
        "name_en": item["name_en"],
        "product_family": item["product_family"],
        "unit": item["unit"],
        "min_lot": str(item["min_lot"]),
        "required_certificates": list(item.get("required_certificates") or []),
        "min_tkdn_percent": "" if tkdn is None else tr.decimal(tkdn),
        "sampling.inspection_level": sampling.get("inspection_level", "II"),
        "sampling.aql": f"{sampling.get('aql', 2.5):g}",
    }


def item_terms(form: Mapping[str, Any], tr: Translator) -> tuple[dict[str, Any], dict[str, str]]:
    """The body of quality's item routes from the form, and the fields the console could not read as numbers."""
    errors: dict[str, str] = {}
    min_lot = parse_number(str(form.get("min_lot", "")), tr)
    if min_lot is None or min_lot != int(min_lot):
        errors["min_lot"] = tr.text("Enter a whole number.")
    tkdn_text = str(form.get("min_tkdn_percent", "")).strip()
    tkdn = parse_number(tkdn_text, tr) if tkdn_text else None
    if tkdn_text and tkdn is None:
        errors["min_tkdn_percent"] = tr.text("Enter a number.")
    try:
        aql: float | str = float(str(form.get("sampling.aql", "")))
    except ValueError:
        aql = str(form.get("sampling.aql", ""))  # quality names what it accepts
    body = {
        "name_id": str(form.get("name_id", "")).strip(),
        "name_en": str(form.get("name_en", "")).strip(),
        "product_family": str(form.get("product_family", "")),
        "unit": str(form.get("unit", "")),
        "min_lot": int(min_lot) if min_lot is not None and "min_lot" not in errors else None,
        "required_certificates": list(form.get("required_certificates") or []),
        "min_tkdn_percent": tkdn,
        "sampling": {"inspection_level": str(form.get("sampling.inspection_level", "")), "aql": aql},
    }
    return body, errors


async def publishes_nothing(up: Upstream, code: str, body: Mapping[str, Any]) -> bool:
    """Whether a new version would say exactly what the item's version in force says (quality refuses it)."""
    try:
        item = await up.get_or_none("quality", f"/v1/items/{code}")
    except UpstreamProblem:
        return False  # quality's own words stand
    return bool(item) and not item["retired"] and all(item.get(term) == value for term, value in body.items())


def item_errors(problem: UpstreamProblem, tr: Translator) -> dict[str, str]:
    """Quality's refusal of an item, by form field: a certificate named twice is the certificates' error."""
    errors: dict[str, str] = {}
    for name, message in field_errors(problem, tr).items():
        errors.setdefault(name.split(".")[0] if name.startswith("required_certificates.") else name, message)
    return {**errors, "_summary": problem_summary(problem, tr)}


async def create_item(up: Upstream, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("quality", "POST", "/v1/items", body, idempotency_key=key)


async def publish_item_version(up: Upstream, code: str, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("quality", "POST", f"/v1/items/{code}/versions", body, idempotency_key=key)


async def retire_item(up: Upstream, code: str, key: str | None) -> Any:
    return await up.send("quality", "DELETE", f"/v1/items/{code}", idempotency_key=key)


# --- buyers and delivery sites ------------------------------------------------------------------------------------


async def buyers_with_sites(up: Upstream) -> list[dict[str, Any]]:
    """Orders' buyers, those that may send orders first, each with its delivery sites (those new orders may name
    first); inactive ones too. A buyer's NPWP is there only when orders tells it to the person."""
    buyers, sites = await asyncio.gather(up.get("orders", "/v1/buyers"), up.get("orders", "/v1/sites"))
    by_buyer: dict[str, list[dict[str, Any]]] = {}
    for site in sorted(sites, key=lambda s: (not s["active"], s["code"])):
        by_buyer.setdefault(site["buyer_code"], []).append(site)
    return [
        {**buyer, "sites": by_buyer.get(buyer["code"], [])}
        for buyer in sorted(buyers, key=lambda b: (not b["active"], b["code"]))
    ]


BUYER_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,15}$")
SITE_CODE = re.compile(r"^[A-Z][A-Z0-9-]{1,19}$")


def buyer_values(buyer: Mapping[str, Any] | None) -> dict[str, Any]:
    """A buyer's form as it starts: its record as orders told it, or a new active buyer."""
    if buyer is None:
        return {"active": "on"}
    return {"legal_name": buyer["legal_name"], "npwp": buyer.get("npwp") or "", "active": "on" if buyer["active"] else ""}


def site_values(site: Mapping[str, Any] | None) -> dict[str, Any]:
    """A delivery site's form as it starts: the site as orders told it, or a new active site."""
    if site is None:
        return {"active": "on"}
    return {
        "name": site["name"],
        "city": site["city"],
        "address": site.get("address") or "",
        "active": "on" if site["active"] else "",
    }


def buyer_body(form: Mapping[str, str]) -> dict[str, Any]:
    """A buyer's name, NPWP (left empty: none, or removed) and whether it may send new orders."""
    return {
        "legal_name": form.get("legal_name", "").strip(),
        "npwp": form.get("npwp", "").strip() or None,
        "active": form.get("active") == "on",
    }


def site_body(form: Mapping[str, str]) -> dict[str, Any]:
    """A site's name, city, address (left empty: none, or removed) and whether new orders may name it."""
    return {
        "name": form.get("name", "").strip(),
        "city": form.get("city", "").strip(),
        "address": form.get("address", "").strip() or None,
        "active": form.get("active") == "on",
    }


async def add_buyer(up: Upstream, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("orders", "POST", "/v1/buyers", body, idempotency_key=key)


async def change_buyer(up: Upstream, code: str, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("orders", "PATCH", f"/v1/buyers/{code}", body, idempotency_key=key)


async def add_site(up: Upstream, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("orders", "POST", "/v1/sites", body, idempotency_key=key)


async def change_site(up: Upstream, code: str, body: dict[str, Any], key: str | None) -> Any:
    return await up.send("orders", "PATCH", f"/v1/sites/{code}", body, idempotency_key=key)
