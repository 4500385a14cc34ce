"""Charts drawn on the server as SVG: the utilisation heat map, a member's capacity calendar, the weekly lot
pass rate. Pure: figures in, markup out; each chart names itself for screen readers and scales to the screen."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from .domain import HeatRow, WeekRate
from .i18n import Translator

# Sequential blues, light to dark; overbooked weeks in red. Text on the darkest keeps 4.5:1 contrast.
SCALE = ("#eef4fb", "#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c")
OVER = "#b2182b"
NONE = "#f2f2f2"


def _shade(utilisation: float | None) -> str:
    if utilisation is None:
        return NONE
    if utilisation > 1.0001:
        return OVER
    return SCALE[min(len(SCALE) - 1, int(utilisation * (len(SCALE) - 1) + 0.5))]


def _svg(width: int, height: int, title: str, body: list[str], desc: str = "") -> Markup:
    ident = f"c{abs(hash((title, width, height))) % 10**8}"
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" role="img" aria-labelledby="{ident}t {ident}d" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}t">{escape(title)}</title><desc id="{ident}d">{escape(desc)}</desc>{"".join(body)}</svg>'
    )


def heat_map(rows: Sequence[HeatRow], weeks: Sequence[str], tr: Translator, title: str) -> Markup:
    """Members down, weeks across; each cell shaded by reserved ÷ capacity, its exact figures in a tooltip."""
    cell_w, cell_h, left, top = 34, 18, 76, 30
    width = left + cell_w * len(weeks) + 4
    height = top + cell_h * len(rows) + 4
    body = [
        f'<text x="{left + i * cell_w + cell_w / 2}" y="{top - 8}" text-anchor="middle" class="tick">{escape(w[5:])}</text>'
        for i, w in enumerate(weeks)
    ]
    for r, row in enumerate(rows):
        y = top + r * cell_h
        body.append(f'<text x="{left - 6}" y="{y + cell_h - 5}" text-anchor="end" class="tick">{escape(row.foundry_code)}</text>')
        for i, share in enumerate(row.utilisation):
            tip = tr.text(
                "%(foundry)s, week %(week)s: %(reserved)s of %(capacity)s units reserved",
                foundry=row.foundry_code,
                week=weeks[i],
                reserved=tr.number(row.reserved[i] if i < len(row.reserved) else 0),
                capacity=tr.number(row.capacity[i] if i < len(row.capacity) else 0),
            )
            body.append(
                f'<rect x="{left + i * cell_w}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{_shade(share)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    desc = tr.text("Share of each member's weekly capacity that is reserved; darker is busier, red is over capacity.")
    return _svg(width, height, title, body, desc)


def heat_legend(tr: Translator) -> Markup:
    steps = [
        (SCALE[0], "0%"),
        (SCALE[2], "40%"),
        (SCALE[4], "80%"),
        (SCALE[5], "100%"),
        (OVER, tr.text("over")),
        (NONE, tr.text("none")),
    ]
    items = "".join(
        f'<li><span class="swatch" style="background:{colour}"></span>{escape(label)}</li>' for colour, label in steps
    )
    return Markup(f'<ul class="legend" aria-label="{escape(tr.text("Legend"))}">{items}</ul>')


def capacity_calendar(
    weeks: Sequence[str], capacity: Sequence[int], reserved: Sequence[int], tr: Translator, title: str
) -> Markup:
    """A member's weeks as bars: capacity (outline) and reserved (filled) units."""
    bar_w, height, left, top, bottom = 22, 170, 48, 12, 34
    peak = max([*capacity, *reserved, 1])
    plot_h = height - top - bottom
    width = left + bar_w * len(weeks) + 8
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}" class="axis"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" class="tick">{escape(tr.number(peak))}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    for i, week in enumerate(weeks):
        x = left + i * bar_w
        cap_h = plot_h * capacity[i] / peak
        res_h = plot_h * reserved[i] / peak
        tip = tr.text(
            "Week %(week)s: capacity %(capacity)s, reserved %(reserved)s units",
            week=week,
            capacity=tr.number(capacity[i]),
            reserved=tr.number(reserved[i]),
        )
        over = reserved[i] > capacity[i]
        body.append(
            f"<g><title>{escape(tip)}</title>"
            f'<rect x="{x + 2}" y="{top + plot_h - cap_h}" width="{bar_w - 4}" height="{cap_h}" class="cap"/>'
            f'<rect x="{x + 5}" y="{top + plot_h - res_h}" width="{bar_w - 10}" height="{res_h}" class="{"over" if over else "res"}"/></g>'
        )
        if i % 2 == 0:
            body.append(
                f'<text x="{x + bar_w / 2}" y="{height - 18}" text-anchor="middle" class="tick">{escape(week[6:])}</text>'
            )
    desc = tr.text("Weekly capacity as outlined bars and reserved units as filled bars.")
    return _svg(width, height, title, body, desc)


def pass_rate_bars(rates: Sequence[WeekRate], tr: Translator, title: str) -> Markup:
    """Thirteen weeks of lot results: the bar's height is the pass rate, its label the lots decided."""
    bar_w, height, left, top, bottom = 30, 140, 40, 10, 30
    plot_h = height - top - bottom
    width = left + bar_w * len(rates) + 6
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}" class="axis"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" class="tick">100%</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" class="tick">0%</text>',
    ]
    for i, rate in enumerate(rates):
        x = left + i * bar_w
        if rate.rate is None:
            tip = tr.text("Week %(week)s: no lots decided", week=rate.week)
            body.append(
                f'<g><title>{escape(tip)}</title><rect x="{x + 4}" y="{top + plot_h - 2}" width="{bar_w - 8}" height="2" class="empty"/></g>'
            )
        else:
            h = plot_h * rate.rate
            tip = tr.text(
                "Week %(week)s: %(passed)s of %(decided)s lots passed", week=rate.week, passed=rate.passed, decided=rate.decided
            )
            body.append(
                f'<g><title>{escape(tip)}</title><rect x="{x + 4}" y="{top + plot_h - h}" width="{bar_w - 8}" height="{h}" '
                f'class="{"res" if rate.rate >= 0.8 else "over"}"/></g>'
            )
        body.append(
            f'<text x="{x + bar_w / 2}" y="{height - 14}" text-anchor="middle" class="tick">{escape(rate.week[6:])}</text>'
        )
    desc = tr.text("Share of lots that passed testing, week by week.")
    return _svg(width, height, title, body, desc)
