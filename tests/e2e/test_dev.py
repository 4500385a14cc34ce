"""`make dev` as a developer uses it: the whole platform comes up with the demo, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ceper.access import SignedIn
from ceper.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _kafka_ports() -> int:
    # The broker takes the port and the next one (controller): both must be free.
    while True:
        port = free_port()
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue


def _session_pids(sid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.add(int(entry.name))
    return pids


def _start_dev(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ceper", "dev", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # like a terminal: Ctrl-C goes to the whole group
    )
    lines: list[str] = []
    deadline = time.monotonic() + 240
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Press Ctrl-C to stop" in line:
            return process, lines
    process.kill()
    raise AssertionError("ceper dev did not come up:\n" + "".join(lines))


def _ctrl_c(process: subprocess.Popen[str]) -> str:
    os.killpg(process.pid, signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    return out


def test_dev_runs_everything_with_the_demo_and_stops_cleanly(tmp_path):
    console, orders, capacity, quality, identity = _free_ports(5)
    kafka = _kafka_ports()
    env = {
        **os.environ,
        "CEPER_VAR_DIR": str(tmp_path / "var"),
        "CEPER_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka}",
        "CEPER_CONSOLE_URL": f"http://127.0.0.1:{console}",
        "CEPER_ORDERS_URL": f"http://127.0.0.1:{orders}",
        "CEPER_CAPACITY_URL": f"http://127.0.0.1:{capacity}",
        "CEPER_QUALITY_URL": f"http://127.0.0.1:{quality}",
        "CEPER_IDENTITY_URL": f"http://127.0.0.1:{identity}",
        "CEPER_ENV": "dev",
    }
    process, lines = _start_dev(env)
    try:
        banner = "".join(lines)
        for port in (console, orders, capacity, quality, identity, kafka):
            assert f"127.0.0.1:{port}" in banner
        assert "168 member foundries registered" in banner
        assert "0 lots" not in banner and "certificates" in banner
        words = " ".join(banner.split())  # the console wraps long lines
        assert "(1 failed, made again)" in words and "units dispatched to INKA Madiun" in words
        password = next(line for line in lines if "Demo people" in line).split("password ")[1].split(":")[0]
        # The services answer people who sign in; the console passes on the token of the person signed in to it.
        assert httpx.get(f"http://127.0.0.1:{orders}/v1/purchase-orders").status_code == 401
        # The printed demo admin signs in to the console (its login form, CSRF token and all) and, for the
        # services' own APIs, at identity.
        with httpx.Client(timeout=5, auth=SignedIn(f"http://127.0.0.1:{identity}", "admin", password)) as client:
            login = client.get(f"http://127.0.0.1:{console}/login")
            csrf = re.search(r'name="csrftoken" value="([^"]+)"', login.text)
            assert csrf is not None
            signed = client.post(
                f"http://127.0.0.1:{console}/login",
                data={"csrftoken": csrf.group(1), "username": "admin", "password": password, "next": "/"},
            )
            assert signed.status_code == 303, signed.text
            services = client.get(f"http://127.0.0.1:{console}/v1/services").json()
            assert {name: s["status"] for name, s in services.items()} == {"orders": "ok", "capacity": "ok", "quality": "ok"}
            page = client.get(f"http://127.0.0.1:{console}/")
            assert page.status_code == 200 and "Ceper Supply" in page.text
            deadline = time.monotonic() + 60
            while len(client.get(f"http://127.0.0.1:{quality}/v1/foundries").json()) < 168:
                assert time.monotonic() < deadline, "the demo's foundries never reached quality"
                time.sleep(0.5)
            orders_listed = client.get(f"http://127.0.0.1:{orders}/v1/purchase-orders").json()
            assert {o["buyer_code"] for o in orders_listed["items"]} == {"KAI", "INKA", "TMMIN"}
            # The year's KAI order is planned in full across the eligible members and reserved.
            kai = next(o for o in orders_listed["items"] if o["buyer_code"] == "KAI")
            deadline = time.monotonic() + 90
            while (detail := client.get(f"http://127.0.0.1:{orders}/v1/purchase-orders/{kai['id']}").json())[
                "status"
            ] != "accepted":
                assert time.monotonic() < deadline, f"the KAI demo order was not accepted: {detail['status']}"
                time.sleep(1)
            assert detail["lines"][0]["quantities"]["reserved"] == 120_000 and not detail["lines"][0]["risk"]["at_risk"]
            # The catalogue reaches beyond brake blocks, and TMMIN's small tooling order goes to members that cast
            # automotive parts.
            families = {i["product_family"] for i in client.get(f"http://127.0.0.1:{quality}/v1/items").json()}
            assert {"PUMP_PARTS", "SHIP_PARTS", "RAILWAY_PARTS", "MACHINE_PARTS", "AUTOMOTIVE_PARTS"} <= families
            tmmin = next(o for o in orders_listed["items"] if o["buyer_code"] == "TMMIN")
            while (detail := client.get(f"http://127.0.0.1:{orders}/v1/purchase-orders/{tmmin['id']}").json())[
                "status"
            ] != "accepted":
                assert time.monotonic() < deadline, f"the TMMIN demo order was not accepted: {detail['status']}"
                time.sleep(1)
            assert sum(a["quantity"] for a in detail["plan"]["allocations"]) == 300
            held = client.get(f"http://127.0.0.1:{capacity}/v1/reservations", params={"order_id": tmmin["id"]}).json()
            assert {r["product_family"] for r in held["items"]} == {"AUTOMOTIVE_PARTS"}
        # The printed demo logins work: a person signs in, a buyer's system gets a token.
        command = next(line for line in lines if "Get a token as kai-procurement" in line).split("curl -s -u ", 1)[1].split()
        client_id, secret = command[0].split(":", 1)
        token = httpx.post(
            f"http://127.0.0.1:{identity}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert token.status_code == 200 and token.json()["token_type"] == "Bearer"
        signed_in = httpx.post(f"http://127.0.0.1:{identity}/v1/sessions", json={"username": "planner", "password": password})
        assert signed_in.status_code == 200 and signed_in.json()["roles"] == ["planner"]
        assert len(_session_pids(process.pid)) == 6  # ceper dev and the five services
        broker_pid = int((tmp_path / "var" / "kafka" / "broker.pid").read_text().strip())
        assert Path(f"/proc/{broker_pid}").exists()
    finally:
        out = _ctrl_c(process)
    assert process.returncode == 0, out
    assert "Stopped everything" in out
    assert _session_pids(process.pid) == set(), "processes left behind after Ctrl-C"
    assert not Path(f"/proc/{broker_pid}").exists(), "the broker it started is still running"

    # The next run starts cleanly on the same data, and the demo is not loaded twice.
    again, lines = _start_dev(env)
    try:
        again_banner = "".join(lines)
        assert "0 member foundries registered" in again_banner and "0 capacity changes recorded" in again_banner
        assert "Quality demo: 0 certificates" in again_banner and "0 purchase orders added" in again_banner
        assert "Fulfilment demo: 0 shipments added" in " ".join(again_banner.split())
    finally:
        _ctrl_c(again)
    assert again.returncode == 0
    assert _session_pids(again.pid) == set()
