"""`ceper dev`: the whole platform on one machine, on the embedded defaults, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from rich.console import Console
from rich.table import Table

from ceper.broker import die_with_parent, kafka_jars
from shared.kafka import BrokerError
from shared.settings import DEFAULT_PORTS, Settings, get_settings

from .kafka_cmd import local_broker

if TYPE_CHECKING:
    from services.identity.demo import DemoLogins

console = Console()
START_ORDER = ("identity", "orders", "capacity", "quality", "console")


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_ready(urls: dict[str, str], processes: dict[str, subprocess.Popen[bytes]], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(urls)
    with httpx.Client(timeout=2) as client:
        while pending:
            for name, url in list(pending.items()):
                if processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with code {processes[name].returncode}; see its log above")
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        pending.pop(name)
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f} s: {', '.join(pending)}")
            time.sleep(0.3)


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 20
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def service_urls(settings: Settings) -> dict[str, str]:
    """Where each service listens: the URLs the console uses for them (defaults: ports 8000–8004)."""
    return {
        "identity": settings.identity_url,
        "orders": settings.orders_url,
        "capacity": settings.capacity_url,
        "quality": settings.quality_url,
        "console": settings.console_url,
    }


def _demo_logins(settings: Settings) -> DemoLogins:
    """Demo clients and people, made straight in identity's database (as `ceper clients add` does)."""
    import asyncio

    from services.identity.demo import seed_identity
    from shared.db import create_engine, session_factory
    from shared.logging import configure_logging

    configure_logging("identity", "WARNING", json=False)  # the banner, not log lines, tells what was made

    async def run() -> DemoLogins:
        engine = create_engine(settings.database_url("identity"))
        try:
            return await seed_identity(session_factory(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _print_logins(logins: DemoLogins, identity_url: str) -> None:
    from services.identity.demo import DEMO_PASSWORD

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    people = ", ".join(f"{username} ({role})" for username, role in logins.people)
    say(f"Demo people (development only), password {DEMO_PASSWORD}: {people}")
    say(
        f"Sign in: curl -s {identity_url}/v1/sessions -H 'content-type: application/json' "
        f'-d \'{{"username": "planner", "password": "{DEMO_PASSWORD}"}}\''
    )
    say("Demo machine clients (development only; new secrets at every start):")
    for name, client_id, secret in logins.clients:
        say(f"  {name}: client_id {client_id}  client_secret {secret}")
    name, client_id, secret = logins.clients[0]
    say(f"Get a token as {name}: curl -s -u {client_id}:{secret} -d grant_type=client_credentials {identity_url}/oauth/token")


def run_dev(seed: bool = True) -> int:
    settings = get_settings()
    Path(settings.var_dir).mkdir(parents=True, exist_ok=True)
    urls = service_urls(settings)
    ports = {name: httpx.URL(url).port or DEFAULT_PORTS[name] for name, url in urls.items()}
    busy = [f"{name} ({port})" for name, port in ports.items() if _port_busy(port)]
    if busy:
        console.print(f"[red]Ports in use: {', '.join(busy)}.[/red] Is another `make dev` running? Stop it first.")
        return 1

    broker = local_broker()
    started_broker = False
    processes: dict[str, subprocess.Popen[bytes]] = {}
    # Ctrl-C reaches the whole process group; we stop the children ourselves, in order.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if broker.is_running():
            console.print(f"Kafka already running at {broker.bootstrap}: using it (it stays up afterwards)")
        else:
            with console.status("Fetching the Kafka jars (once)…") as status:
                kafka_jars(progress=status.update)
                status.update(f"Starting Kafka at {broker.bootstrap}…")
                broker.start()
            started_broker = True
            console.print(f"Kafka running at {broker.bootstrap}")

        env = {**os.environ, "CEPER_ENV": settings.env, "PYTHONUNBUFFERED": "1"}
        for name in START_ORDER:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "ceper", "serve", name, "--port", str(ports[name])],
                env=env,
                # If `ceper dev` itself is killed, the kernel stops its services too: no orphans on the ports.
                preexec_fn=die_with_parent,
            )
        with console.status("Waiting for the services to be ready…"):
            _wait_ready(urls, processes)
        if seed:
            from .access import demo_admin
            from .demo import seed_demo

            with console.status("Loading the demo…"):
                logins = _demo_logins(settings)  # first: the demo admin loads the demo
                summary = seed_demo(urls, demo_admin(urls["identity"]))
            console.print(summary)

        table = Table(title="Ceper Supply is running", show_header=True)
        table.add_column("service")
        table.add_column("address")
        table.add_column("API docs")
        for name in START_ORDER:
            table.add_row(name, urls[name], f"{urls[name]}/docs")
        table.add_row("kafka", broker.bootstrap, "")
        console.print(table)
        if seed:
            _print_logins(logins, urls["identity"])
        console.print(f"Open the console at [bold]{urls['console']}[/bold]. Press Ctrl-C to stop.")
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} stopped unexpectedly (exit code {process.returncode})")
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\nStopping…")
        return_code = 0
    except (BrokerError, RuntimeError) as exc:
        console.print(f"[red]{exc}[/red]")
        return_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        _stop(processes)
        if started_broker:
            broker.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    console.print("Stopped everything `ceper dev` started.")
    return return_code
