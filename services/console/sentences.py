"""Platform events as sentences people read ("IKM-071 melaporkan kapasitas 0 unit minggu 2027-W14–W17: press
rusak"), in the person's language. Pure: it reads an event as the person may see it and writes one line."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .domain import FeedItem, Person, week_spans
from .i18n import LABELS, N_, Translator

Describe = Callable[[dict[str, Any], Translator], str]


def week_range(first: str, last: str) -> str:
    """`2027-W14–W17`, or one week, or across a new year in full."""
    if first == last:
        return first
    return f"{first}–{last[5:]}" if first[:4] == last[:4] else f"{first}–{last}"


def _capacity_changed(d: dict[str, Any], tr: Translator) -> str:
    reason = tr.label("capacity_reason", d.get("reason"))
    weeks = [(w["week"], w["capacity"]) for w in d.get("weeks", [])]
    if len(weeks) >= 52 and d.get("standard_weekly_units") is not None:
        return tr.text(
            "%(foundry)s set its standard capacity to %(units)s units a week from week %(week)s: %(reason)s",
            foundry=d["foundry_code"],
            units=tr.number(d["standard_weekly_units"]),
            week=min(w for w, _ in weeks),
            reason=reason,
        )
    spans = week_spans(weeks)
    if not spans:
        return tr.text("%(foundry)s reported a capacity change: %(reason)s", foundry=d["foundry_code"], reason=reason)
    parts = [
        tr.text("%(units)s units in week %(weeks)s", units=tr.number(units), weeks=week_range(first, last))
        for first, last, units in spans
    ]
    return tr.text(
        "%(foundry)s reported a capacity of %(figures)s: %(reason)s",
        foundry=d["foundry_code"],
        figures=", ".join(parts),
        reason=reason,
    )


def _release_reason(tr: Translator, code: str | None) -> str:
    return tr.label("release_reason", code) or tr.label("capacity_reason", code)


# How orders words a cancellation that was the cooperative's rejection rather than the buyer's withdrawal.
REJECTED = "rejected by the cooperative: "


def _item_of(data: dict[str, Any], tr: Translator) -> dict[str, str]:
    """An item version's event as a sentence names the item by its code and its name in the person's language."""
    return {"item": data["item_code"], "name": tr.item_name(data), "version": tr.number(data["version"])}


DESCRIBE: dict[str, Describe] = {
    "ceper.capacity.foundry_registered.v1": lambda d, tr: tr.text(
        "%(foundry)s (%(name)s, %(village)s) joined the cooperative's register",
        foundry=d["foundry_code"],
        name=d["name"],
        village=d["village"],
    ),
    "ceper.capacity.foundry_updated.v1": lambda d, tr: tr.text(
        "%(foundry)s's register entry changed; membership: %(status)s",
        foundry=d["foundry_code"],
        status=tr.label("membership_status", d.get("membership_status") or "active"),
    ),
    "ceper.capacity.capacity_changed.v1": _capacity_changed,
    "ceper.capacity.reservation_confirmed.v1": lambda d, tr: tr.text(
        "%(foundry)s reserved %(units)s units in week %(week)s",
        foundry=d["foundry_code"],
        units=tr.number(d["quantity"]),
        week=d["week"],
    ),
    "ceper.capacity.reservation_rejected.v1": lambda d, tr: tr.text(
        "%(foundry)s could not reserve %(units)s units in week %(week)s (%(free)s free)",
        foundry=d["foundry_code"],
        units=tr.number(d["requested_quantity"]),
        week=d["week"],
        free=tr.number(d["free_quantity"]),
    ),
    "ceper.capacity.reservation_revoked.v1": lambda d, tr: tr.text(
        "%(units)s reserved units at %(foundry)s in week %(week)s no longer fit: %(reason)s",
        foundry=d["foundry_code"],
        units=tr.number(d["revoked_quantity"]),
        week=d["week"],
        reason=tr.label("capacity_reason", d.get("reason")),
    ),
    "ceper.capacity.reservation_released.v1": lambda d, tr: tr.text(
        "%(foundry)s released %(units)s units in week %(week)s: %(reason)s",
        foundry=d["foundry_code"],
        units=tr.number(d["quantity"]),
        week=d["week"],
        reason=_release_reason(tr, d.get("reason")),
    ),
    "ceper.capacity.reservation_expired.v1": lambda d, tr: tr.text(
        "A hold of %(units)s units at %(foundry)s in week %(week)s expired",
        foundry=d["foundry_code"],
        units=tr.number(d["quantity"]),
        week=d["week"],
    ),
    "ceper.capacity.reservation_consumed.v1": lambda d, tr: tr.text(
        "%(foundry)s made %(units)s units (lot %(lot)s)",
        foundry=d["foundry_code"],
        units=tr.number(d["quantity"]),
        lot=d["lot_code"],
    ),
    "ceper.quality.certificate_granted.v1": lambda d, tr: tr.text(
        "%(foundry)s was granted %(kind)s certificate %(number)s, valid until %(until)s",
        foundry=d["foundry_code"],
        kind=d["kind"],
        number=d["number"],
        until=tr.date(d["valid_until"]),
    ),
    "ceper.quality.certificate_revoked.v1": lambda d, tr: tr.text(
        "%(foundry)s's %(kind)s certificate was revoked: %(reason)s",
        foundry=d["foundry_code"],
        kind=d["kind"],
        reason=d["reason"],
    ),
    "ceper.quality.certification_expiring.v1": lambda d, tr: tr.plural(
        "%(foundry)s's %(kind)s certificate expires in %(num)s day (%(until)s)",
        "%(foundry)s's %(kind)s certificate expires in %(num)s days (%(until)s)",
        d["days_left"],
        foundry=d["foundry_code"],
        kind=d["kind"],
        until=tr.date(d["valid_until"]),
    ),
    "ceper.quality.certification_expired.v1": lambda d, tr: tr.text(
        "%(foundry)s's %(kind)s certificate expired on %(until)s",
        foundry=d["foundry_code"],
        kind=d["kind"],
        until=tr.date(d["valid_until"]),
    ),
    "ceper.quality.lot_registered.v1": lambda d, tr: tr.text(
        "%(foundry)s registered lot %(lot)s for testing: %(units)s units of %(item)s",
        foundry=d["foundry_code"],
        lot=d["lot_code"],
        units=tr.number(d["quantity"]),
        item=d["item_code"],
    ),
    "ceper.quality.lot_passed.v1": lambda d, tr: tr.text(
        "Lot %(lot)s from %(foundry)s passed testing (%(laboratory)s, report %(report)s): %(units)s units may be shipped",
        lot=d["lot_code"],
        foundry=d["foundry_code"],
        laboratory=d["laboratory"],
        report=d["report_number"],
        units=tr.number(d["quantity"]),
    ),
    "ceper.quality.lot_failed.v1": lambda d, tr: tr.text(
        "Lot %(lot)s from %(foundry)s failed testing (%(parameters)s): %(units)s units must be made again",
        lot=d["lot_code"],
        foundry=d["foundry_code"],
        parameters=", ".join(tr.parameter(r["parameter"]) for r in d.get("reasons", [])) or "–",
        units=tr.number(d["quantity"]),
    ),
    "ceper.quality.item_published.v1": lambda d, tr: (
        tr.text("Item %(item)s (%(name)s) retired with version %(version)s", **_item_of(d, tr))
        if d["retired"]
        else tr.text("Version %(version)s of item %(item)s (%(name)s) published", **_item_of(d, tr))
    ),
    "ceper.quality.foundry_quality_status_changed.v1": lambda d, tr: tr.text(
        "%(foundry)s's quality status is now %(status)s (was %(previous)s)",
        foundry=d["foundry_code"],
        status=tr.label("quality_status", d["status"]),
        previous=tr.label("quality_status", d["previous_status"]),
    ),
    "ceper.orders.purchase_order_received.v1": lambda d, tr: tr.text(
        "%(buyer)s sent purchase order %(po)s for %(units)s units",
        buyer=d["buyer_code"],
        po=d["po_number"],
        units=tr.number(sum(line["quantity"] for line in d.get("lines", []))),
    ),
    "ceper.orders.allocation_planned.v1": lambda d, tr: tr.text(
        "Plan version %(version)s of a %(buyer)s order: %(units)s units at %(members)s members",
        version=d["plan_version"],
        buyer=d["buyer_code"],
        units=tr.number(sum(a["quantity"] for a in d.get("allocations", []))),
        members=tr.number(len({a["foundry_code"] for a in d.get("allocations", [])})),
    ),
    "ceper.orders.purchase_order_cancelled.v1": lambda d, tr: (
        tr.text(
            "The cooperative rejected an order of %(buyer)s: %(reason)s",
            buyer=d["buyer_code"],
            reason=d["reason"][len(REJECTED) :],
        )
        if d["reason"].startswith(REJECTED)
        else tr.text("%(buyer)s cancelled an order: %(reason)s", buyer=d["buyer_code"], reason=d["reason"])
    ),
    "ceper.orders.shipment_dispatched.v1": lambda d, tr: tr.text(
        "Surat jalan %(number)s left for %(site)s with %(units)s units (%(plate)s)",
        number=d["surat_jalan_number"],
        site=d["site_code"],
        units=tr.number(sum(i["quantity"] for i in d.get("items", []))),
        plate=d["vehicle_plate"],
    ),
    "ceper.orders.shipment_delivered.v1": lambda d, tr: tr.text(
        "BAST %(number)s signed by %(signed_by)s: %(received)s units received, %(rejected)s refused",
        number=d["bast_number"],
        signed_by=d["signed_by"],
        received=tr.number(sum(i["received"] for i in d.get("items", []))),
        rejected=tr.number(sum(i["rejected"] for i in d.get("items", []))),
    ),
    "ceper.orders.purchase_order_fulfilled.v1": lambda d, tr: tr.text(
        "%(buyer)s order %(po)s is fulfilled; local content (TKDN) %(tkdn)s",
        buyer=d["buyer_code"],
        po=d["po_number"],
        tkdn=tr.percent(d["local_content_percent"] / 100),
    ),
}


def describe(item: FeedItem, tr: Translator) -> str:
    """One sentence for an event; an event the console does not know yet is named by its type."""
    describe_one = DESCRIBE.get(item.type)
    if describe_one is not None:
        try:
            return describe_one(item.data, tr)
        except (KeyError, TypeError, ValueError):
            pass  # an unexpected shape is still shown, by its type
    return tr.text("%(service)s event %(type)s about %(subject)s", service=item.service, type=item.type, subject=item.subject)


def link_of(item: FeedItem, person: Person | None = None) -> str | None:
    """The page an event is about, among those the person may open."""
    data = item.data
    if (order_id := data.get("order_id")) and (person is None or person.may("orders.view")):
        return f"/orders/{order_id}"
    if (foundry := data.get("foundry_code")) and (
        person is None or (person.may("members.view") and person.owns_foundry(foundry))
    ):
        return f"/members/{foundry}"
    if item.type == "ceper.quality.item_published.v1" and (person is None or person.may("items.view")):
        return f"/items/{data['item_code']}"
    return None


# Why orders made a plan version, as orders words it, in the person's language.
_PLAN_REASONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^received$"), N_("the purchase order arrived")),
    (
        re.compile(r"^lot (?P<lot>\S+) failed testing: (?P<units>\d+) units to make again$"),
        N_("lot %(lot)s failed testing: %(units)s units to make again"),
    ),
    (re.compile(r"^reservation rejected: (?P<code>\w+)$"), N_("capacity refused a reservation: %(code)s")),
    (re.compile(r"^reservation revoked: (?P<code>\w+)$"), N_("capacity revoked a reservation: %(code)s")),
    (re.compile(r"^replan requested: (?P<text>.*)$"), N_("replan requested: %(text)s")),
    (
        re.compile(r"^(?P<units>\d+) units refused at handover \(BAST (?P<bast>.+)\)$"),
        N_("%(units)s units refused at handover (BAST %(bast)s)"),
    ),
    (re.compile(r"^(?P<foundry>IKM-\d+) suspended: (?P<why>.*)$"), N_("%(foundry)s suspended: %(why)s")),
    (re.compile(r"^(?P<kind>\w+) certificate granted to (?P<foundry>\S+)$"), N_("%(kind)s certificate granted to %(foundry)s")),
    (
        re.compile(r"^(?P<kind>\w+) certificate of (?P<foundry>\S+) (?P<what>revoked|expired)$"),
        N_("%(kind)s certificate of %(foundry)s %(what)s"),
    ),
    (re.compile(r"^(?P<foundry>\S+) no longer suspended$"), N_("%(foundry)s is no longer suspended")),
    (
        re.compile(r"^(?P<foundry>\S+) changed: membership or product families$"),
        N_("%(foundry)s changed its membership or product families"),
    ),
    (re.compile(r"^capacity of (?P<foundry>\S+) changed$"), N_("the capacity of %(foundry)s changed")),
    (re.compile(r"^and (?P<units>\d+) more$"), N_("and %(units)s more")),
    # Quality's words for why a member is suspended, which orders quotes.
    (re.compile(r"^(?P<passed>\d+) of the last (?P<lots>\d+) lots passed$"), N_("%(passed)s of the last %(lots)s lots passed")),
    (
        re.compile(r"^pass rate (?P<rate>\d+)% with the prior \(good at (?P<good>\d+)%, suspended below (?P<below>\d+)%\)$"),
        N_("pass rate %(rate)s (good from %(good)s, suspended below %(below)s)"),
    ),
    (re.compile(r"^QA officer: (?P<reason>.*)$"), N_("set by a QA officer: %(reason)s")),
]
_NUMBERS = ("units", "passed", "lots")
_PERCENTS = ("rate", "good", "below")


def plan_reason(reason: str, tr: Translator) -> str:
    """A plan version's reason in the person's language. Orders joins the reasons of one replan with "; ", so each
    is translated on its own; a reason orders words in a new way is shown as it is."""
    return "; ".join(_one_plan_reason(piece, tr) for piece in reason.split("; "))


def _one_plan_reason(reason: str, tr: Translator) -> str:
    for pattern, message in _PLAN_REASONS:
        found = pattern.match(reason)
        if found:
            params = found.groupdict()
            for name in _NUMBERS:
                if name in params:
                    params[name] = tr.number(int(params[name]))
            for name in _PERCENTS:
                if name in params:
                    params[name] = tr.percent(int(params[name]) / 100, digits=0)
            if "why" in params:  # quality's reason for a suspension, in the person's language too
                params["why"] = _one_plan_reason(params["why"], tr)
            if "code" in params:
                kind = "capacity_reason" if params["code"] in LABELS["capacity_reason"] else "reject_reason"
                params["code"] = tr.label(kind, params["code"])
            if "what" in params:
                params["what"] = tr.label("certificate_state", params["what"]).lower()
            return tr.text(message, **params)
    return reason


def quality_reason(status: dict[str, Any], tr: Translator) -> str:
    """Why a member has its quality status: the QA officer's own words when pinned, else the lot record."""
    reason = str(status.get("reason") or "")
    if status.get("overridden") and reason.startswith("QA officer: "):
        return tr.text(
            "set by a QA officer: %(reason)s", reason=reason.removeprefix("QA officer: ").split("; back to the computed", 1)[0]
        )
    return tr.text(
        "%(passed)s of the last %(lots)s lots passed",
        passed=tr.number(status.get("lots_passed")),
        lots=tr.number(status.get("lots_considered")),
    )
