"""Orders' business metrics on `/metrics`: plan versions by what caused them, planning time, webhook
deliveries, and (recomputed by the periodic job from the database) orders by status and lines at risk."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .domain import OrderStatus

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
