"""Orders' business metrics on `/metrics`: plan versions by what caused them, planning time, webhook
deliveries, and (recomputed by the periodic job from the database, so every replica reports the same) orders by
status, lines at risk, the open order value, units by stage and the on-time delivery rate per buyer."""

from __future__ import annotations

from collections import Counter as Tally
from datetime import date, timedelta

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from . import store
from .domain import OrderStatus, ShipmentStatus

PLANS = Counter("ceper_orders_plans", "Plan versions made, by what caused them", ["trigger"])
PLANNING = Histogram(
    "ceper_orders_planning_seconds",
    "Time to plan one order line, by the solver whose plan was kept",
    ["solver"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
WEBHOOKS = Counter(
    "ceper_orders_webhook_deliveries",
    "Webhook delivery attempts, by event type and outcome (delivered, retry, failed)",
    ["event_type", "outcome"],
)
ORDERS = Gauge("ceper_orders_purchase_orders", "Purchase orders by status", ["status"])
AT_RISK = Gauge("ceper_orders_lines_at_risk", "Order lines of open orders the plan in force cannot finish in time")
LATE_UNITS = Gauge("ceper_orders_late_units", "Units of open orders the plan in force cannot finish in time")
OPEN_VALUE = Gauge(
    "ceper_orders_open_value_rupiah",
    "Value of the units of open orders the buyer has not received yet, in whole rupiah",
    ["buyer"],
)
UNITS = Gauge("ceper_orders_units", "Units of open orders by stage, counted as a line's progress counts them", ["stage"])
ON_TIME = Gauge(
    "ceper_orders_on_time_delivery_ratio",
    "Share of the units a buyer received in the last 90 days that were handed over by their due date",
    ["buyer"],
)

STAGES = ("ordered", "planned", "reserved", "produced", "passed", "failed", "loading", "shipped", "delivered", "rejected")
ON_TIME_WINDOW = timedelta(days=90)


def planned(trigger: str) -> None:
    PLANS.labels(trigger).inc()


def line_planned(solver: str, seconds: float) -> None:
    PLANNING.labels(solver).observe(seconds)


def webhook_attempted(event_type: str, outcome: str) -> None:
    WEBHOOKS.labels(event_type, outcome).inc()


def set_orders(by_status: dict[str, int], lines_at_risk: int, late_units: int) -> None:
    for status in OrderStatus:
        ORDERS.labels(status.value).set(by_status.get(status.value, 0))
    AT_RISK.set(lines_at_risk)
    LATE_UNITS.set(late_units)


async def refresh_business(session: AsyncSession, today: date) -> None:
    """Recomputes the open order value, units by stage and on-time delivery from the database."""
    received = await store.received_units_of_open_orders(session)
    open_value = dict.fromkeys(await store.buyers_with_orders(session), 0)
    ordered = 0
    for order_id, buyer, lines in await store.open_order_lines(session):
        for line in lines:
            ordered += line["quantity"]
            still_to_receive = max(0, line["quantity"] - received.get((order_id, line["line_no"]), 0))
            open_value[buyer] = open_value.get(buyer, 0) + still_to_receive * line["unit_price"]
    allocated = await store.allocated_units_of_open_orders(session)
    lots = await store.lot_units_of_open_orders(session)
    shipped = await store.shipped_units_of_open_orders(session)
    units = {
        "ordered": ordered,
        "planned": sum(quantity for state, quantity in allocated.items() if state != "rejected"),
        "reserved": allocated.get("reserved", 0),
        "produced": sum(lots.values()),
        "passed": lots.get("passed", 0),
        "failed": lots.get("failed", 0),
        "loading": shipped.get(ShipmentStatus.PREPARED.value, (0, 0, 0))[0],
        "shipped": sum(quantity for status, (quantity, _, _) in shipped.items() if status != ShipmentStatus.PREPARED.value),
        "delivered": sum(delivered for _, delivered, _ in shipped.values()),
        "rejected": sum(rejected for _, _, rejected in shipped.values()),
    }
    handed_over, on_time = Tally[str](), Tally[str]()
    for buyer, due_date, handover_day, count in await store.handovers_since(session, today - ON_TIME_WINDOW):
        handed_over[buyer] += count
        if handover_day <= due_date:
            on_time[buyer] += count
    OPEN_VALUE.clear()  # buyers are known from their orders; none is left with a stale figure
    for buyer, value in open_value.items():
        OPEN_VALUE.labels(buyer).set(value)
    for stage in STAGES:
        UNITS.labels(stage).set(units[stage])
    ON_TIME.clear()  # a buyer with no handover in the window has no rate, rather than an old one
    for buyer, count in handed_over.items():
        ON_TIME.labels(buyer).set(on_time[buyer] / count)
