"""The console's languages: message catalogues (Bahasa Indonesia by default, English on a switch) and how
money, numbers, dates and times are written in each. Pure: Babel and the catalogues beside this module."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_compact_decimal, format_percent, get_decimal_symbol, get_group_symbol
from babel.support import NullTranslations, Translations
from markupsafe import Markup, escape

from shared.weeks import WIB

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
DEFAULT_LOCALE = "id"
LOCALES: dict[str, str] = {"id": "Bahasa Indonesia", "en": "English"}


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where it is shown."""
    return message


@lru_cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalogue of a locale, read from its .po file (so only text is kept in the repository)."""
    po = LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as source:
        catalog = read_po(source, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


@lru_cache
def _symbols(locale: str) -> tuple[str, str]:
    return get_group_symbol(locale=locale), get_decimal_symbol(locale=locale)


def pick_locale(asked: str | None) -> str:
    return asked if asked in LOCALES else DEFAULT_LOCALE


@dataclass(frozen=True)
class Translator:
    """Everything a page needs to speak one language: messages, labels, money, numbers, dates."""

    locale: str

    @property
    def _catalogue(self) -> NullTranslations:
        return translations(self.locale)

    def text(self, msgid: str, /, **params: Any) -> str:
        """A translated message as plain text, `%(name)s` placeholders filled."""
        translated = self._catalogue.gettext(msgid)
        return translated % params if params else translated

    def plural(self, singular: str, plural: str, n: int, /, **params: Any) -> str:
        translated = self._catalogue.ngettext(singular, plural, n)
        return translated % {"num": self.number(n), **params}

    def gettext(self, msgid: str, /, **params: Any) -> Markup:
        """For templates: the translation is trusted markup, the parameters are escaped."""
        translated = Markup(self._catalogue.gettext(msgid))
        return translated % {k: escape(v) for k, v in params.items()} if params else translated

    def ngettext(self, singular: str, plural: str, n: int, /, **params: Any) -> Markup:
        translated = Markup(self._catalogue.ngettext(singular, plural, n))
        return translated % {"num": escape(self.number(n)), **{k: escape(v) for k, v in params.items()}}

    def label(self, kind: str, value: str | None) -> str:
        """A code from the services (a status, a reason, a product family) in words; unknown codes as they are."""
        if value is None:
            return ""
        message = LABELS.get(kind, {}).get(value)
        return self.text(message) if message else value

    def parameter(self, code: str, name: str | None = None) -> str:
        """A test parameter of a sampling specification in words: the catalogue's name for the defaults, else the
        name the QA officer gave it (a parameter added later has no translation yet), else its code."""
        message = LABELS["test_parameter"].get(code)
        return self.text(message) if message else name or code

    def item_name(self, item: Mapping[str, Any]) -> str:
        """An item of quality's catalogue by the name it has in this language."""
        return str(item["name_en"] if self.locale == "en" else item["name_id"])

    def labels(self, kind: str) -> list[tuple[str, str]]:
        return [(code, self.text(message)) for code, message in LABELS.get(kind, {}).items()]

    # --- numbers and money -------------------------------------------------------------------------------------

    def number(self, value: int | float | None, digits: int = 0) -> str:
        """`120.000` or `0,26` in Indonesian, `120,000` or `0.26` in English: the locale's own symbols, applied
        directly (a page shows hundreds of figures; Babel's general formatter would cost tens of ms)."""
        if value is None:
            return "–"
        group, decimal = _symbols(self.locale)
        return f"{value:,.{digits}f}".replace(",", "\0").replace(".", decimal).replace("\0", group)

    def decimal(self, value: float | None) -> str:
        """A measured figure with the decimals it was given (`0,25`, `1,7`, `450`), up to four."""
        if value is None:
            return "–"
        digits = len(f"{value:.4f}".rstrip("0").partition(".")[2])
        return self.number(value, digits)

    def percent(self, fraction: float | None, digits: int = 1) -> str:
        if fraction is None:
            return "–"
        return format_percent(fraction, format=f"#,##0.{'0' * digits}%" if digits else "#,##0%", locale=self.locale)

    def rupiah(self, amount: int | None) -> str:
        """Whole rupiah as people write them: `Rp203.700` (Indonesian), `Rp203,700` (English)."""
        if amount is None:
            return "–"
        sign = "-" if amount < 0 else ""
        return f"{sign}Rp{self.number(abs(amount))}"

    def rupiah_short(self, amount: int | None) -> str:
        """Large sums for a glance: `Rp24,4 miliar`, `Rp950 ribu`; below a thousand, the whole figure."""
        if amount is None:
            return "–"
        if abs(amount) < 1000:
            return self.rupiah(amount)
        return "Rp" + format_compact_decimal(amount, format_type="long", locale=self.locale, fraction_digits=1)

    # --- dates and times (shown in WIB) --------------------------------------------------------------------------

    def date(self, day: date | str | None) -> str:
        if day is None or day == "":
            return "–"
        if isinstance(day, str):
            day = date.fromisoformat(day[:10])
        return format_date(day, "medium", locale=self.locale)

    def datetime(self, moment: dt.datetime | str | None) -> str:
        if moment is None or moment == "":
            return "–"
        if isinstance(moment, str):
            moment = dt.datetime.fromisoformat(moment)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        local = moment.astimezone(WIB)
        return f"{format_date(local.date(), 'medium', locale=self.locale)} {self._clock(local)} WIB"

    def time(self, moment: dt.datetime | str) -> str:
        if isinstance(moment, str):
            moment = dt.datetime.fromisoformat(moment)
        return f"{self._clock(moment.astimezone(WIB))} WIB"

    def _clock(self, local: dt.datetime) -> str:
        # The 24-hour clock in both languages; Indonesian writes it 10.05.
        return format_time(local, "HH.mm" if self.locale == "id" else "HH:mm", locale=self.locale)


def template_globals(tr: Translator) -> dict[str, Any]:
    """The names templates use: `_()` and `ngettext()` plus the formatters."""
    return {
        "_": tr.gettext,
        "gettext": tr.gettext,
        "ngettext": tr.ngettext,
        "label": tr.label,
        "labels": tr.labels,
        "parameter_name": tr.parameter,
        "item_name": tr.item_name,
        "rupiah": tr.rupiah,
        "rupiah_short": tr.rupiah_short,
        "number": tr.number,
        "decimal": tr.decimal,
        "percent": tr.percent,
        "fmt_date": tr.date,
        "fmt_datetime": tr.datetime,
        "locale": tr.locale,
    }


def every_label() -> Iterable[str]:
    for table in LABELS.values():
        yield from table.values()


# The services' codes in words. Kept here, not imported: services never import each other, and these are
# what people read, not what the services decide with.
LABELS: dict[str, dict[str, str]] = {
    "order_status": {
        "received": N_("Received"),
        "planned": N_("Planned"),
        "accepted": N_("Accepted"),
        "needs_review": N_("Needs review"),
        "cancelled": N_("Cancelled"),
        "rejected": N_("Rejected"),
        "fulfilled": N_("Fulfilled"),
    },
    "stage": {
        "planned": N_("Planned"),
        "reserved": N_("Reserved"),
        "produced": N_("Produced"),
        "passed": N_("Passed"),
        "shipped": N_("Shipped"),
        "delivered": N_("Delivered"),
    },
    "allocation_state": {"planned": N_("Planned"), "reserved": N_("Reserved"), "rejected": N_("Refused")},
    "product_family": {
        "BRAKE_BLOCK_COMPOSITE": N_("Composite brake blocks"),
        "BRAKE_BLOCK_CAST_IRON": N_("Cast-iron brake blocks"),
        "PUMP_PARTS": N_("Pump parts"),
        "MACHINE_PARTS": N_("Machine parts"),
        "SHIP_PARTS": N_("Ship parts"),
        "AUTOMOTIVE_PARTS": N_("Automotive parts"),
        "RAILWAY_PARTS": N_("Railway parts"),
        "HOUSEHOLD_GOODS": N_("Household goods"),
    },
    "membership_status": {"active": N_("Active"), "suspended": N_("Suspended"), "resigned": N_("Resigned")},
    "quality_status": {"good": N_("Good"), "watch": N_("Under watch"), "suspended": N_("Suspended")},
    "lot_status": {"registered": N_("Awaiting results"), "passed": N_("Passed"), "failed": N_("Failed")},
    # The parameters of quality's default sampling specifications, and of its general inspection, by code.
    "test_parameter": {
        "friction_coefficient": N_("Friction coefficient μ (mean)"),
        "density": N_("Density (ASTM D792)"),
        "hardness": N_("Hardness"),
        "compressive_strength": N_("Compressive strength (ASTM D695)"),
        "impact_strength": N_("Impact strength (Charpy)"),
        "back_plate_bond": N_("Back-plate bond / bending"),
        "phosphorus": N_("Phosphorus content"),
        "weight": N_("Weight"),
        "bore_deviation": N_("Bore diameter deviation"),
        "tensile_strength": N_("Tensile strength"),
        "balance": N_("Static balance"),
        "elongation": N_("Elongation"),
        "visual_dimensional": N_("Visual and dimensional inspection against the drawing"),
    },
    "item_state": {"active": N_("Active"), "retired": N_("Retired")},
    "active_state": {"active": N_("Active"), "inactive": N_("Inactive")},
    "unit": {"pcs": N_("pieces"), "set": N_("sets"), "pair": N_("pairs"), "kg": N_("kilograms")},
    "item_term": {
        "name_id": N_("Name in Indonesian"),
        "name_en": N_("Name in English"),
        "product_family": N_("Product family"),
        "unit": N_("Unit"),
        "min_lot": N_("Minimum lot"),
        "required_certificates": N_("Required certificates"),
        "min_tkdn_percent": N_("TKDN minimum"),
        "sampling": N_("Sampling rule"),
    },
    "test_rule": {
        "target": N_("target ± tolerance"),
        "range": N_("range"),
        "minimum": N_("minimum"),
        "maximum": N_("maximum"),
        "pass_fail": N_("pass or fail"),
    },
    "certificate_state": {
        "pending": N_("Not yet valid"),
        "valid": N_("Valid"),
        "expiring": N_("Expiring"),
        "expired": N_("Expired"),
        "revoked": N_("Revoked"),
    },
    "reservation_state": {
        "hold": N_("On hold"),
        "confirmed": N_("Confirmed"),
        "consumed": N_("Made"),
        "released": N_("Released"),
        "expired": N_("Expired"),
        "revoked": N_("Revoked"),
    },
    "shipment_status": {"prepared": N_("Prepared"), "dispatched": N_("Dispatched"), "delivered": N_("Delivered")},
    "capacity_kind": {
        "standard": N_("New standard weekly figure"),
        "exception": N_("Exception over dates"),
        "withdrawal": N_("Withdraw an earlier change"),
    },
    "capacity_reason": {
        "declared": N_("first declaration"),
        "equipment_change": N_("equipment changed"),
        "shift_change": N_("shifts changed"),
        "press_breakdown": N_("press broken"),
        "furnace_breakdown": N_("furnace broken"),
        "power_cut": N_("power cut"),
        "lebaran_closure": N_("Lebaran closure"),
        "public_holiday": N_("public holiday"),
        "material_shortage": N_("material shortage"),
        "repaired": N_("repaired"),
        "correction": N_("correction"),
        "other": N_("other reason"),
    },
    "reject_reason": {
        "insufficient_capacity": N_("not enough free capacity"),
        "unknown_foundry": N_("unknown member"),
        "foundry_not_active": N_("member not active"),
        "family_not_made": N_("product family not made"),
        "week_past": N_("the week is past"),
    },
    "release_reason": {
        "plan_changed": N_("the plan changed"),
        "order_cancelled": N_("the order was cancelled"),
        "order_rejected": N_("the order was rejected"),
        "released_on_request": N_("on request"),
        "hold_not_confirmed": N_("the hold was not confirmed in time"),
    },
    "role": {
        "admin": N_("Administrator"),
        "planner": N_("Planner"),
        "qa_officer": N_("QA officer"),
        "lab": N_("Laboratory"),
        "foundry": N_("Member foundry"),
        "buyer": N_("Buyer"),
    },
    "service": {"orders": N_("Orders service"), "capacity": N_("Capacity service"), "quality": N_("Quality service")},
    "service_status": {"ok": N_("Ready"), "unavailable": N_("Unavailable"), "unreachable": N_("Unreachable")},
}
