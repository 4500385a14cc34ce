"""One chaos run from start to verdict: bring the platform up, play the scenario while the faults strike,
wait until everything settled, check, report. Exit status 0 when every check holds, 1 when one does not,
2 when the run itself could not be carried out.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ceper.postgres import PostgresError
from shared.events import topic_of
from shared.events.registry import SERVICES
from shared.inbox import Subscriptions
from shared.kafka import BrokerError
from shared.service import ServiceSpec
from shared.settings import DOMAIN_SERVICES

from . import checks
from .faults import Injected, Injector
from .plan import FULL, QUICK, Poison, dead_letters_expected, fault_plan, poison_messages
from .platform import Platform, PlatformError
from .receiver import WebhookReceiver
from .scenario import FAMILY, Scenario, ScenarioError, Stopped

REPLICAS = 2
SETUP_SETTLE_S = 120.0
# Checks in the order the report prints them; the first four are the headline.
CHECKS = (
    "lost",
    "applied twice",
    "stuck",
    "webhooks doubled",
    "overbooked",
    "ledger off",
    "quantities off",
    "diverged",
    "webhooks lost",
    "webhooks unsigned",
    "unexpected dead letters",
    "poison not dead-lettered",
    "crashes",
    "not ready",
    "not quiet",
    "scenario errors",
)
SHOWN_PER_CHECK = 8


@dataclass(frozen=True)
class ChaosOptions:
    seed: int = 1
    quick: bool = False
    window_s: float | None = None  # overrides the scale's window
    faults: bool = True  # False: the same scenario on two replicas, nothing broken (a baseline)
    directory: Path | None = None
    keep: bool = False


class Log:
    """One line per event, stamped with the time since the run started; safe from any thread."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            print(f"[{time.monotonic() - self.started:7.1f}s] {message}", flush=True)


def _specs() -> dict[str, ServiceSpec]:
    from services.capacity.app import SPEC as CAPACITY
    from services.orders.app import SPEC as ORDERS
    from services.quality.app import SPEC as QUALITY

    return {"orders": ORDERS, "capacity": CAPACITY, "quality": QUALITY}


def _raise_exit(_signum: int, _frame: Any) -> None:
    raise SystemExit(143)  # unwinds through the finally blocks, so everything started is stopped


def run_chaos(options: ChaosOptions) -> int:
    scale = QUICK if options.quick else FULL
    if options.window_s is not None:
        scale = replace(scale, window_s=options.window_s)
    root = options.directory or Path(tempfile.mkdtemp(prefix="ceper-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    if options.directory is None:
        root.chmod(0o755)  # as root, PostgreSQL runs as the `postgres` user, who must reach its data directory
    (root / "logs").mkdir(exist_ok=True)
    library_log = _libraries_log_to(root / "logs" / "chaos.log")
    log = Log()
    faults = "with faults" if options.faults else "without faults (baseline)"
    log(f"ceper chaos: seed {options.seed}, {scale.name} run, {scale.window_s:g} s of traffic {faults}; run directory {root}")
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    platform = Platform(root, REPLICAS, log)
    receiver = WebhookReceiver()
    scenario: Scenario | None = None
    passed = False
    try:
        platform.start()
        receiver.start()
        specs = _specs()
        urls = {service: platform.urls(service) for service in DOMAIN_SERVICES}
        scenario = Scenario(options.seed, scale, urls, receiver.url, log, platform.admin())
        scenario.setup(settle=lambda: _settle(platform, specs, log))
        receiver.secrets = list(scenario.secrets.values())
        log(
            f"scenario ready: {len(scenario.members)} members with capacity and certificates, webhooks of "
            f"{', '.join(scenario.secrets)} at {receiver.url}; {len(scenario.timeline)} steps over {scale.window_s:g} s"
        )
        steps = fault_plan(options.seed, scale, [r.name for r in platform.replicas]) if options.faults else []
        poison = poison_messages(options.seed, scale.poison, [m.code for m in scenario.members]) if options.faults else []
        player = threading.Thread(target=_play, args=(scenario, log), name="chaos-scenario", daemon=True)
        player.start()
        injected = Injector(platform, receiver, poison, log).run(steps, scale.window_s)
        player.join(timeout=max(60.0, scale.window_s * 0.5))
        if player.is_alive():
            log("scenario still running long after the window: stopping it")
            scenario.stop.set()
            player.join(60)
        log(f"traffic and faults done: {injected.describe()}")
        if not receiver.up:
            receiver.start()
        platform.ensure_running()
        verdict, figures = _check(platform, specs, scenario, receiver, poison, injected, scale.quiet_timeout_s, log)
        passed = all(verdict.counts.get(check, 0) == 0 for check in CHECKS)
        _report(verdict, figures, injected, scenario, platform, passed, log)
        return 0 if passed else 1
    except (PlatformError, BrokerError, PostgresError, ScenarioError, Stopped) as exc:
        log(f"the chaos run could not be carried out: {type(exc).__name__}: {exc}")
        log(f"logs are in {root}")
        return 2
    finally:
        if scenario is not None:
            scenario.close()
        receiver.stop()
        platform.close()
        signal.signal(signal.SIGTERM, previous)
        logging.getLogger().removeHandler(library_log)
        library_log.close()
        if passed and not options.keep and options.directory is None:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"run directory kept: {root} (service logs in {root / 'logs'})", flush=True)


def _libraries_log_to(path: Path) -> logging.Handler:
    """The clients' own warnings (aiokafka retrying while the broker is away, say) go to a file, not the terminal."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    return handler


def _play(scenario: Scenario, log: Log) -> None:
    try:
        scenario.play()
    except Exception as exc:  # noted in the report as a scenario error; the faults go on without traffic
        scenario.tally.errors.append(f"the scenario stopped: {type(exc).__name__}: {exc}")
        log(f"scenario stopped: {type(exc).__name__}: {exc}")


def _settle(platform: Platform, specs: Mapping[str, ServiceSpec], log: Log) -> None:
    async def settle() -> tuple[checks.Quiet, float | None]:
        async with _probe(platform, specs) as probe:
            return await checks.wait_quiet(probe, SETUP_SETTLE_S, platform.supervise)

    state, took = asyncio.run(settle())
    if took is None:
        raise ScenarioError(f"the setup did not settle within {SETUP_SETTLE_S:g} s: {state.describe()}")


def _probe(platform: Platform, specs: Mapping[str, ServiceSpec]) -> checks.Probe:
    from services.orders.store import webhook_deliveries

    topics = {s: _subscriptions(spec).topics for s, spec in specs.items()}
    backbones = {s: spec.backbone for s, spec in specs.items() if spec.backbone is not None}
    return checks.Probe(platform.settings, topics, backbones, webhook_deliveries)


def _subscriptions(spec: ServiceSpec) -> Subscriptions:
    assert spec.subscriptions is not None
    return spec.subscriptions


# --- checking -----------------------------------------------------------------------------------------------------


@dataclass
class Observed:
    quiet: checks.Quiet
    quiet_after_s: float | None
    records: list[checks.TopicRecord]
    applied: dict[str, set[str]]
    inbox_repeats: dict[str, int]
    reservations: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    consumptions: list[dict[str, Any]]
    deliveries: list[checks.Delivery]
    letters: dict[str, list[Any]]


async def _observe(platform: Platform, specs: Mapping[str, ServiceSpec], timeout: float, log: Log) -> Observed:
    from services.capacity import store as capacity
    from services.orders import store as orders

    async with _probe(platform, specs) as probe:
        log(f"waiting up to {timeout:g} s for the platform to settle (outboxes empty, no lag, no webhook pending)")
        quiet, took = await checks.wait_quiet(probe, timeout, platform.supervise)
        if took is None:
            log(f"not settled after {timeout:g} s: {quiet.describe()}")
        else:
            log(f"settled after {took:.1f} s")
        records = await probe.topic_records([platform.settings.topic(topic_of(s)) for s in SERVICES])
        applied: dict[str, set[str]] = {}
        repeats: dict[str, int] = {}
        for service in specs:
            applied[service], repeats[service] = await probe.inbox(service)
        reservations = [dict(r._mapping) for r in await probe.rows("capacity", sa.select(capacity.reservations))]
        ledger = [dict(r._mapping) for r in await probe.rows("capacity", sa.select(capacity.capacity_ledger))]
        consumptions = [dict(r._mapping) for r in await probe.rows("capacity", sa.select(capacity.lot_consumptions))]
        table = orders.webhook_deliveries
        deliveries = [
            checks.Delivery(r.id, r.event_type, r.status, r.attempts)
            for r in await probe.rows("orders", sa.select(table.c.id, table.c.event_type, table.c.status, table.c.attempts))
        ]
        letters = {service: list(await probe.dead_letters(service)) for service in specs}
    return Observed(quiet, took, records, applied, repeats, reservations, ledger, consumptions, deliveries, letters)


def _check(
    platform: Platform,
    specs: Mapping[str, ServiceSpec],
    scenario: Scenario,
    receiver: WebhookReceiver,
    poison: list[Poison],
    injected: Injected,
    timeout: float,
    log: Log,
) -> tuple[checks.Verdict, dict[str, Any]]:
    verdict = checks.Verdict()
    verdict.zero(*CHECKS)
    not_ready = platform.wait_ready(60)
    seen = asyncio.run(_observe(platform, specs, timeout, log))
    for name, problem in sorted(not_ready.items()):
        verdict.add("not ready", f"{name}: {problem}")
    if seen.quiet_after_s is None:
        verdict.add("not quiet", seen.quiet.describe())

    # Every event a group handles has its inbox row: applied (exactly once, by the inbox's key), not lost.
    subscriptions = {s: _subscriptions(spec) for s, spec in specs.items()}
    topics_of = {s: {platform.settings.topic(t) for t in sub.topics} for s, sub in subscriptions.items()}
    poison_origins = set(injected.poison.values())
    handled = {
        s: (
            lambda r, s=s: r.topic in topics_of[s] and r.event_type is not None and subscriptions[s].get(r.event_type) is not None
        )
        for s in subscriptions
    }
    for service, records in checks.lost_events(seen.records, poison_origins, handled, seen.applied).items():
        for record in records:
            verdict.add(
                "lost",
                f"{service} never applied {record.event_type} {record.event_id} ({record.topic}/{record.partition}/{record.offset})",
            )
    for service, repeats in seen.inbox_repeats.items():
        for _ in range(repeats):
            verdict.add("applied twice", f"{service}: an event id recorded twice in its inbox")
    for allocation in checks.reserved_twice(seen.reservations):
        verdict.add("applied twice", f"capacity holds two open reservations for allocation {allocation}")
    lot_units = {code: lot.quantity for code, lot in scenario.lots.items()}
    for lot in checks.lots_counted_twice(seen.consumptions, lot_units):
        verdict.add("applied twice", f"capacity counted lot {lot}")

    # Capacity: no foundry-week holds more than it can make; the ledger agrees with the reservations.
    over, ledger_off = checks.overbooked(seen.reservations, seen.ledger, _capacity_of(scenario, seen.reservations))
    for line in over:
        verdict.add("overbooked", line)
    for line in ledger_off:
        verdict.add("ledger off", line)

    # Orders: each where its events lead, its quantities adding up, in step with capacity.
    statuses: dict[str, int] = {}
    for n, order_id in sorted(scenario.order_ids.items()):
        order = scenario.reader["orders"].request("GET", f"/v1/purchase-orders/{order_id}").json()
        statuses[order["status"]] = statuses.get(order["status"], 0) + 1
        held = [r for r in seen.reservations if r["order_id"] == order_id]
        stuck, off, diverged = checks.order_problems(order, held)
        for line in stuck:
            verdict.add("stuck", line)
        for line in off:
            verdict.add("quantities off", line)
        for line in diverged:
            verdict.add("diverged", line)
        if scenario.orders[n].small and order["status"] != "fulfilled":
            log(f"note: small order {order['po_number']} ended {order['status']}, not fulfilled (the run was too short for it)")

    # Webhooks: each message accepted once, none lost, all signed.
    for check, lines in checks.webhook_problems(receiver.receipts, seen.deliveries).items():
        for line in lines:
            verdict.add(check, line)

    # Dead letters: exactly the poison, at every consumer that reads it.
    expected_by_index = dead_letters_expected(poison, subscriptions)
    by_index = {p.index: p for p in poison}
    expected = {
        service: {injected.poison[i]: by_index[i].what for i in indices if i in injected.poison}
        for service, indices in expected_by_index.items()
    }
    unexpected, missing, repeated = checks.dead_letter_problems(seen.letters, expected)
    for line in unexpected:
        verdict.add("unexpected dead letters", line)
    for line in missing:
        verdict.add("poison not dead-lettered", line)

    for exit_ in platform.exits:
        if exit_.excused is None:
            verdict.add("crashes", f"{exit_.replica} exited by itself (code {exit_.code}) at {exit_.at_s:.1f} s")
    for error in scenario.tally.errors:
        verdict.add("scenario errors", error)

    figures = {
        "events": len({(r.topic, r.event_id) for r in seen.records if r.event_id}),
        "published twice": checks.published_twice(seen.records),
        "applied": {s: len(ids) for s, ids in seen.applied.items()},
        "orders": statuses,
        "reservations": len(seen.reservations),
        "webhooks": len(seen.deliveries),
        "webhook attempts": len(receiver.receipts),
        "dead letters": {s: len(letters) for s, letters in seen.letters.items()},
        "dead letters repeated": repeated,
        "excused exits": sum(1 for e in platform.exits if e.excused is not None),
        "settled after": seen.quiet_after_s,
    }
    return verdict, figures


def _capacity_of(scenario: Scenario, reservations: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Each foundry-week's capacity as capacity's availability shows it, over the weeks reserved."""
    weeks = sorted({r["week"] for r in reservations if r["product_family"] == FAMILY})
    if not weeks:
        return {}
    found = (
        scenario.reader["capacity"]
        .request("GET", "/v1/availability", params={"product_family": FAMILY, "from": weeks[0], "to": weeks[-1]})
        .json()
    )
    return {
        (row["foundry_code"], week): units
        for row in found["foundries"]
        for week, units in zip(found["weeks"], row["capacity"], strict=True)
    }


def _report(
    verdict: checks.Verdict,
    figures: dict[str, Any],
    injected: Injected,
    scenario: Scenario,
    platform: Platform,
    passed: bool,
    log: Log,
) -> None:
    for check in CHECKS:
        for line in verdict.details.get(check, [])[:SHOWN_PER_CHECK]:
            print(f"  {check}: {line}", flush=True)
        more = len(verdict.details.get(check, [])) - SHOWN_PER_CHECK
        if more > 0:
            print(f"  {check}: … and {more} more", flush=True)
    tally = scenario.tally
    done = ", ".join(f"{kind} {count}" for kind, count in sorted(tally.done.items()))
    skipped = ", ".join(f"{kind} {count}" for kind, count in sorted(tally.skipped.items())) or "none"
    calls = scenario.calls
    applied = ", ".join(f"{service} {count}" for service, count in figures["applied"].items())
    statuses = ", ".join(f"{status} {count}" for status, count in sorted(figures["orders"].items()))
    letters = ", ".join(f"{service} {count}" for service, count in figures["dead letters"].items())
    settled = figures["settled after"]
    lines = [
        f"faults injected: {injected.describe()}" + (f"; left out: {', '.join(injected.missed)}" if injected.missed else ""),
        f"replicas: {sum(r.starts for r in platform.replicas)} starts of {len(platform.replicas)} processes, "
        f"{len(platform.exits)} exits by themselves ({figures['excused exits']} while the database or broker was down)",
        f"scenario: {done}; skipped {skipped}; {tally.revocations} reservations revoked by capacity changes; "
        f"{calls.requests} requests, {calls.failovers} failed over to the other replica, {calls.server_errors} answered 5xx and retried",
        f"events: {figures['events']} on the topics ({figures['published twice']} published more than once); "
        f"applied by orders, capacity, quality: {applied}",
        f"orders: {statuses}; {figures['reservations']} reservations; {figures['webhooks']} webhooks, "
        f"{figures['webhook attempts']} attempts reached the receiver; dead letters {letters} "
        f"({figures['dead letters repeated']} repeated); settled {'after ' + format(settled, '.1f') + ' s' if settled is not None else 'never'}",
    ]
    for line in lines:
        print(line, flush=True)
    counts = verdict.counts
    print(", ".join(f"{check} {counts.get(check, 0)}" for check in CHECKS), flush=True)
    log(f"chaos {'PASSED' if passed else 'FAILED'} (seed {scenario.seed}, {date.today().isoformat()})")
    sys.stdout.flush()
