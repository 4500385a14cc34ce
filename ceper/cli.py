"""`ceper`: the operator's command line for Ceper Supply."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from shared.settings import DEFAULT_PORTS, DOMAIN_SERVICES, get_settings

from . import identity_cmd, kafka_cmd, keycloak_cmd

app = typer.Typer(help="Ceper Supply: Koperasi Batur Jaya's supply platform.", no_args_is_help=True, add_completion=False)
app.add_typer(kafka_cmd.app, name="kafka")
app.add_typer(keycloak_cmd.app, name="keycloak")
app.add_typer(identity_cmd.clients_app, name="clients")
app.add_typer(identity_cmd.users_app, name="users")
app.add_typer(identity_cmd.keys_app, name="keys")
dlq_app = typer.Typer(help="Dead-letter topics: what a service could not apply.", no_args_is_help=True)
contracts_app = typer.Typer(
    help="Event contracts: JSON Schemas, the AsyncAPI document, the table of event flows.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(contracts_app, name="contracts")

console = Console()
err = Console(stderr=True)

SERVICES_WITH_DB = [*DOMAIN_SERVICES, "identity"]


def _spec(service: str):  # type: ignore[no-untyped-def]
    if service == "orders":
        from services.orders.app import SPEC
    elif service == "capacity":
        from services.capacity.app import SPEC
    elif service == "quality":
        from services.quality.app import SPEC
    elif service == "console":
        from services.console.app import SPEC
    elif service == "identity":
        from services.identity.app import SPEC
    else:
        raise _fail(f"unknown service {service!r}: choose one of orders, capacity, quality, console, identity")
    return SPEC


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _domain_service(service: str) -> str:
    if service not in DOMAIN_SERVICES:
        raise _fail(f"unknown service {service!r}: choose one of {', '.join(DOMAIN_SERVICES)}")
    return service


@app.command()
def migrate(
    services: Annotated[list[str] | None, typer.Argument(help="Services to migrate (default: all with a database)")] = None,
) -> None:
    """Upgrade the services' databases to the newest schema (production runs this before start)."""
    from shared.db import create_engine
    from shared.db import migrate as upgrade

    settings = get_settings()
    chosen = services or SERVICES_WITH_DB

    async def run() -> None:
        for service in chosen:
            if service not in SERVICES_WITH_DB:
                raise _fail(f"unknown service {service!r}: choose one of {', '.join(SERVICES_WITH_DB)}")
            spec = _spec(service)
            engine = create_engine(settings.database_url(service))
            try:
                await upgrade(engine, spec.migrations_dir)
            finally:
                await engine.dispose()
            console.print(f"{service}: database at the newest schema")

    try:
        asyncio.run(run())
    except OSError as exc:
        raise _fail(f"cannot reach the database: {exc}") from None


@app.command()
def serve(
    service: str = typer.Argument(..., help="orders, capacity, quality, console or identity"),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int | None = typer.Option(None, help="Port (default: the service's own)"),
) -> None:
    """Run one service under uvicorn."""
    import uvicorn

    _spec(service)
    uvicorn.run(
        f"services.{service}.app:create_app",
        factory=True,
        host=host,
        port=port or DEFAULT_PORTS[service],
        log_config=None,
        proxy_headers=True,
    )


@app.command()
def dev(
    seed: bool = typer.Option(True, help="Load the demo data once the services are up"),
) -> None:
    """Run the whole platform locally: Kafka and the five services; Ctrl-C stops what it started."""
    from .dev import run_dev

    raise typer.Exit(run_dev(seed=seed))


@app.command()
def chaos(
    seed: int = typer.Option(1, help="Random seed: the same seed gives the same scenario and the same faults"),
    quick: bool = typer.Option(False, "--quick", help="A bounded run (about 3 minutes) for `make test`"),
    duration: float | None = typer.Option(None, min=10, help="Seconds of traffic and faults (default: 75 quick, 600 full)"),
    faults: bool = typer.Option(True, help="--no-faults plays the same scenario on two replicas with nothing broken"),
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Run directory (default: a fresh one under the temp dir)")
    ] = None,
    keep: bool = typer.Option(False, help="Keep the run directory (logs, data) even when every check holds"),
) -> None:
    """Run the platform with two replicas per service, break it on purpose, and check nothing was lost.

    Its own Kafka broker, PostgreSQL server and service processes under a fresh directory; a seeded scenario of orders, capacity changes, certificates, lots and shipments while replicas are killed, the broker and the database restarted, the webhook endpoint taken away and poison messages sent.

    Then: every event applied once by every consumer, no reservation over capacity, no order stuck, quantities adding up, each webhook received once, only the poison dead-lettered. Exit 1 when a check fails, 2 when the run could not be carried out.
    """
    from .chaos import ChaosOptions, run_chaos

    options = ChaosOptions(seed=seed, quick=quick, window_s=duration, faults=faults, directory=directory, keep=keep)
    raise typer.Exit(run_chaos(options))


@app.command()
def seed(seed: int = typer.Option(1995, help="Random seed: the same seed gives the same demo")) -> None:
    """Load the demo cooperative into running services (safe to run again), as the demo admin `make dev` made."""
    import httpx

    from .access import demo_admin
    from .demo import seed_demo

    settings = get_settings()
    urls = {"orders": settings.orders_url, "capacity": settings.capacity_url, "quality": settings.quality_url}
    try:
        console.print(seed_demo(urls, demo_admin(settings.identity_url), seed))
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        raise _fail(f"seeding failed: {exc}. Are the services running (`make dev`)?") from None


@app.command()
def topics() -> None:
    """Create the platform's topics if they are missing."""
    from shared.topics import ensure_platform_topics, platform_topics

    settings = get_settings()
    try:
        asyncio.run(ensure_platform_topics(settings))
    except Exception as exc:
        raise _fail(f"cannot create topics on {settings.kafka_bootstrap_servers}: {exc}") from None
    for name in platform_topics(settings):
        console.print(name)


@dlq_app.command("list")
def dlq_list(
    service: str = typer.Argument(..., help="The consuming service whose dead letters to show"),
    all_: bool = typer.Option(False, "--all", help="Also show dead letters already redriven"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line"),
) -> None:
    """List the events a service could not apply, with the error and where each came from."""
    from shared.dlq import list_dead_letters

    settings = get_settings()
    try:
        letters = asyncio.run(list_dead_letters(settings, _domain_service(service), include_redriven=all_))
    except Exception as exc:
        raise _fail(f"cannot read the dead-letter topic on {settings.kafka_bootstrap_servers}: {exc}") from None
    if as_json:
        for letter in letters:
            print(
                json.dumps(
                    {
                        "dlq_partition": letter.partition,
                        "dlq_offset": letter.offset,
                        "event_id": letter.event_id,
                        "event_type": letter.event_type,
                        "key": letter.key.decode("utf-8", "replace") if letter.key else None,
                        "error_type": letter.error_type,
                        "error": letter.error,
                        "origin": f"{letter.origin_topic}/{letter.origin_partition}/{letter.origin_offset}",
                        "attempts": letter.attempts,
                        "failed_at": letter.failed_at.isoformat() if letter.failed_at else None,
                        "redriven": letter.redriven,
                    }
                )
            )
        return
    if not letters:
        console.print(f"No {'' if all_ else 'pending '}dead letters for {service}.")
        return
    table = Table(title=f"Dead letters of {service}")
    for column in ("dlq offset", "event", "type", "origin", "error", "failed at", "redriven"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            f"{letter.partition}/{letter.offset}",
            letter.event_id or "-",
            letter.event_type or "-",
            f"{letter.origin_topic}/{letter.origin_partition}/{letter.origin_offset}",
            f"{letter.error_type}: {letter.error}",
            letter.failed_at.strftime("%Y-%m-%d %H:%M:%S") if letter.failed_at else "-",
            "yes" if letter.redriven else "no",
        )
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    service: str = typer.Argument(..., help="The consuming service whose dead letters to send back"),
    event_id: Annotated[
        list[str] | None, typer.Option("--event-id", help="Only these events (repeatable); default: all pending")
    ] = None,
) -> None:
    """Send pending dead letters back to the service's retry topic, so that service alone applies them again."""
    from shared.dlq import redrive
    from shared.events import retry_topic_of

    settings = get_settings()
    try:
        sent = asyncio.run(redrive(settings, _domain_service(service), event_ids=set(event_id) if event_id else None))
    except Exception as exc:
        raise _fail(f"cannot redrive on {settings.kafka_bootstrap_servers}: {exc}") from None
    if not sent:
        console.print("Nothing to redrive.")
        return
    retry_topic = settings.topic(retry_topic_of(service))
    for letter in sent:
        console.print(
            f"redriven {letter.event_id or '-'} ({letter.event_type or 'unknown type'}, from {letter.origin_topic}) to {retry_topic}"
        )
    console.print(f"{len(sent)} dead letter(s) sent back to be applied again, by {service} only.")


@app.command()
def replay(service: str = typer.Argument(..., help="orders, capacity or quality")) -> None:
    """Rebuild a service's projections of other services' events from the beginning of the topics.

    Stop the service first: the rebuild runs in one transaction and the consumer resumes after it.
    """
    from shared.replay import replay_projections

    settings = get_settings()
    spec = _spec(_domain_service(service))
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as progress:
        task = progress.add_task(f"Replaying {service}'s projections…", total=None)

        def tick(read: int) -> None:
            progress.update(task, description=f"Replaying {service}'s projections… {read} events read")

        try:
            report = asyncio.run(replay_projections(spec, settings, tick))
        except Exception as exc:
            raise _fail(f"replay failed and changed nothing: {exc}") from None
    console.print(
        f"{service}: {report.applied} events applied to {', '.join(report.tables) or 'no tables'} "
        f"({report.read} read, {report.malformed} malformed, {report.failed} still failing)"
    )


@contracts_app.command("export")
def contracts_export() -> None:
    """Write docs/events/*.json, docs/asyncapi.yaml and the event flows in docs/architecture.md from the registry."""
    from shared.contracts import export_all

    from .flows import export_flows

    try:
        written = [*export_all(), export_flows()]
    except ValueError as exc:
        raise _fail(str(exc)) from None
    console.print(f"{len(written)} files written")


@contracts_app.command("check")
def contracts_check() -> None:
    """Fail if a committed schema is missing, stale, or broken by a model change, or the event flows are stale."""
    from shared.contracts import check_event_schemas

    from .flows import check_flows

    problems = check_event_schemas() + check_flows()
    if problems:
        raise _fail("\n".join(problems))
    console.print("Event contracts are up to date and backward compatible.")


def main() -> None:
    app()
