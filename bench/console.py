"""How long the console takes to render each page for the demo cooperative, against the API calls the page needs.

Starts its own Kafka broker (reusing `backbone.py`'s), runs the four services under uvicorn as processes on
SQLite, loads the demo cooperative (168 members, the 120,000-unit KAI order planned and reserved, lots,
certificates, a shipment), then for each page times, one after another and interleaved so both see the same
machine: the console's whole page over HTTP, and the same API calls the page makes (fetched directly, at once,
as the console does). The difference is the console's own cost: composing, rendering, the extra hop. Prints a
table and, last, one JSON line.

    .venv/bin/python bench/console.py                  # 200 timed requests per page
    .venv/bin/python bench/console.py --requests 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/console.py` puts bench/ on the path, not the repository

import httpx  # noqa: E402
from backbone import BenchError, exit_on_sigterm, log, percentile, start_kafka  # noqa: E402

from ceper.access import SignedIn  # noqa: E402
from ceper.broker import free_port  # noqa: E402
from ceper.demo import seed_demo  # noqa: E402

TARGET_P99_MS = 300.0
SERVICES = ("identity", "orders", "capacity", "quality", "console")
PLANNER, PASSWORD = "bench.planner", "bench-console-sign-in"  # the person the pages are rendered for
ADMIN = "bench.admin"  # loads the demo and reads what the pages need


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def start_services(var: Path, bootstrap: str) -> tuple[dict[str, str], list[subprocess.Popen[bytes]]]:
    ports = {name: free_port() for name in SERVICES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        **os.environ,
        "CEPER_ENV": "test",
        "CEPER_VAR_DIR": str(var),
        "CEPER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CEPER_KAFKA_TOPIC_PREFIX": f"b{uuid.uuid4().hex[:8]}.",
        "CEPER_LOG_LEVEL": "WARNING",
        **{f"CEPER_{name.upper()}_URL": url for name, url in urls.items()},
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "ceper", "serve", name, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=(var / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for name, port in ports.items()
    ]
    deadline = time.monotonic() + 180
    with httpx.Client(timeout=3) as client:
        for name, url in urls.items():
            while True:
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise BenchError(f"{name} did not become ready; see {var}/{name}.log")
                time.sleep(0.3)
    for username, role in ((PLANNER, "planner"), (ADMIN, "admin")):
        person = subprocess.run(
            [sys.executable, "-m", "ceper", "users", "add", username, "--role", role],
            input=f"{PASSWORD}\n", cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if person.returncode != 0:
            raise BenchError(f"the bench's {role} could not be made: {person.stderr.strip()}")
    return urls, processes


async def sign_in(client: httpx.AsyncClient, urls: dict[str, str]) -> None:
    """Signs the client in to the console as the bench's planner (the session cookie stays in the client), and
    gives it the same person's token for the direct API calls, so both sides are read as one person."""
    console = urls["console"]
    login = await client.get(f"{console}/login")
    csrf = re.search(r'name="csrftoken" value="([^"]+)"', login.text)
    form = {"csrftoken": csrf.group(1) if csrf else "", "username": PLANNER, "password": PASSWORD, "next": "/"}
    if (await client.post(f"{console}/login", data=form)).status_code != 303:
        raise BenchError("the bench's planner could not sign in to the console")
    answer = await client.post(f"{urls['identity']}/v1/sessions", json={"username": PLANNER, "password": PASSWORD})
    client.headers["authorization"] = f"Bearer {answer.json()['access_token']}"


def staff(urls: dict[str, str]) -> SignedIn:
    """The bench's admin, signed in at identity: the services trust identity's tokens."""
    return SignedIn(urls["identity"], ADMIN, PASSWORD)


def wait_for_the_kai_order(urls: dict[str, str]) -> dict[str, Any]:
    with httpx.Client(auth=staff(urls), timeout=30) as client:
        orders = client.get(f"{urls['orders']}/v1/purchase-orders").json()["items"]
        kai = next(o for o in orders if o["buyer_code"] == "KAI")
        deadline = time.monotonic() + 300
        while (order := client.get(f"{urls['orders']}/v1/purchase-orders/{kai['id']}").json())["status"] != "accepted":
            if time.monotonic() > deadline:
                raise BenchError(f"the KAI order was not accepted: {order['status']}")
            time.sleep(1)
        return order  # type: ignore[no-any-return]


Calls = Callable[[httpx.AsyncClient], Awaitable[Any]]


def pages(urls: dict[str, str], kai: dict[str, Any], member: str, lot: str, shipment: str) -> dict[str, tuple[str, Calls]]:
    """Each page, and the API calls it makes (as `handlers.py` makes them)."""
    orders, capacity, quality = urls["orders"], urls["capacity"], urls["quality"]
    week = iso_week(date.today())
    last = iso_week(date.today() + timedelta(weeks=11))

    async def dashboard(c: httpx.AsyncClient) -> Any:
        async def open_orders() -> Any:
            listed = (await c.get(f"{orders}/v1/purchase-orders", params={"limit": 200})).json()["items"]
            return await asyncio.gather(*(c.get(f"{orders}/v1/purchase-orders/{o['id']}") for o in listed))

        return await asyncio.gather(
            open_orders(),
            c.get(f"{capacity}/v1/availability", params={"product_family": "BRAKE_BLOCK_COMPOSITE", "from": week, "to": last}),
            c.get(f"{quality}/v1/lots", params={"limit": 500}),
            c.get(f"{quality}/v1/certificates", params={"state": "expiring"}),
        )

    async def order(c: httpx.AsyncClient) -> Any:
        return await asyncio.gather(
            c.get(f"{orders}/v1/purchase-orders/{kai['id']}"),
            c.get(f"{quality}/v1/lots", params={"order_id": kai["id"], "limit": 500}),
            c.get(f"{orders}/v1/purchase-orders/{kai['id']}/shipments"),
            c.get(f"{orders}/v1/purchase-orders/{kai['id']}/plans"),
        )

    async def order_list(c: httpx.AsyncClient) -> Any:
        return await c.get(f"{orders}/v1/purchase-orders", params={"limit": 25})

    async def members(c: httpx.AsyncClient) -> Any:
        return await asyncio.gather(
            c.get(f"{capacity}/v1/foundries", params={"limit": 500}), c.get(f"{quality}/v1/quality-status")
        )

    async def member_page(c: httpx.AsyncClient) -> Any:
        found = (await c.get(f"{capacity}/v1/foundries/{member}")).json()
        return await asyncio.gather(
            *(
                c.get(
                    f"{capacity}/v1/availability", params={"product_family": f, "foundry_code": member, "from": week, "to": last}
                )
                for f in found["product_families"]
            ),
            c.get(f"{capacity}/v1/reservations", params={"foundry_code": member, "limit": 200}),
            c.get(f"{quality}/v1/certificates", params={"foundry_code": member}),
            c.get(f"{quality}/v1/lots", params={"foundry_code": member, "limit": 50}),
            c.get(f"{quality}/v1/foundries/{member}/quality-status"),
            c.get(f"{capacity}/v1/foundries/{member}/capacity-changes", params={"limit": 500}),
        )

    async def quality_page(c: httpx.AsyncClient) -> Any:
        return await asyncio.gather(
            c.get(f"{quality}/v1/lots", params={"status": "registered", "limit": 100}),
            c.get(f"{quality}/v1/certificates", params={"state": "expiring"}),
            c.get(f"{quality}/v1/quality-status"),
        )

    async def lot_page(c: httpx.AsyncClient) -> Any:
        found = (await c.get(f"{quality}/v1/lots/{lot}")).json()
        return await c.get(f"{quality}/v1/specifications/{found['item_code']}", params={"version": found["spec_version"]})

    async def shipments(c: httpx.AsyncClient) -> Any:
        listed = (await c.get(f"{orders}/v1/purchase-orders", params={"limit": 200})).json()["items"]
        return await asyncio.gather(*(c.get(f"{orders}/v1/purchase-orders/{o['id']}/shipments") for o in listed))

    async def shipment_page(c: httpx.AsyncClient) -> Any:
        found = (await c.get(f"{orders}/v1/shipments/{shipment}")).json()
        return await asyncio.gather(
            c.get(f"{orders}/v1/purchase-orders/{found['order_id']}"),
            *(c.get(f"{quality}/v1/lots/{i['lot_code']}/trace") for i in found["items"]),
        )

    async def what_if_page(c: httpx.AsyncClient) -> Any:
        return await c.get(f"{quality}/v1/specifications")  # the item list of the new order; the console keeps it a while

    return {
        "dashboard": ("/", dashboard),
        "orders": ("/orders", order_list),
        "order (KAI)": (f"/orders/{kai['id']}", order),
        "members": ("/members", members),
        "member": (f"/members/{member}", member_page),
        "quality": ("/quality", quality_page),
        "lot": (f"/quality/lots/{lot}", lot_page),
        "shipments": ("/shipments", shipments),
        "shipment": (f"/shipments/{shipment}", shipment_page),
        "what-if": ("/what-if", what_if_page),
    }


async def measure(urls: dict[str, str], page: tuple[str, Calls], requests: int, warmup: int) -> dict[str, float]:
    path, calls = page
    console = urls["console"]
    page_ms: list[float] = []
    api_ms: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        await sign_in(client, urls)
        for n in range(warmup + requests):
            started = time.perf_counter()
            response = await client.get(f"{console}{path}")
            took = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise BenchError(f"{path} answered {response.status_code}")
            started = time.perf_counter()
            await calls(client)
            api_took = (time.perf_counter() - started) * 1000
            if n >= warmup:
                page_ms.append(took)
                api_ms.append(api_took)
    page_ms.sort()
    api_ms.sort()
    return {
        "page_p50_ms": round(percentile(page_ms, 0.5), 1),
        "page_p99_ms": round(percentile(page_ms, 0.99), 1),
        "api_p50_ms": round(percentile(api_ms, 0.5), 1),
        "api_p99_ms": round(percentile(api_ms, 0.99), 1),
        "p99_ratio": round(percentile(page_ms, 0.99) / max(percentile(api_ms, 0.99), 0.1), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="ceper-bench-console-"))
    processes: list[subprocess.Popen[bytes]] = []
    broker = None
    try:
        log("starting Kafka…")
        broker = start_kafka(root)
        (root / "var").mkdir()
        urls, processes = start_services(root / "var", broker.bootstrap)
        log("loading the demo cooperative (minutes)…")
        seed_demo({k: v for k, v in urls.items() if k not in ("console", "identity")}, staff(urls))
        kai = wait_for_the_kai_order(urls)
        with httpx.Client(auth=staff(urls), timeout=30) as client:
            inka = next(
                o for o in client.get(f"{urls['orders']}/v1/purchase-orders").json()["items"] if o["buyer_code"] == "INKA"
            )
            shipment = client.get(f"{urls['orders']}/v1/purchase-orders/{inka['id']}/shipments").json()[0]["id"]
            lot = client.get(f"{urls['quality']}/v1/lots", params={"limit": 1}).json()["items"][0]["lot_code"]
        member = kai["plan"]["allocations"][0]["foundry_code"]
        figures = {}
        for name, page in pages(urls, kai, member, lot, shipment).items():
            log(f"timing {name}…")
            figures[name] = asyncio.run(measure(urls, page, args.requests, args.warmup))
        print(f"{'page':<14} {'page p50':>9} {'page p99':>9} {'API p50':>9} {'API p99':>9} {'p99 ratio':>10}")
        for name, f in figures.items():
            print(
                f"{name:<14} {f['page_p50_ms']:>9} {f['page_p99_ms']:>9} {f['api_p50_ms']:>9} {f['api_p99_ms']:>9}"
                f" {f['p99_ratio']:>10}"
            )
        worst = max(f["page_p99_ms"] for f in figures.values())
        print(
            f"target: every page p99 ≤ {TARGET_P99_MS:.0f} ms — worst {worst} ms, {'met' if worst <= TARGET_P99_MS else 'missed'}"
        )
        print(json.dumps({"bench": "console", "requests": args.requests, "pages": figures, "worst_page_p99_ms": worst}))
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if broker is not None:
            broker.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
