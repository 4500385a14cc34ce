"""`ceper kafka …`: fetch, start, stop and inspect the local Apache Kafka broker under `<var_dir>/kafka`."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from ceper.broker import KAFKA_VERSION, LocalKafka, kafka_jars
from shared.kafka import BrokerError
from shared.settings import get_settings

app = typer.Typer(
    help="Run the local Apache Kafka broker (single node, KRaft) that development and tests use.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

LOCAL_HOSTS = ("127.0.0.1", "localhost")
EXIT_STOPPED = 3


def broker_port(bootstrap_servers: str) -> int:
    """Port of the first `CEPER_KAFKA_BOOTSTRAP_SERVERS` entry, which must point at this machine."""
    first = bootstrap_servers.split(",")[0].strip().split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    if host not in LOCAL_HOSTS or not port.isdigit():
        raise BrokerError(
            f"CEPER_KAFKA_BOOTSTRAP_SERVERS is {bootstrap_servers!r}, but the local broker listens on "
            "127.0.0.1: set it to 127.0.0.1:<port> (default 127.0.0.1:9092)"
        )
    return int(port)


def local_broker() -> LocalKafka:
    settings = get_settings()
    port = broker_port(settings.kafka_bootstrap_servers)
    # The controller takes the next port, so one setting moves both.
    return LocalKafka(Path(settings.var_dir) / "kafka", port=port, controller_port=port + 1)


def fail(error: BrokerError) -> typer.Exit:
    # markup=False: log lines in the message may contain [brackets] that Rich would eat.
    err_console.print(str(error), style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


@app.command()
def fetch() -> None:
    """Download the Kafka jars once into the user cache (needs Java 17+ and Maven)."""
    try:
        with console.status("Checking the Kafka jars…") as status:
            jars = kafka_jars(progress=status.update)
    except BrokerError as error:
        raise fail(error) from None
    console.print(f"Kafka {KAFKA_VERSION} jars in {jars}")


@app.command()
def start(timeout: float = typer.Option(90, help="Seconds to wait for the broker to answer.")) -> None:
    """Start the broker in the background and wait until it answers."""
    try:
        broker = local_broker()
        if broker.is_running():
            console.print(f"Kafka already running at {broker.bootstrap} (pid {broker.pid})")
            return
        with console.status("Checking the Kafka jars…") as status:
            kafka_jars(progress=status.update)
            status.update(f"Starting Kafka {KAFKA_VERSION} at {broker.bootstrap}…")
            began = time.monotonic()
            broker.start(timeout=timeout)
    except BrokerError as error:
        raise fail(error) from None
    console.print(
        f"[green]Kafka {KAFKA_VERSION} running[/green] at {broker.bootstrap} "
        f"(pid {broker.pid}, ready in {time.monotonic() - began:.1f} s)\n"
        f"data {broker.data_dir}\nlog  {broker.log_path}",
        highlight=False,
    )


@app.command()
def stop(timeout: float = typer.Option(30, help="Seconds to wait for a clean shutdown before SIGKILL.")) -> None:
    """Stop the broker; its topics and events stay in the data dir."""
    try:
        broker = local_broker()
        with console.status("Stopping Kafka…"):
            was_running = broker.stop(timeout=timeout)
    except BrokerError as error:
        raise fail(error) from None
    console.print("Kafka stopped" if was_running else "Kafka was not running")


@app.command()
def status() -> None:
    """Say whether the broker runs; exit code 0 if it does, 3 if it is stopped."""
    try:
        state = local_broker().status()
    except BrokerError as error:
        raise fail(error) from None
    running = state["running"]
    console.print("[green]running[/green]" if running else "[yellow]stopped[/yellow]")
    for label, key in (("pid", "pid"), ("bootstrap", "bootstrap"), ("data dir", "data_dir"), ("log", "log")):
        value = state[key] if state[key] is not None else "-"
        console.print(f"{label:<10} {value}", highlight=False, markup=False)
    if not running:
        raise typer.Exit(EXIT_STOPPED)
