"""Latency of capacity's availability query for the whole cooperative: 170 foundries × 52 weeks.

Starts its own Kafka broker and PostgreSQL server in temporary directories (reusing `backbone.py`'s), runs the
real capacity service under uvicorn in a process of its own for each database, loads a demo cooperative (every
member making cast-iron brake blocks, with Lebaran closures, breakdowns and a few thousand reservations), then
times `GET /v1/availability` over HTTP one request after another. Baselines from the same run: the bare SQL the
query cannot avoid (the family's calendar changes and the ledger rows of the range, fetched with the same
driver) and the service's cheapest HTTP answer (`/healthz`). The service keeps a family's calendars between
requests while their version stands, so requests right after a capacity change (which must read them again)
are timed separately. Prints a table and, last, one JSON line.

    .venv/bin/python bench/capacity.py                    # both databases, 500 timed requests each
    .venv/bin/python bench/capacity.py --backend sqlite --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/capacity.py` puts bench/ on the path, not the repository

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from backbone import STAFF, BenchError, LocalPostgres, exit_on_sigterm, issuer_env, log, percentile, start_kafka  # noqa: E402

from ceper.broker import LocalKafka, free_port  # noqa: E402
from ceper.demo import demo_foundries  # noqa: E402
from ceper.demo.capacity import seed_capacity  # noqa: E402
from services.capacity import store  # noqa: E402
from shared.db import create_engine  # noqa: E402
from shared.kafka import BrokerError  # noqa: E402
from shared.weeks import add_weeks, iso_week  # noqa: E402

BACKENDS = ("sqlite", "postgresql")
FAMILY = "BRAKE_BLOCK_CAST_IRON"
TARGET_P99_MS = 50.0


@dataclass(frozen=True)
class Member:
    code: str
    name: str
    village: str
    product_families: list[str] = field(default_factory=list)


def members(count: int, seed: int) -> list[Member]:
    """The demo cooperative, every member also casting iron brake blocks, so one answer covers all of them."""
    return [Member(f.code, f.name, f.village, sorted(set(f.product_families) | {FAMILY})) for f in demo_foundries(seed, count)]


@dataclass
class Timings:
    samples_ms: list[float]

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples_ms)
        return {
            "p50_ms": round(percentile(ordered, 0.50), 2),
            "p99_ms": round(percentile(ordered, 0.99), 2),
            "max_ms": round(ordered[-1], 2),
            "mean_ms": round(sum(ordered) / len(ordered), 2),
        }


class Service:
    """The capacity service under uvicorn, as production runs it (one process, its own database)."""

    def __init__(self, root: Path, database_url: str, kafka: LocalKafka) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"capacity-{self.port}.log"
        self.env = {
            **os.environ,
            "CEPER_ENV": "dev",
            "CEPER_VAR_DIR": str(root / "var"),
            "CEPER_CAPACITY_DATABASE_URL": database_url,
            "CEPER_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "CEPER_KAFKA_TOPIC_PREFIX": f"b{uuid.uuid4().hex[:8]}.",
            "CEPER_LOG_LEVEL": "WARNING",
            **issuer_env(),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        command = [sys.executable, "-m", "uvicorn", "--factory", "services.capacity.app:create_app", "--port", str(self.port),
                   "--log-level", "warning", "--no-access-log"]  # fmt: skip
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise BenchError(f"the capacity service did not start; see {self.log_path}")
            time.sleep(0.2)

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


async def hold_capacity(url: str, weeks: list[str], count: int, foundries: int, seed: int) -> int:
    """Holds across the year, eight requests at a time, as planners and buyers would make them."""
    rng = random.Random(seed)
    asks = [
        {
            "foundry_code": f"IKM-{rng.randint(1, foundries):03d}",
            "product_family": FAMILY,
            "week": rng.choice(weeks),
            "quantity": rng.randint(5, 120),
        }
        for _ in range(count)
    ]
    granted = 0
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for ask in asks:
        queue.put_nowait(ask)
    async with httpx.AsyncClient(auth=STAFF, base_url=url, timeout=30) as client:

        async def worker() -> None:
            nonlocal granted
            while not queue.empty():
                answer = await client.post("/v1/reservations", json=queue.get_nowait())
                if answer.status_code == 201:
                    granted += 1
                elif answer.status_code != 409:
                    raise BenchError(f"holding capacity failed: {answer.status_code} {answer.text}")

        await asyncio.gather(*(worker() for _ in range(8)))
    return granted


def time_http(client: httpx.Client, path: str, params: dict[str, str], requests: int, warmup: int) -> tuple[Timings, int]:
    size = 0
    samples = []
    for i in range(warmup + requests):
        started = time.perf_counter()
        answer = client.get(path, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            raise BenchError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
        size = len(answer.content)
        if i >= warmup:
            samples.append(elapsed)
    return Timings(samples), size


def time_after_changes(client: httpx.Client, params: dict[str, str], requests: int, far_week: str) -> Timings:
    """Availability right after a capacity change, when the service must read the family's calendars again."""
    samples = []
    for i in range(requests):
        change = {
            "kind": "standard",
            "product_family": FAMILY,
            "weekly_units": 100 + i,
            "from_week": far_week,
            "reason": "correction",
        }
        recorded = client.post("/v1/foundries/IKM-001/capacity-changes", json=change)
        if recorded.status_code != 201:
            raise BenchError(f"recording a capacity change failed: {recorded.status_code} {recorded.text[:300]}")
        started = time.perf_counter()
        answer = client.get("/v1/availability", params=params)
        samples.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise BenchError(f"availability answered {answer.status_code}: {answer.text[:300]}")
    return Timings(samples)


async def time_bare_sql(database_url: str, first: str, last: str, requests: int, warmup: int) -> Timings:
    """The reads the answer cannot do without, with the same driver: the family's calendar changes and the
    reserved units of the range."""
    engine = create_engine(database_url)
    changes = sa.select(store.capacity_changes).where(store.capacity_changes.c.product_family == FAMILY)
    ledger = sa.select(
        store.capacity_ledger.c.foundry_code, store.capacity_ledger.c.week, store.capacity_ledger.c.reserved
    ).where(
        store.capacity_ledger.c.product_family == FAMILY,
        store.capacity_ledger.c.week >= first,
        store.capacity_ledger.c.week <= last,
    )
    samples = []
    try:
        for i in range(warmup + requests):
            started = time.perf_counter()
            async with engine.connect() as conn:
                (await conn.execute(changes)).all()
                (await conn.execute(ledger)).all()
                await conn.rollback()
            if i >= warmup:
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        await engine.dispose()
    return Timings(samples)


def measure(
    args: argparse.Namespace, root: Path, kafka: LocalKafka, postgres: LocalPostgres | None, backend: str
) -> dict[str, Any]:
    if backend == "sqlite":
        database_url = f"sqlite+aiosqlite:///{root / 'capacity-bench.db'}"
    else:
        assert postgres is not None
        asyncio.run(postgres.admin('CREATE DATABASE "capacity_bench"'))
        database_url = postgres.url("capacity_bench")
    first = iso_week(date.today())
    last = add_weeks(first, args.weeks - 1)
    weeks = [add_weeks(first, i) for i in range(args.weeks)]
    with Service(root, database_url, kafka) as service:
        log(f"{backend}: loading {args.foundries} members, their calendars and {args.holds} holds …")
        started = time.perf_counter()
        with httpx.Client(auth=STAFF, timeout=60) as client:
            seeded = seed_capacity(client, service.url, members(args.foundries, args.seed), args.seed)
        granted = asyncio.run(hold_capacity(service.url, weeks, args.holds, args.foundries, args.seed))
        log(f"{backend}: {seeded} {granted} holds granted ({time.perf_counter() - started:.0f} s)")

        params = {"product_family": FAMILY, "from": first, "to": last}
        with httpx.Client(auth=STAFF, base_url=service.url, timeout=30) as client:
            probe = client.get("/v1/availability", params=params).json()
            if len(probe["foundries"]) != args.foundries or len(probe["weeks"]) != args.weeks:
                raise BenchError(
                    f"expected {args.foundries} foundries × {args.weeks} weeks, got {len(probe['foundries'])} × {len(probe['weeks'])}"
                )
            log(f"{backend}: timing {args.requests} availability requests …")
            ours, size = time_http(client, "/v1/availability", params, args.requests, args.warmup)
            log(f"{backend}: timing {args.after_changes} availability requests, each right after a capacity change …")
            after_change = time_after_changes(client, params, args.after_changes, add_weeks(last, 10))
            floor, _ = time_http(client, "/healthz", {}, args.requests, args.warmup)
    bare = asyncio.run(time_bare_sql(database_url, first, last, args.requests, args.warmup))
    figures = {
        "availability": ours.summary(),
        "availability_after_change": after_change.summary(),
        "bare_sql": bare.summary(),
        "http_floor": floor.summary(),
    }
    p50 = figures["availability"]["p50_ms"]
    return {
        **figures,
        "ratio_to_bare_sql": round(p50 / figures["bare_sql"]["p50_ms"], 2),
        "ratio_to_http_floor": round(p50 / figures["http_floor"]["p50_ms"], 2),
        "response_bytes": size,
        "holds_granted": granted,
        "weeks": [first, last],
    }


def report(args: argparse.Namespace, figures: dict[str, dict[str, Any]]) -> None:
    print(
        f"availability of {FAMILY} for {args.foundries} foundries × {args.weeks} weeks, {args.requests} requests one after another"
    )
    print(
        f"{'backend':<12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'after change p50':>18}{'p99':>8}"
        f"{'bare SQL p50':>14}{'ratio':>8}{'HTTP floor p50':>16}{'ratio':>8}{'bytes':>9}"
    )
    for backend, f in figures.items():
        a, c = f["availability"], f["availability_after_change"]
        print(
            f"{backend:<12}{a['p50_ms']:>9.2f}{a['p99_ms']:>9.2f}{a['max_ms']:>9.2f}{c['p50_ms']:>18.2f}{c['p99_ms']:>8.2f}"
            f"{f['bare_sql']['p50_ms']:>14.2f}{f['ratio_to_bare_sql']:>8.2f}{f['http_floor']['p50_ms']:>16.2f}"
            f"{f['ratio_to_http_floor']:>8.2f}{f['response_bytes']:>9}"
        )
    targets = {}
    for backend, f in figures.items():
        targets[f"{backend}_p99_at_most_{TARGET_P99_MS:g}_ms"] = f["availability"]["p99_ms"] <= TARGET_P99_MS
        targets[f"{backend}_after_change_p99_at_most_{TARGET_P99_MS:g}_ms"] = (
            f["availability_after_change"]["p99_ms"] <= TARGET_P99_MS
        )
    print("targets: " + ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in targets.items()))
    summary = {
        "benchmark": "capacity_availability",
        "product_family": FAMILY,
        "foundries": args.foundries,
        "weeks": args.weeks,
        "requests": args.requests,
        "backends": figures,
        "targets": {**targets, "all_met": all(targets.values())},
        "machine": {"cores": os.cpu_count()},
    }
    print(json.dumps(summary, separators=(",", ":")))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per backend (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first (default 50)")
    parser.add_argument("--foundries", type=int, default=170)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--holds", type=int, default=3000, help="reservations held across the year before timing (default 3000)")
    parser.add_argument(
        "--after-changes", type=int, default=100, help="requests timed right after a capacity change (default 100)"
    )
    parser.add_argument("--seed", type=int, default=1995)
    args = parser.parse_args(argv)
    if (
        min(args.requests, args.foundries, args.weeks, args.after_changes) < 1
        or args.warmup < 0
        or args.holds < 0
        or args.foundries > 999
        or args.weeks > 104
    ):
        parser.error(
            "--requests, --foundries (at most 999) and --weeks (at most 104) must be positive; --warmup and --holds not negative"
        )
    args.backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="ceper-bench-capacity-"))
    kafka = postgres = None
    try:
        log("starting Kafka …")
        kafka = start_kafka(root)
        if "postgresql" in args.backends:
            log("starting PostgreSQL …")
            postgres = LocalPostgres()
            postgres.start()
        figures = {backend: measure(args, root, kafka, postgres, backend) for backend in args.backends}
    except (BenchError, BrokerError) as exc:
        log(f"benchmark failed: {exc}")
        return 1
    finally:
        if postgres is not None:
            postgres.stop()
        if kafka is not None:
            kafka.stop()
        shutil.rmtree(root, ignore_errors=True)
    report(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
